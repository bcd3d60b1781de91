"""The shipped reference models (models/reference/): small, safe to load, exportable, and their
metrics are what a re-evaluation on their regenerated synthetic set gives."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from radioml.dataset import RadioMLFile
from radioml.metrics import summarize
from radioml.synthetic import write_synthetic
from train.loop import predict
from train.saved_model import load_model

REF = Path(__file__).resolve().parent.parent / "models" / "reference"
MODELS = {"vgg10-w4a4-f64": 64, "vgg10-w4a4-f32": 32}


@pytest.mark.parametrize("name", MODELS)
def test_reference_model_is_small_and_loads_with_weights_only(name):
    path = REF / name / "model.pt"
    assert path.stat().st_size < 1_000_000
    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert obj["format"] == "amc-vgg10-model/2"
    model, cfg, _ = load_model(path)
    assert cfg.conv_filters == MODELS[name] and cfg.bits_label() == "4/4/4"
    assert sum(int((m.weight != 0).sum()) > 0 for m in model.modules() if hasattr(m, "weight_quant")) == 10


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_reference_model_exports_with_every_check(tmp_path, small_file, name):
    from export.config import ExportConfig
    from export.to_finn import export

    out = export(ExportConfig(run=str(REF / name / "model.pt"), out=str(tmp_path / "exp"), data=str(small_file),
                              check_frames=16), log=lambda *_: None)
    report = json.loads((Path(out) / "export_report.json").read_text())
    assert report["ok"] and all(s["ok"] for s in report["stages"])


@pytest.mark.slow
def test_reference_metrics_match_a_re_evaluation(tmp_path):
    """Regenerate the models' data (the command in models/reference/README.md) and score both models
    on its test split: accuracy overall, per SNR and per class equal the shipped metrics.json."""
    data = write_synthetic(tmp_path / "ref256.hdf5", frames_per_snr=256, seed=1, progress=False)
    torch.set_num_threads(2)
    with RadioMLFile(data) as ds:
        test = ds.split().test
        for name in MODELS:
            shipped = json.loads((REF / name / "metrics.json").read_text())
            model, _, _ = load_model(REF / name / "model.pt")
            r = predict(model, ds, test, torch.device("cpu"), 1024)
            got = summarize(r["y"], r["pred"], r["snr"])
            assert got["frames"] == shipped["frames"] == len(test)
            assert got["accuracy"] == pytest.approx(shipped["accuracy"], abs=1e-12), name
            assert got["accuracy_per_snr"] == pytest.approx(shipped["accuracy_per_snr"], abs=1e-12), name
            assert got["accuracy_per_class"] == pytest.approx(shipped["accuracy_per_class"], abs=1e-12), name
            assert np.array_equal(np.asarray(got["confusion"]), np.asarray(shipped["confusion"])), name
