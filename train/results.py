"""Reading run results (written atomically by radioml.atomic.write_json)."""
from __future__ import annotations

import json
from pathlib import Path


def read_metrics(run_dir: Path) -> dict:
    path = Path(run_dir) / "metrics.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read run metrics ({e})") from None
