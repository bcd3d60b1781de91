"""`python -m export.to_finn`: every stage agrees with PyTorch on real frames; corruption is caught and named."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper

from export.check import check_dir
from export.golden import ExportCheckFailed
from export.config import ExportConfig
from export.load import fresh_model
from train.saved_model import save_model
from export.to_finn import export
from train.masks import deployable_copy, init_masks, prune_by
from tests.conftest import assert_every_stage_agrees



@pytest.fixture(scope="module")
def pruned_model_file(tmp_path_factory):
    """A model.pt of ours: calibrated 4-bit VGG10, 70% of the weights pruned."""
    model, cfg, _ = fresh_model(4, seed=3)
    model = init_masks(model)
    prune_by(model, 0.7)
    path = tmp_path_factory.mktemp("run") / "model.pt"
    from train.config import TrainConfig

    save_model(deployable_copy(model), cfg, TrainConfig(model=cfg).to_dict(), path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, small_file, pruned_model_file):
    out = tmp_path_factory.mktemp("exp") / "pruned"
    export(ExportConfig(run=str(pruned_model_file), out=str(out), data=str(small_file), check_frames=6), log=lambda *_: None)
    return out


def test_pruned_model_exports_and_every_stage_agrees(exported):
    rep = assert_every_stage_agrees(exported)
    assert rep["cost"]["weights"] < 0.35 * 159_104  # sparsity reaches the cost
    io = json.loads((exported / "io.json").read_text())
    assert io["input_shape"] == [1, 1024, 1, 2] and io["input_dtype"] == "INT4"
    assert io["input_quant"]["scale"] == 0.25


def test_streamlined_model_reproduces_expected_output(exported):
    from finn.core.onnx_exec import execute_onnx

    m = ModelWrapper(str(exported / "model_finn_streamlined.onnx"))
    x = np.load(exported / "input.npy")
    assert x.shape == (1, 1024, 1, 2) and np.array_equal(x, np.round(x)) and x.min() >= -8 and x.max() <= 7
    y = execute_onnx(m, {m.graph.input[0].name: x})[m.graph.output[0].name]
    np.testing.assert_allclose(y, np.load(exported / "expected_output.npy"), atol=1e-4)
    ops = {n.op_type for n in m.graph.node}
    assert "Quant" not in ops and "Conv" not in ops and "MultiThreshold" in ops


def test_corrupted_weight_in_finn_graph_is_caught_and_named(exported, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    path = bad / "steps" / "04_step_channels_last.onnx"
    m = ModelWrapper(str(path))
    matmuls = [n for n in m.graph.node if n.op_type == "MatMul"]
    w_name = matmuls[3].input[1]
    w = m.get_initializer(w_name).copy()
    w.flat[np.argmax(np.abs(w))] += 3  # one weight
    m.set_initializer(w_name, w)
    m.save(str(path))
    rep = check_dir(bad)
    first = rep.first_failure()
    assert first is not None and first.stage == "finn/channels_last"
    assert first.integer_exact is False
    mts = [n.name for n in m.graph.node if n.op_type == "MultiThreshold"]
    assert first.first_diverging_node.startswith(mts[3] + " "), first.first_diverging_node
    assert all(s.ok for s in rep.stages[:-1])  # earlier stages still agree
    r = subprocess.run([sys.executable, "-m", "export.check", str(bad)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert r.returncode == 1 and "first diverging stage finn/channels_last" in r.stderr and mts[3] in r.stderr


def test_failed_check_leaves_no_output_dir(tmp_path, small_file):
    out = tmp_path / "never"
    with pytest.raises(ExportCheckFailed, match="export check failed at stage qonnx"):
        export(ExportConfig(fresh_bits=4, out=str(out), data=str(small_file), check_frames=2, tol=1e-12),
               log=lambda *_: None)
    assert os.listdir(tmp_path) == []


def test_bad_inputs_give_one_line_errors(tmp_path, small_file, pruned_model_file):
    def run(*args):
        r = subprocess.run([sys.executable, "-m", "export.to_finn", *args, "--data", str(small_file)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
        return r.returncode, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    assert run("--run", str(foreign), "--out", str(tmp_path / "o1")) == (2, f"error: {foreign}: not a model or checkpoint of this toolchain")
    obj = torch.load(pruned_model_file, weights_only=True)
    obj["config"]["model"]["conv_filters"] = 32
    mismatch = tmp_path / "mismatch.pt"
    torch.save(obj, mismatch)
    code, msg = run("--run", str(mismatch), "--out", str(tmp_path / "o2"))
    assert code == 2 and msg.startswith(f"error: {mismatch}: weights do not match its config")
    code, msg = run("--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "o3"))
    assert code == 2 and "no such file" in msg
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, msg = run("--fresh-bits", "4", "--out", str(blocker / "x"))
    assert (code, msg) == (2, f"error: {blocker}: not a directory")
    assert not any(p.name.startswith(".o") for p in tmp_path.iterdir())


def test_top1_agreement_forgives_exact_ties_only():
    from export.golden import _top1_agreement

    ref = np.array([[1.0, 3.0, 3.0], [0.0, 2.0, 1.0], [5.0, 4.0, 0.0]])
    stage = np.array([[1.0, 3.0, 3.0 + 1e-7],  # a tie in the reference: either class is right
                      [0.0, 1.0, 2.0],  # a real disagreement
                      [5.0, 4.0, 0.0]])
    assert _top1_agreement(stage, ref, 1e-4).tolist() == [True, False, True]
