"""export_report.json: the export's per-stage verdicts and cost; its one writer and one reader."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from radioml.artifacts import need, read_artifact, write_artifact


@dataclass(frozen=True)
class ExportReport:
    FORMAT = "amc-export-report/1"
    source: str
    frames: int
    frame_indices: list
    stages: list  # StageResult dicts, in order
    ok: bool
    cost: dict
    torch_top1_accuracy_on_check_frames: float

    @classmethod
    def from_dict(cls, d: dict, path) -> "ExportReport":
        for name in cls.__dataclass_fields__:
            need(name in d, path, name, "missing")
        need(isinstance(d["frames"], int) and d["frames"] >= 1 and len(d["frame_indices"]) == d["frames"], path,
             "frames", "not the number of check frames listed")
        need(isinstance(d["stages"], list) and d["stages"] and all(
            isinstance(s, dict) and {"stage", "ok", "excused"} <= set(s) for s in d["stages"]), path, "stages",
            "not a list of stage verdicts")
        need(d["ok"] == all(s["ok"] for s in d["stages"]), path, "ok", "disagrees with the stage verdicts")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

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
