"""The files that cross stage boundaries: one typed, versioned definition each, one writer, one reader.

Every such JSON file carries its `format` (name and version) and a `digest` (sha256 of its
canonical contents), written by `write_artifact` and checked by `read_artifact`: an edited,
truncated or foreign file is refused with one line naming the file and what is wrong, never
read as if it were right. Each file's dataclass checks its fields' types and ranges on both
sides (`from_dict`). Those a PYNQ board reads live here (stdlib only): the export's `io.json`
(`ExportIO`) and the bundle's `driver_io.json` (`DriverIO`); the others next to their stage
(train/results.py, export/report_file.py, build/report.py) on the same helpers.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from .atomic import write_text
from .classes import CLASSES, FRAME_LENGTH, POLYPHASES
from .quant import InputQuant


class ArtifactError(ValueError):
    """A stage-boundary file that is missing, unreadable, edited or out of range: names it and the field."""


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def digest_of(obj) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


def file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_artifact(path, fmt: str, body: dict) -> Path:
    """Write `body` with its format and digest, atomically."""
    body = {k: v for k, v in body.items() if k not in ("format", "digest")}
    return write_text(path, json.dumps({"format": fmt, **body, "digest": digest_of(body)}, indent=1))


def read_artifact(path, fmt: str) -> dict:
    """The body of an artifact file written by `write_artifact` with this format, verified."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path}: not a JSON object")
    if obj.get("format") != fmt:
        raise ArtifactError(f"{path}: format {obj.get('format')!r}, expected {fmt!r} (written by another version "
                            f"of this toolchain, or another file); rewrite it")
    body = {k: v for k, v in obj.items() if k not in ("format", "digest")}
    if obj.get("digest") != digest_of(body):
        raise ArtifactError(f"{path}: its contents do not match its digest (edited or corrupt); rewrite it with "
                            f"the command that made it")
    return body


def need(ok: bool, path, name: str, problem: str) -> None:
    if not ok:
        raise ArtifactError(f"{path}: {name}: {problem}")


FINN_DTYPE = re.compile(r"^(U?INT([1-9]\d?)|BINARY|BIPOLAR|FLOAT32)$")


def _dtype(v, path, name) -> str:
    m = FINN_DTYPE.match(v) if isinstance(v, str) else None
    need(m is not None and (m[2] is None or 1 <= int(m[2]) <= 64), path, name, f"{v!r} is not a FINN datatype name")
    return v


def _shape(v, path, name) -> list[int]:
    need(isinstance(v, list) and v and all(isinstance(n, int) and n >= 1 for n in v), path, name,
         f"{v!r} is not a shape")
    return v


def _input_quant(d, path, name="input_quant") -> InputQuant:
    need(isinstance(d, dict), path, name, "missing or not an object")
    try:
        iq = InputQuant(**d)
    except TypeError as e:
        raise ArtifactError(f"{path}: {name}: {e}") from None
    need(isinstance(iq.scale, (int, float)) and math.isfinite(iq.scale) and iq.scale > 0, path, f"{name}.scale",
         f"{iq.scale!r} is not a positive number")
    need(isinstance(iq.bits, int) and 2 <= iq.bits <= 16, path, f"{name}.bits", f"{iq.bits!r} is not in 2..16")
    need(iq.zero_point == 0, path, f"{name}.zero_point", "must be 0")
    need(iq.rounding == "ROUND", path, f"{name}.rounding", f"{iq.rounding!r} is not supported")
    return iq


def _classes(v, path) -> list[str]:
    need(v == list(CLASSES), path, "classes", f"{len(v) if isinstance(v, list) else v!r} entries; the 24 class names "
                                                 f"in the file's order are expected")
    return v


@dataclass(frozen=True)
class ExportIO:
    """io.json: what the build and the driver need of an export; `files` are the sha256 of what it wrote."""

    FORMAT = "amc-export-io/1"
    input_quant: InputQuant
    input_dtype: str
    input_shape: list
    output_shape: list
    output_dtype: str
    classes: list
    model_config: dict
    source: str
    model_digest: str  # of the model that was exported (train/saved_model.py's tensor digest)
    files: dict  # file name -> sha256
    data: str | None = None  # the file whose test frames the checks ran on
    check_frames: int | None = None
    input_layout: str = "NW1C"
    input_shape_float: list = field(default_factory=lambda: [1, 2, FRAME_LENGTH])
    input_layout_float: str = "NCW"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_quant"] = self.input_quant.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict, path) -> "ExportIO":
        missing = [f.name for f in fields(cls)
                   if f.name not in d and f.default is MISSING and f.default_factory is MISSING]
        need(not missing, path, missing[0] if missing else "", "missing")
        iq = _input_quant(d["input_quant"], path)
        need(d["input_dtype"] == iq.finn_dtype, path, "input_dtype",
             f"{d['input_dtype']!r} is not the input quantiser's {iq.finn_dtype}")
        need(isinstance(d["files"], dict) and all(isinstance(v, str) and len(v) == 64 for v in d["files"].values()),
             path, "files", "not a map of file names to sha256 digests")
        return cls(iq, d["input_dtype"], _shape(d["input_shape"], path, "input_shape"),
                   _shape(d["output_shape"], path, "output_shape"), _dtype(d["output_dtype"], path, "output_dtype"),
                   _classes(d["classes"], path), d["model_config"], str(d["source"]), str(d["model_digest"]),
                   d["files"], d.get("data"), d.get("check_frames"), d.get("input_layout", "NW1C"),
                   d.get("input_shape_float", [1, 2, FRAME_LENGTH]), d.get("input_layout_float", "NCW"))

    def write(self, export_dir) -> Path:
        self.from_dict(self.to_dict(), Path(export_dir) / "io.json")
        return write_artifact(Path(export_dir) / "io.json", self.FORMAT, self.to_dict())

    @classmethod
    def read(cls, export_dir, verify_files=()) -> "ExportIO":
        """io.json of an export directory; the files named in `verify_files` must have their recorded digests."""
        path = Path(export_dir) / "io.json"
        io = cls.from_dict(read_artifact(path, cls.FORMAT), path)
        for name in verify_files:
            f = Path(export_dir) / name
            need(f.is_file(), f, "file", "missing (an incomplete export directory)")
            need(io.files.get(name) == file_digest(f), f, "contents",
                 f"differ from what {path} recorded (edited or replaced); re-export")
        return io


