"""Filter pruning: the rounding rule, the masks, exact narrowing, the schedules, and a run through export and build."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from radioml.dataset import RadioMLFile
from train.channel_pruning import CHANNEL_MULTIPLE, kept_count, prune_channels, remove_channels, widths
from train.config import PruneConfig
from train.cost import model_cost
from train.masks import deployable_copy, init_masks
from train.model import ModelConfig, build_vgg10, channel_groups
from train.narrow import narrow
from train.scheduler_factory import make_scheduler


@settings(max_examples=300, deadline=None)
@given(groups=st.integers(1, 64), p=st.floats(0.01, 0.99))
def test_kept_count_is_the_nearest_multiple_of_four(groups, p):
    alive = groups * CHANNEL_MULTIPLE
    k = kept_count(alive, p)
    assert k % CHANNEL_MULTIPLE == 0 and CHANNEL_MULTIPLE <= k <= alive
    target = alive * (1 - p)
    if k > CHANNEL_MULTIPLE:  # not clamped at the minimum: no other multiple of 4 is nearer
        assert abs(k - target) <= CHANNEL_MULTIPLE / 2 + 1e-9


def _calibrated(cfg, frames, seed=0):
    torch.manual_seed(seed)
    m = init_masks(build_vgg10(cfg)).train()
    with torch.no_grad():
        for _ in range(4):
            m(frames)
    return m


@pytest.fixture(scope="module")
def frames(small_file):
    with RadioMLFile(small_file) as ds:
        idx = ds.split().test[::20][:48]
        return torch.from_numpy(np.ascontiguousarray(ds.read(idx).transpose(0, 2, 1)))


def test_prune_channels_masks_layer_batchnorm_and_next_inputs(frames):
    cfg = ModelConfig(4, 4, 4, conv_filters=16, dense_units=32)
    m = _calibrated(cfg, frames)
    kept = prune_channels(m, 0.2)
    assert kept == [12] * 7 + [24, 24] and widths(m) == kept
    for g in channel_groups(m):
        dead = ~g.bn.weight_mask.bool()
        assert int(dead.sum()) == g.bn.num_features - (12 if g.bn.num_features == 16 else 24)
        assert torch.all(g.layer.weight_mask[dead] == 0) and g.layer.weight_mask[~dead].flatten(1).any(1).all()
        assert torch.all(g.bn.bias_mask[dead] == 0)
        cols = dead.repeat_interleave(g.repeat)
        assert torch.all(g.consumer.weight_mask[:, cols] == 0)
    # the smallest-L1 rows went: every removed row's norm <= every kept row's
    g = channel_groups(m)[3]
    norms = (g.layer.weight_orig.detach().abs().flatten(1).sum(1))
    dead = ~g.bn.weight_mask.bool()
    assert norms[dead].max() <= norms[~dead].min()
    # channels only shrink: a second step starts from the 12 left
    assert prune_channels(m, 0.2) == [8] * 7 + [20, 20]


def test_a_step_that_rounds_to_nothing_still_removes_one_group(frames):
    m = _calibrated(ModelConfig(4, 4, 4, conv_filters=8, dense_units=8), frames)
    before = widths(m)
    after = prune_channels(m, 0.05)  # 8 * 0.95 rounds back to 8 in every layer
    diff = [b - a for b, a in zip(before, after)]
    assert sorted(diff) == [0] * 8 + [CHANNEL_MULTIPLE]
    assert widths(m) == after


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_narrowing_gives_the_masked_models_logits(frames, seed):
    """Random channel masks in every layer, the last conv (the Flatten mapping) included."""
    cfg = ModelConfig(4, 4, 4, conv_filters=16, dense_units=32)
    m = _calibrated(cfg, frames, seed)
    gen = torch.Generator().manual_seed(seed)
    for g in channel_groups(m):
        n = g.bn.num_features
        drop = torch.zeros(n, dtype=torch.bool)
        drop[torch.randperm(n, generator=gen)[: int(torch.randint(1, n - 1, (1,), generator=gen))]] = True
        remove_channels(g, drop)
    with torch.no_grad():  # BatchNorm statistics move with the masks applied, as in training
        for _ in range(3):
            m(frames)
    m.eval()
    alive = widths(m)
    final = deployable_copy(m)
    small, ncfg = narrow(final, cfg)
    assert list(ncfg.convs) + list(ncfg.denses) == alive and ncfg.convs != cfg.convs
    assert [g.bn.num_features for g in channel_groups(small)] == alive
    with torch.no_grad():
        want, got = final(frames), small(frames)
    assert torch.max(torch.abs(want - got)).item() <= 1e-5
    assert torch.equal(want.argmax(1), got.argmax(1))
    a, b = model_cost(final), model_cost(small)
    assert a.bops == b.bops and a.weight_bits == b.weight_bits  # the cost counts what the narrow model keeps
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in final.parameters())


def test_narrowing_leaves_an_unpruned_model_alone(frames):
    cfg = ModelConfig(4, 4, 4, conv_filters=8, dense_units=8)
    final = deployable_copy(_calibrated(cfg, frames).eval())
    same, same_cfg = narrow(final, cfg)
    assert same is final and same_cfg == cfg


def _actions(sched, accs):
    out = []
    for a in accs:
        act = sched.step(a)
        out.append((act.kind, round(act.amount, 6), sched.structure if act.kind == "prune" else ""))
    return out


def test_filter_fmp_follows_algorithm_2():
    s = make_scheduler("fmp", PruneConfig(floor=0.5, p0=0.2, divisor=2, p_min=0.05, structure="filters"), 1)
    assert _actions(s, [0.6, 0.4, 0.6, 0.4, 0.4]) == [
        ("prune", 0.2, "filters"), ("rollback", 0, ""), ("prune", 0.1, "filters"), ("rollback", 0, ""),
        ("stop", 0, "")]


def test_filter_imp_keeps_its_rate():
    s = make_scheduler("imp", PruneConfig(floor=0.5, p0=0.2, structure="filters"), 2)
    assert _actions(s, [0.6, 0.4, 0.6, 0.4, 0.4]) == [
        ("prune", 0.2, "filters"), ("keep", 0, ""), ("prune", 0.2, "filters"), ("keep", 0, ""), ("stop", 0, "")]


def test_hybrid_runs_filter_fmp_then_unstructured_fmp_from_the_last_good_model():
    cfg = PruneConfig(floor=0.5, p0=0.2, divisor=2, p_min=0.05, structure="hybrid")
    s = make_scheduler("fmp", cfg, 1)
    first = _actions(s, [0.6, 0.4, 0.6, 0.4, 0.4])
    assert first == [("prune", 0.2, "filters"), ("rollback", 0, ""), ("prune", 0.1, "filters"),
                     ("rollback", 0, ""), ("rollback", 0, "")]  # filter FMP stopped: back to its last good model
    assert s.structure == "unstructured" and s.rate == 0.2  # a fresh schedule for the unstructured phase
    # checkpointed and restored mid-way, it continues identically
    state = json.loads(json.dumps(s.state_dict()))
    t = make_scheduler("fmp", cfg, 1)
    t.load_state_dict(state)
    rest = [0.6, 0.4, 0.4, 0.4]
    want = [("prune", 0.2, "unstructured"), ("rollback", 0, ""), ("rollback", 0, ""), ("stop", 0, "")]
    assert _actions(s, rest) == want and _actions(t, rest) == want


def test_hybrid_without_any_good_model_just_stops():
    s = make_scheduler("fmp", PruneConfig(floor=0.9, p0=0.2, divisor=2, p_min=0.05, structure="hybrid"), 1)
    kinds = [s.step(0.1).kind for _ in range(3)]
    assert kinds == ["keep", "keep", "stop"] and s.done


def _train_fmp(run, data, filters: int, dense: int, structure: str) -> None:
    """Two FMP steps of `structure` at floor 0 on a small VGG10, by the CLI."""
    cmd = [sys.executable, "-m", "train", "--data.path", str(data), "--run_dir", str(run),
           "--model.conv_filters", str(filters), "--model.dense_units", str(dense), "--optim.batch_size", "128",
           "--data.val_fraction", "0.3", "--threads", "1", "--prune.strategy", "fmp", "--prune.structure", structure,
           "--prune.floor", "0", "--prune.max_rounds", "2", "--optim.epochs_per_round", "1",
           "--prune.cost_every_round", "false"]
    r = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": os.getcwd()}, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]


def test_structured_run_exports_with_every_check_and_builds(tmp_path, tiny_file, small_file):
    from build.config import BuildConfig
    from build.flow import build
    from export.config import ExportConfig
    from export.to_finn import export
    from train.saved_model import load_model

    run = tmp_path / "filters"
    _train_fmp(run, tiny_file, 32, 64, "filters")
    m = json.loads((run / "metrics.json").read_text())
    assert m["structure"] == "filters" and m["widths"] == {"conv": [20] * 7, "dense": [40, 40]}  # 32 -> 24 -> 20
    saved = torch.load(run / "model.pt", weights_only=True)
    assert saved["config"]["model"]["conv_widths"] == [20] * 7 and saved["model"]["1.weight"].shape == (20, 2, 3)
    model, cfg, _ = load_model(run)
    assert cfg.convs == (20,) * 7 and cfg.denses == (40, 40)
    assert sum(p.numel() for p in model.parameters() if p.dim() > 1) == m["weights_kept"]

    exp = export(ExportConfig(run=str(run), out=str(tmp_path / "exp"), data=str(small_file), check_frames=8),
                 log=lambda *_: None)
    rep = json.loads((exp / "export_report.json").read_text())
    assert rep["ok"] and all(s["top1_agreement"] == 1.0 for s in rep["stages"])
    assert all(s["integer_exact"] for s in rep["stages"] if s["stage"].startswith("finn/"))
    assert rep["cost"]["cost"] == pytest.approx(m["cost"]["cost"], rel=1e-9)

    out = build(BuildConfig(export_dir=str(exp), out=str(tmp_path / "b"), board="ZCU104", max_fps=True),
                log=lambda *_: None)
    b = json.loads((out / "build_report.json").read_text())
    assert b["verification"] == {"streamlined_python": "SUCCESS", "hw_layers_python": "SUCCESS"}
    assert b["meets_target"] and b["max_fps"]["fps"] == pytest.approx(b["estimated_fps"])
    assert all(b["utilisation"][k] <= 0.8 for k in ("LUT", "BRAM_18K", "DSP"))
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    dfm = ModelWrapper(str(out / "model_dataflow.onnx"))
    mh = [getCustomOp(n).get_nodeattr("MH") for n in dfm.graph.node if n.op_type.startswith("MVAU")]
    assert mh == [20] * 7 + [40, 40, 24]


def test_hybrid_run_prunes_filters_then_weights_and_saves_the_narrow_model(tmp_path, tiny_file):
    run = tmp_path / "hybrid"
    _train_fmp(run, tiny_file, 16, 32, "hybrid")
    m = json.loads((run / "metrics.json").read_text())
    actions = [h["action"] for h in m["history"]]
    # 2 filter prunes, max_rounds ends the filter phase (rollback to its last good model), 2 unstructured prunes
    assert actions == ["prune", "prune", "rollback", "prune", "prune", "stop"]
    assert m["widths"] == {"conv": [8] * 7, "dense": [20, 20]}  # 16 -> 12 -> 8, 32 -> 24 -> 20
    sd = torch.load(run / "model.pt", weights_only=True)["model"]
    assert sd["1.weight"].shape == (8, 2, 3)
    weights = sum(v.numel() for k, v in sd.items() if k.endswith(".weight") and v.dim() > 1)
    assert m["weights_kept"] == pytest.approx(0.64 * weights, abs=3)  # two unstructured steps of 20% on the narrow model
