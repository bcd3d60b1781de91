"""`python -m driver.wheel --out DIR`: the board side (radioml/ + driver/) as one pip-installable wheel.

A PYNQ image (Python 3.8, numpy 1.x, pynq) needs only these two packages, none of the
training or FINN stack: `pip install amc_board-<version>-py3-none-any.whl` on the board (add
`[data]` for h5py where the image lacks it, `[emulate]` for onnx and onnxruntime, which only
`--emulate` on a host needs), then `python -m driver.validate ...` or the
`amc-validate` command. The wheel is written here with the standard library (a wheel is a zip
with its metadata and a RECORD of digests), so building it needs no setuptools and gives the
same bytes for the same sources.
"""
from __future__ import annotations

import argparse
import base64
import configparser
import hashlib
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "amc_board"
PACKAGES = ("radioml", "driver")
FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # reproducible archives


def version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg["metadata"]["version"]


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def metadata(ver: str) -> str:
    return "\n".join([
        "Metadata-Version: 2.1", "Name: amc-board", f"Version: {ver}",
        "Summary: Board side of the AMC FPGA toolchain: RadioML reader and the PYNQ driver (numpy, h5py, pynq)",
        "Requires-Python: >=3.8", "Requires-Dist: numpy>=1.16", "Provides-Extra: data",
        'Requires-Dist: h5py; extra == "data"', "Provides-Extra: emulate", 'Requires-Dist: onnx; extra == "emulate"',
        'Requires-Dist: onnxruntime; extra == "emulate"', "", ""])


def build_wheel(out: Path) -> Path:
    """Write the wheel into `out`; return its path."""
    ver = version()
    dist = f"{NAME}-{ver}.dist-info"
    files: list[tuple[str, bytes]] = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            files.append((path.relative_to(ROOT).as_posix(), path.read_bytes()))
    files += [(f"{dist}/METADATA", metadata(ver).encode()),
              (f"{dist}/WHEEL", b"Wheel-Version: 1.0\nGenerator: driver.wheel\nRoot-Is-Purelib: true\n"
                                b"Tag: py3-none-any\n\n"),
              (f"{dist}/entry_points.txt", b"[console_scripts]\namc-validate = driver.validate:console\n\n"),
              (f"{dist}/top_level.txt", "\n".join(PACKAGES).encode() + b"\n")]
    record = "\n".join([_record_line(n, d) for n, d in files] + [f"{dist}/RECORD,,", ""])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{NAME}-{ver}-py3-none-any.whl"
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files + [(f"{dist}/RECORD", record.encode())]:
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    tmp.replace(target)
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m driver.wheel", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="dist", help="directory the wheel is written to (default: %(default)s)")
    a = p.parse_args(argv)
    try:
        print(build_wheel(Path(a.out)))
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
