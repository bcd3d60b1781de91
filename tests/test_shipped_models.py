"""The shipped results (models/: the ladder, the compressed models, the front-end pair, the search's points): each
model.pt is small and loads with weights_only, exports with every check, and re-scores to its shipped figures on
its regenerated data (the command in models/README.md).

Marked `shipped`: about ten minutes of exports and scoring, run by `make test-shipped` (CI runs it after the
default suite), not by `make test`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from radioml.dataset import RadioMLFile
from radioml.metrics import summarize
from radioml.synthetic import PROFILES, write_synthetic
from train.loop import predict
from train.saved_model import load_model

pytestmark = pytest.mark.shipped

MODELS = Path(__file__).resolve().parent.parent / "models"
DATA = "data/ladder256.hdf5"  # every run below names it in its config.json
# What CPU float kernels may change in a quantised network's predictions (tests/test_reference_models.py: frames
# whose activations sit on a rounding boundary move between confusion cells across CPUs and kernels).
MOVED_FRAMES = 0.01
BREAKDOWN_ABS = 0.01


def _runs() -> list[Path]:
    """Run directories with a model.pt and its metrics.json (finished runs only)."""
    found = [*MODELS.glob("ladder/f*/"), *MODELS.glob("compression/*/"), *MODELS.glob("front-end/*/"),
             *MODELS.glob("table3/*/")]
    return sorted(d for d in found if (d / "model.pt").is_file() and (d / "metrics.json").is_file())


def _points() -> list[tuple[Path, dict]]:
    """(model.pt, its frontier point) of every shipped hardware-aware search."""
    out = []
    for f in sorted(MODELS.glob("frontier-*/frontier.json")):
        for p in json.loads(f.read_text())["points"]:
            out.append((MODELS.parent / p["model"], p))
    return out


RUNS = _runs()
POINTS = _points()
MODEL_FILES = [r / "model.pt" for r in RUNS] + [p for p, _ in POINTS]


def _id(p) -> str:
    return str(p[0] if isinstance(p, tuple) else p).split("models/", 1)[-1]


def test_the_shipped_results_are_found():
    names = {_id(r) for r in RUNS}
    assert {f"ladder/f{w}" for w in (16, 24, 32, 48, 64)} <= names and "compression/imp" in names
    assert {"front-end/f32-p1", "front-end/f32-p4"} <= names and len(POINTS) >= 2
    for run in RUNS:
        assert json.loads((run / "config.json").read_text())["data"]["path"] == DATA, run


@pytest.mark.parametrize("path", MODEL_FILES, ids=_id)
def test_a_shipped_model_is_small_and_loads_with_weights_only(path):
    assert path.stat().st_size < 1_000_000
    assert torch.load(path, map_location="cpu", weights_only=True)["format"] == "amc-vgg10-model/2"
    model, cfg, _ = load_model(path)
    assert model(torch.zeros(1, 2, 1024)).shape == (1, 24)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """models/README.md's data command, regenerated (about a minute, 1.3 GB)."""
    return write_synthetic(tmp_path_factory.mktemp("shipped") / "ladder256.hdf5", frames_per_snr=256, seed=1,
                           cfg=PROFILES["calibrated"], progress=False)


@pytest.mark.parametrize("path", MODEL_FILES, ids=_id)
def test_a_shipped_model_exports_with_every_check(tmp_path, small_file, path):
    from export.config import ExportConfig
    from export.to_finn import export

    out = export(ExportConfig(run=str(path), out=str(tmp_path / "exp"), data=str(small_file), check_frames=8),
                 log=lambda *_: None)
    report = json.loads((Path(out) / "export_report.json").read_text())
    assert report["ok"] and all(s["ok"] for s in report["stages"])


@pytest.mark.xdist_group("regenerated-data")  # one worker regenerates the data and scores on it
@pytest.mark.parametrize("run", RUNS, ids=_id)
def test_a_shipped_run_re_scores_to_its_metrics(data, run):
    """The whole test split: confusion and per-class accuracy as shipped, to within what float kernels change."""
    shipped = json.loads((run / "metrics.json").read_text())
    torch.set_num_threads(2)
    model, _, _ = load_model(run / "model.pt")
    with RadioMLFile(data) as ds:
        test = ds.split().test
        assert len(test) == shipped["frames"] == 16_224
        r = predict(model, ds, test, torch.device("cpu"), 1024)
    got = summarize(r["y"], r["pred"], r["snr"])
    moved = np.abs(np.asarray(got["confusion"]) - np.asarray(shipped["confusion"])).sum() / 2
    assert moved <= MOVED_FRAMES * len(test), moved
    assert got["accuracy"] == pytest.approx(shipped["accuracy"], abs=MOVED_FRAMES)
    for c in shipped["classes"]:
        assert got["accuracy_per_class"][c] == pytest.approx(shipped["accuracy_per_class"][c], abs=BREAKDOWN_ABS), c


@pytest.mark.xdist_group("regenerated-data")
@pytest.mark.parametrize("path, point", POINTS, ids=[_id(p) for p, _ in POINTS])
def test_a_search_point_re_scores_to_its_test_accuracy(data, path, point):
    torch.set_num_threads(2)
    model, _, _ = load_model(path)
    with RadioMLFile(data) as ds:
        test = ds.split().test
        r = predict(model, ds, test, torch.device("cpu"), 1024)
    assert float(np.mean(r["y"] == r["pred"])) == pytest.approx(point["test_accuracy"], abs=MOVED_FRAMES)
