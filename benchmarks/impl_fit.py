"""Per-layer HLS or RTL (`--impl search`) against one style for the whole accelerator, on the same export.

For each export and rate, three estimate builds of the same graph: HLS MVAUs with the fewest LUTs (the default
build), every MVAU RTL with standalone thresholds (finn-examples' VGG10 style) fitted by the max-utilisation
objective, and `--fit max-utilisation --impl search`. Prints each one's LUT, BRAM18, DSP, largest share of the
part and whether it meets the rate (FINN's estimates after minimising widths, as `build_report.json` has them).
The README's `--impl search` table comes from this.

    python -m benchmarks.impl_fit --export exports/f32 --export exports/f64 --fps 100000,240000 [--board ZCU104]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

STYLES = {  # name -> BuildConfig fields
    "HLS, fewest LUT": {"fit": "lut"},
    "all RTL, max-utilisation": {"standalone_thresholds": True, "fit": "max-utilisation", "impl": "finn"},
    "impl search": {"fit": "max-utilisation", "impl": "search"},
}


def _fps_list(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated frames/s, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"frames/s must be >= 1, got {text!r}")
    return out


def measure(export_dir: str, board: str, fps: int, work: Path) -> list[dict]:
    import contextlib
    import io

    from build.config import BuildConfig
    from build.flow import build

    rows = []
    for name, fields in STYLES.items():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # FINN notes
            out = build(BuildConfig(export_dir=export_dir, out=str(work / f"{len(rows)}"), board=board,
                                    target_fps=fps, **fields), log=lambda *_: None)
        r = json.loads((out / "build_report.json").read_text())
        worst = max(r["utilisation"][k] for k in ("LUT", "BRAM_18K", "DSP"))
        rows.append({"style": name, **{k: r["resources"][k] for k in ("LUT", "BRAM_18K", "DSP")}, "worst": worst,
                     "fps": r["estimated_fps"], "meets": r["meets_target"]})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.impl_fit", description=__doc__.split("\n\n")[0])
    p.add_argument("--export", action="append", required=True, help="export directory (repeat for several)")
    p.add_argument("--fps", type=_fps_list, default=[100_000, 240_000],
                   help="comma-separated frames/s to build for (default: 100000,240000)")
    from build.boards import BOARDS

    p.add_argument("--board", default="ZCU104", choices=sorted(BOARDS), help="target board (default: %(default)s)")
    a = p.parse_args(argv)
    for e in a.export:
        if not (Path(e) / "io.json").is_file():
            p.error(f"{e}: not an export directory (no io.json)")
    print(f"{'export':<28}{'frames/s':>10}  {'style':<26}{'LUT':>10}{'BRAM18':>8}{'DSP':>7}{'largest':>9}  reaches")
    for e in a.export:
        for fps in a.fps:
            with tempfile.TemporaryDirectory(prefix="impl-fit-") as tmp:
                for r in measure(e, a.board, fps, Path(tmp)):
                    reach = "yes" if r["meets"] else f"no ({r['fps']:,.0f}/s)"
                    print(f"{Path(e).name:<28}{fps:>10,}  {r['style']:<26}{r['LUT']:>10,.0f}{r['BRAM_18K']:>8,.0f}"
                          f"{r['DSP']:>7,.0f}{r['worst']:>9.1%}  {reach}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
