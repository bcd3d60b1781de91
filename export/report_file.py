"""export_report.json: the export's per-stage verdicts and cost; its one writer and one reader."""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path

from radioml.artifacts import need, read_artifact, write_artifact

REFERENCES = ("pytorch", "qonnx")  # what the stages of an export are checked against


@dataclass(frozen=True)
class ExportReport:
    FORMAT = "amc-export-report/1"
    source: str
    frames: int
    frame_indices: list
    stages: list  # StageResult dicts, in order
    ok: bool
    cost: dict
    reference_top1_accuracy_on_check_frames: float
    reference: str = "pytorch"  # what every stage is compared with: "pytorch" (a model), "qonnx" (a QONNX file)
    time_per_step: dict = field(default_factory=dict)  # seconds each FINN-side step took (as FINN's builder records)

    @classmethod
    def from_dict(cls, d: dict, path) -> "ExportReport":
        for name, f in cls.__dataclass_fields__.items():
            need(name in d or f.default is not MISSING or f.default_factory is not MISSING, path, name, "missing")
        need(d.get("reference", "pytorch") in REFERENCES, path, "reference", f"not one of {', '.join(REFERENCES)}")
        need(isinstance(d["frames"], int) and d["frames"] >= 1 and len(d["frame_indices"]) == d["frames"], path,
             "frames", "not the number of check frames listed")
        need(isinstance(d["stages"], list) and d["stages"] and all(
            isinstance(s, dict) and {"stage", "ok", "excused"} <= set(s) for s in d["stages"]), path, "stages",
            "not a list of stage verdicts")
        need(d["ok"] == all(s["ok"] for s in d["stages"]), path, "ok", "disagrees with the stage verdicts")
        need(isinstance(d.get("time_per_step", {}), dict) and all(
            isinstance(v, (int, float)) and v >= 0 for v in d.get("time_per_step", {}).values()), path,
            "time_per_step", "not a map of step names to seconds")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def stage(self, name: str) -> dict:
        return next(s for s in self.stages if s["stage"] == name)

    def write(self, export_dir) -> Path:
        path = Path(export_dir) / "export_report.json"
        self.from_dict(asdict(self), path)
        return write_artifact(path, self.FORMAT, asdict(self))

    @classmethod
    def read(cls, export_dir) -> "ExportReport":
        path = Path(export_dir) / "export_report.json"
        return cls.from_dict(read_artifact(path, cls.FORMAT), path)
