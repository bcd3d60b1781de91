"""Reading and writing run results (JSON, atomically)."""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(obj, path: Path) -> None:
    """Write JSON to a temporary file, then rename: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def read_metrics(run_dir: Path) -> dict:
    path = Path(run_dir) / "metrics.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read run metrics ({e})") from None
