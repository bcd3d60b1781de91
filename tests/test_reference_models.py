"""The shipped reference models (models/reference/): small, safe to load, exportable, and their
metrics are what a re-evaluation on their regenerated synthetic set gives."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from radioml.dataset import RadioMLFile
from radioml.metrics import summarize
from radioml.synthetic import CALIBRATED_V1, write_synthetic
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


# A quantised network's predictions follow its float kernels where an activation sits on a rounding boundary
# (QAT puts latent values there): the 64-filter reference, evaluated on an AMD EPYC with torch's AVX2 kernels,
# moves 80 of 16,224 test frames to another confusion cell against its metrics.json (written where it was
# trained), and 3 frames between torch's AVX2 and default kernels on the same machine; the 32-filter one moves
# none. So the shipped figures must hold to within what such kernels change, and no more.
MOVED_FRAMES = 0.01  # fraction of test frames that may sit in another confusion cell
BREAKDOWN_ABS = 0.01  # accuracy of one SNR (624 frames) or one class (676 frames)


CHECKED_CLASSES = range(0, 24, 4)  # every fourth class, all its SNRs: a quarter of the evaluation, every kind


@pytest.mark.slow
def test_reference_metrics_match_a_re_evaluation(tmp_path):
    """Regenerate the models' data (the command in models/reference/README.md, profile calibrated-v1) and score both
    models on the test frames of every fourth class: their confusion rows and accuracy per class are the shipped
    metrics.json's, to within what the CPU's float kernels change (MOVED_FRAMES)."""
    data = write_synthetic(tmp_path / "ref256.hdf5", frames_per_snr=256, seed=1, cfg=CALIBRATED_V1, progress=False)
    torch.set_num_threads(2)
    with RadioMLFile(data) as ds:
        test = ds.split().test
        assert len(test) == 16_224
        test = test[np.isin(ds.labels[test], CHECKED_CLASSES)]
        for name in MODELS:
            shipped = json.loads((REF / name / "metrics.json").read_text())
            assert shipped["frames"] == 16_224
            model, _, _ = load_model(REF / name / "model.pt")
            r = predict(model, ds, test, torch.device("cpu"), 1024)
            got = summarize(r["y"], r["pred"], r["snr"])
            rows = list(CHECKED_CLASSES)
            moved = np.abs(np.asarray(got["confusion"])[rows] - np.asarray(shipped["confusion"])[rows]).sum() / 2
            assert moved <= MOVED_FRAMES * len(test), (name, moved)
            for c in (shipped["classes"][k] for k in rows):
                assert got["accuracy_per_class"][c] == pytest.approx(shipped["accuracy_per_class"][c],
                                                                     abs=BREAKDOWN_ABS), (name, c)