PLATFORMS = ("zynq-iodma", "alveo")
OUTPUTS = ("logits", "class")  # what an accelerator streams out a frame (build --output)


@dataclass(frozen=True)
class DriverIO:
    """driver_io.json: what driver/ needs on the board, written by `python -m build`."""

    FORMAT = "amc-driver-io/1"
    io_shape_dict: dict  # FINN's, as get_driver_shapes derives it
    input_quant: InputQuant
    classes: list
    bitfile: str | None
    board: str
    platform: str
    clock_ns: float
    export_dir: str  # relative to the bundle
    export_files: dict  # the export's file digests (io.json's `files`): the golden model of --emulate must match
    output: str = "logits"  # logits: the class scores a frame; class: FINN's LabelSelect, the top-1 class index

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_quant"] = self.input_quant.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict, path) -> "DriverIO":
        for f in fields(cls):
            need(f.name in d or f.default is not MISSING, path, f.name, "missing")
        iq = _input_quant(d["input_quant"], path)
        io = d["io_shape_dict"]
        output = d.get("output", "logits")
        need(output in OUTPUTS, path, "output", f"{output!r} is not one of {', '.join(OUTPUTS)}")
        need(isinstance(io, dict), path, "io_shape_dict", "not an object")
        for key in ("idt", "odt", "ishape_normal", "ishape_folded", "ishape_packed", "oshape_normal", "oshape_folded",
                    "oshape_packed", "idma_names", "odma_names"):
            need(isinstance(io.get(key), list) and len(io[key]) >= 1, path, f"io_shape_dict.{key}", "missing")
        _dtype(io["idt"][0], path, "io_shape_dict.idt")
        need(io["idt"][0] == iq.finn_dtype, path, "io_shape_dict.idt",
             f"{io['idt'][0]} is not the input quantiser's {iq.finn_dtype}")
        _dtype(io["odt"][0], path, "io_shape_dict.odt")
        for key in ("ishape_normal", "ishape_folded", "ishape_packed", "oshape_normal", "oshape_folded", "oshape_packed"):
            _shape(io[key][0], path, f"io_shape_dict.{key}")
        need(io["ishape_normal"][0][1:] in [[FRAME_LENGTH // p, 1, 2 * p] for p in POLYPHASES], path,
             "io_shape_dict.ishape_normal", f"{io['ishape_normal'][0]} is not (N, {FRAME_LENGTH}, 1, 2) or a "
                                            f"polyphase front end's (N, {FRAME_LENGTH}/P, 1, 2P), P 2 or 4")
        need(math.prod(io["ishape_folded"][0]) == math.prod(io["ishape_normal"][0]), path,
             "io_shape_dict.ishape_folded", "holds another number of values than ishape_normal")
        need(math.prod(io["oshape_folded"][0]) == math.prod(io["oshape_normal"][0]), path,
             "io_shape_dict.oshape_folded", "holds another number of values than oshape_normal")
        need(output == "logits" or (io["oshape_normal"][0][1:] == [1] and io["odt"][0].startswith("UINT")), path,
             "io_shape_dict.oshape_normal", f"{io['oshape_normal'][0]} {io['odt'][0]} is not one class index a frame")
        need(isinstance(d["clock_ns"], (int, float)) and math.isfinite(d["clock_ns"]) and d["clock_ns"] > 0, path,
             "clock_ns", f"{d['clock_ns']!r} is not a positive number")
        need(d["platform"] in PLATFORMS, path, "platform", f"{d['platform']!r} is not one of {', '.join(PLATFORMS)}")
        need(d["bitfile"] is None or (isinstance(d["bitfile"], str) and not Path(d["bitfile"]).is_absolute()), path,
             "bitfile", "not a path inside the bundle")
        return cls(io, iq, _classes(d["classes"], path), d["bitfile"], str(d["board"]), d["platform"],
                   float(d["clock_ns"]), str(d["export_dir"]), dict(d["export_files"]), output)

    def write(self, bundle_dir) -> Path:
        self.from_dict(self.to_dict(), Path(bundle_dir) / "driver_io.json")
        return write_artifact(Path(bundle_dir) / "driver_io.json", self.FORMAT, self.to_dict())

    @classmethod
    def read(cls, bundle_dir) -> "DriverIO":
        """driver_io.json alone; a bundle is read with radioml.finn_settings.read_bundle_io (FINN's settings.json
        beside it checked to say the same)."""
        path = Path(bundle_dir) / "driver_io.json"
        return cls.from_dict(read_artifact(path, cls.FORMAT), path)
