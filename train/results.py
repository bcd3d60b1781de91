"""The training stage's result files, each with its one writer and one reader (radioml.artifacts):

  metrics.json   a run's test metrics, cost, widths, bits and history (train/loop.py writes it)
  compare.json   the rows of a comparison (train.compare, train.table3), read by build.compare
"""
from __future__ import annotations

import math
from pathlib import Path

from radioml.artifacts import need, read_artifact, write_artifact
from radioml.classes import CLASSES, SNRS_DB

METRICS_FORMAT = "amc-run-metrics/1"
COMPARE_FORMAT = "amc-compare/1"


def _fraction(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 1


def check_metrics(m: dict, path) -> dict:
    for k in ("accuracy", "accuracy_per_snr", "accuracy_per_class", "frames", "widths", "bits", "cost", "history",
              "weights", "weights_kept", "strategy", "met_floor"):
        need(k in m, path, k, "missing")
    need(_fraction(m["accuracy"]), path, "accuracy", f"{m['accuracy']!r} is not in [0, 1]")
    need(isinstance(m["accuracy_per_snr"], dict) and set(m["accuracy_per_snr"]) <= {str(s) for s in SNRS_DB}
         and all(_fraction(v) for v in m["accuracy_per_snr"].values()), path, "accuracy_per_snr",
         "not accuracies keyed by the SNR grid")
    need(isinstance(m["accuracy_per_class"], dict) and set(m["accuracy_per_class"]) <= set(CLASSES), path,
         "accuracy_per_class", "not accuracies keyed by the class names")
    need(isinstance(m["widths"], dict) and all(isinstance(w, int) and w >= 1 for k in ("conv", "dense")
                                               for w in m["widths"].get(k, [0])), path, "widths",
         "conv and dense widths expected")
    need(isinstance(m["weights_kept"], int) and 0 <= m["weights_kept"] <= m["weights"], path, "weights_kept",
         f"{m['weights_kept']!r} is not a count of the {m['weights']} weights")
    return m


def _write(folder, name: str, fmt: str, check, body: dict) -> Path:
    path = Path(folder) / name
    return write_artifact(path, fmt, check(body, path))


def _read(folder, name: str, fmt: str, check) -> dict:
    path = Path(folder) / name
    return check(read_artifact(path, fmt), path)


def write_metrics(run_dir, metrics: dict) -> Path:
    return _write(run_dir, "metrics.json", METRICS_FORMAT, check_metrics, metrics)


def read_metrics(run_dir) -> dict:
    return _read(run_dir, "metrics.json", METRICS_FORMAT, check_metrics)


ROW_FIELDS = ("strategy", "run_dir", "widths", "cost", "accuracy", "met_floor")


def check_compare(c: dict, path) -> dict:
    need(isinstance(c.get("floor"), (int, float)) and 0 <= c["floor"] <= 1, path, "floor", "not in [0, 1]")
    need(isinstance(c.get("rows"), list) and c["rows"], path, "rows", "missing or empty")
    for i, r in enumerate(c["rows"]):
        for k in ROW_FIELDS:
            need(k in r, path, f"rows[{i}].{k}", "missing")
        need(_fraction(r["accuracy"]), path, f"rows[{i}].accuracy", "not in [0, 1]")
    return c


def write_compare(out_dir, result: dict) -> Path:
    return _write(out_dir, "compare.json", COMPARE_FORMAT, check_compare, result)


def read_compare(out_dir) -> dict:
    return _read(out_dir, "compare.json", COMPARE_FORMAT, check_compare)
