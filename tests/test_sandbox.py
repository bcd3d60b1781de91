"""The challenge sandbox's real-data VGG10: the fidelity instrument and the import into this toolchain.

Uses the copy in ../shared/reference/sandbox-vgg10-w8a8/ (Xilinx/brevitas-radioml-challenge-21,
Apache 2.0); skipped where that folder is absent.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from radioml.classes import CLASSES, SNRS_DB
from radioml.synthetic import HARSH, write_synthetic
from tests.conftest import assert_every_stage_agrees, run_cli

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = ROOT.parent / "shared" / "reference" / "sandbox-vgg10-w8a8" / "pretrained_VGG10_w8a8_20.pth"
needs_sandbox = pytest.mark.skipif(not SANDBOX.is_file(), reason=f"{SANDBOX} not here (the sandbox model)")


def _run(*args):
    return run_cli(*args)[0]


@pytest.fixture(scope="module")
def harsh_file(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("harsh") / "harsh.hdf5", 8, seed=1, cfg=HARSH, progress=False)


@needs_sandbox
def test_fidelity_table_on_a_small_file_and_the_calibration_shows(tmp_path, small_file, harsh_file):
    r = _run("train.fidelity", "--model", str(SANDBOX), "--data", str(small_file), "--out", str(tmp_path / "cal"))
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("624 test frames: accuracy ") and "(real file 0.5947)" in lines[0]
    assert sum(line.split()[0] in {str(s) for s in SNRS_DB} for line in lines if line.strip()) == 26
    assert sum(line.split()[0] in CLASSES for line in lines if line.strip()) == 24
    assert "largest excess over the real curve at 0 dB and above" in r.stdout
    cal = json.loads((tmp_path / "cal" / "fidelity.json").read_text())
    assert cal["frames"] == 624 and len(cal["per_snr"]) == 26 and len(cal["per_class"]) == 24
    # the summary line and the JSON say the same figure, and it lies within the per-SNR range it averages
    high = [a for s, a in cal["per_snr"].items() if int(s) >= 10]
    assert f"{cal['mean_10_30db']:.4f}" in r.stdout and min(high) <= cal["mean_10_30db"] <= max(high)
    assert (tmp_path / "cal" / "fidelity.png").stat().st_size > 20_000
    r = _run("train.fidelity", "--model", str(SANDBOX), "--data", str(harsh_file), "--out", str(tmp_path / "harsh"))
    assert r.returncode == 0, r.stderr[-2000:]
    harsh = json.loads((tmp_path / "harsh" / "fidelity.json").read_text())
    # the real-data model recognises the calibrated frames and not the earlier generator's
    assert cal["mean_10_30db"] > 0.7 and harsh["mean_10_30db"] < 0.3


@needs_sandbox
def test_import_gives_the_sandbox_model_as_a_model_pt_that_exports_with_every_check(tmp_path, small_file):
    from export.config import ExportConfig
    from export.to_finn import export
    from train.sandbox import load_sandbox
    from train.saved_model import load_model

    r = _run("train.import_sandbox", str(SANDBOX), "--out", str(tmp_path / "imp"))
    assert r.returncode == 0 and "8/8/8 bits" in r.stdout, r.stderr
    model, cfg, _ = load_model(tmp_path / "imp")
    x = torch.randn(8, 2, 1024)
    with torch.no_grad():
        assert torch.equal(model(x), load_sandbox(SANDBOX)(x))
    assert cfg.bits_label() == "8/8/8" and cfg.convs == (64,) * 7
    out = export(ExportConfig(run=str(tmp_path / "imp"), out=str(tmp_path / "exp"), data=str(small_file),
                              check_frames=4), log=lambda *_: None)
    assert_every_stage_agrees(out)
    io = json.loads((out / "io.json").read_text())
    assert io["input_dtype"] == "INT8" and io["input_quant"]["scale"] == pytest.approx(2 / 128)


@needs_sandbox
def test_a_requantised_narrowed_import_starts_fmp(tmp_path, tiny_file):
    r = _run("train.import_sandbox", str(SANDBOX), "--out", str(tmp_path / "f32"), "--bits", "4",
             "--conv-filters", "32")
    assert r.returncode == 0 and "4/4/4 bits" in r.stdout and "32 conv filters" in r.stdout, r.stderr
    r = _run("train", "--data.path", str(tiny_file), "--init_from", str(tmp_path / "f32" / "model.pt"),
             "--model.conv_filters", "32", "--prune.strategy", "fmp", "--optim.epochs_per_round", "1",
             "--prune.max_rounds", "1", "--prune.floor", "0", "--optim.batch_size", "128", "--data.val_fraction", "0.3",
             "--prune.cost_every_round", "false", "--threads", "1", "--run_dir", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "starting from" in r.stdout + r.stderr and "f32/model.pt" in r.stdout + r.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["widths"]["conv"] == [32] * 7 and m["pruning_steps_kept"] == 1 and m["weights_kept"] < m["weights"]


def test_import_refuses_what_is_not_a_sandbox_state_dict(tmp_path):
    torch.save({"1.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    r = _run("train.import_sandbox", str(tmp_path / "wrong.pth"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and f"{tmp_path / 'wrong.pth'}: not the sandbox's VGG10" in r.stderr
    r = _run("train.import_sandbox", str(ROOT / "models/reference/vgg10-w4a4-f64/model.pt"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "a model file of this toolchain, not a sandbox state dict" in r.stderr
    r = _run("train.import_sandbox", str(tmp_path / "none.pth"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "none.pth: no such file" in r.stderr
    assert not (tmp_path / "o").exists()
