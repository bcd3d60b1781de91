"""The precision search (train/precision.py): feedback and rollback on bit widths, resume, Table 3."""
import json
import os
import subprocess
import sys

import pytest
import torch

from radioml.classes import FRAME_LENGTH
from tests.conftest import kill_at_epoch
from train import checkpoint as ckpt
from train import loop
from train.config import TrainConfig
from train.masks import init_masks
from train.model import ModelConfig, build_vgg10
from train.precision import PrecisionScheduler, layer_figures

SMALL = ["--model.conv_filters", "8", "--model.dense_units", "16", "--optim.batch_size", "128",
         "--data.val_fraction", "0.3", "--threads", "1", "--prune.cost_every_round", "false"]
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


@pytest.fixture(scope="module")
def figures():
    return layer_figures(init_masks(build_vgg10(ModelConfig(4, 4, 4, conv_filters=8, dense_units=16))), FRAME_LENGTH)


def scheduler(figures, objective="cost", epochs=2, **kw):
    s = PrecisionScheduler(0.5, epochs, objective, **kw)
    s.start(figures, 4, [4] * 10, [4] * 9)
    return s


def lowered(bits, kind, i):
    out = {k: list(v) for k, v in bits.items()}
    out[kind][i] -= 1
    return out


def test_layer_figures_count_macs_and_weights(figures):
    # conv 0: 8 filters x 2 inputs x 3 taps at 1024 positions; dense 0: 16 x (8 channels x 8 positions)
    assert figures[0] == {"macs": 8 * 2 * 3 * 1024, "dense_macs": 8 * 2 * 3 * 1024, "weights": 48, "out_channels": 8}
    assert figures[1]["macs"] == 8 * 8 * 3 * 512
    assert figures[7] == {"macs": 16 * 64, "dense_macs": 16 * 64, "weights": 16 * 64, "out_channels": 16}
    assert figures[9]["out_channels"] == 24


def test_a_lowering_that_breaks_the_floor_is_rolled_back_and_never_tried_again(figures):
    s = scheduler(figures)
    start = {"weight": [4] * 10, "act": [4] * 9}
    first = s.candidates(start)[0]
    a = s.step(0.6)  # the start model meets the floor: save it, lower the best candidate
    assert a.kind == "requantize" and a.met_floor and a.bits == lowered(start, first[1], first[2])
    assert s.step(0.4).kind == "keep"  # first of two epochs under the floor
    a = s.step(0.45)  # the round ends under the floor: back to the start bits, next candidate
    second = s.candidates(start)[0]  # (the first one is frozen now)
    assert second[1:] != first[1:]
    assert a.kind == "rollback" and not a.met_floor and a.bits == lowered(start, second[1], second[2])
    assert s.frozen == [list(first[1:])]
    a = s.step(0.7)  # the second lowering holds: it is in the last good bits, and the next one is tried
    assert s.good_bits == lowered(start, second[1], second[2])
    assert a.kind == "requantize" and a.met_floor
    assert a.bits[first[1]][first[2]] == 4  # the frozen lowering is not tried again
    assert all(c[1:] != first[1:] for c in s.candidates(s.good_bits))


def test_the_search_stops_when_no_layer_can_lose_a_bit(figures):
    s = scheduler(figures, epochs=1, min_weight_bits=3, min_act_bits=3)
    actions = [s.step(0.9) for _ in range(20)]
    assert [a.kind for a in actions] == ["requantize"] * 19 + ["stop"]
    assert actions[-1].met_floor and "no layer" in actions[-1].reason
    assert s.good_bits == {"weight": [3] * 10, "act": [3] * 9}
    with pytest.raises(RuntimeError):
        s.step(0.9)


def test_a_start_model_under_the_floor_stops_at_once(figures):
    s = scheduler(figures, epochs=1)
    a = s.step(0.1)
    assert a.kind == "stop" and a.final == "current"


def test_objectives_rank_by_their_own_savings(figures):
    start = {"weight": [4] * 10, "act": [4] * 9}
    cost_best = scheduler(figures, "cost").candidates(start)[0]
    hw_best = scheduler(figures, "hardware").candidates(start)[0]
    # the cost weighs weight memory: the first dense layer holds the most weights here;
    # FINN's LUTs scale with dense MACs x bits: the widest-in-time conv layers
    assert cost_best[1:] == ("weight", 7)
    assert hw_best[1] in ("weight", "act") and hw_best[2] <= 2


def test_scheduler_state_round_trips_mid_search(figures):
    a, b = scheduler(figures), scheduler(figures)
    for acc in (0.6, 0.4):
        a.step(acc)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for acc in (0.3, 0.8, 0.8, 0.2, 0.2):
        assert a.step(acc) == b.step(acc)


def test_run_rolls_back_to_the_last_good_bits(tmp_path, tiny_file, monkeypatch):
    """Scripted feedback accuracies through the real training loop: the model is rebuilt with the
    tried bits, rolled back (rebuilt with the last good bits), and saved with those."""
    script = iter([0.6, 0.4, 0.6, 0.6])
    real = loop.predict

    def scripted(model, ds, idx, device, batch_size=1024, desc=None):
        out = real(model, ds, idx, device, batch_size, desc)
        if desc is None:  # the feedback split; the test split stays real
            out["accuracy"] = next(script)
        return out

    monkeypatch.setattr(loop, "predict", scripted)
    cfg = TrainConfig(model=ModelConfig(4, 4, 4, conv_filters=8, dense_units=16), run_dir=str(tmp_path / "run"),
                      threads=1)
    cfg.data.path, cfg.data.val_fraction = str(tiny_file), 0.3
    cfg.optim.batch_size, cfg.optim.epochs_per_round = 128, 1
    cfg.prune.strategy, cfg.prune.floor, cfg.prune.max_rounds, cfg.prune.cost_every_round = "precision", 0.5, 3, False
    loop.train(cfg)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["action"] for h in m["history"]] == ["requantize", "rollback", "requantize", "stop"]
    bits = [h["bits"] for h in m["history"]]
    # epoch 1 ran at 4 bits; 2 at the first trial; 3 at the second (first rolled back); 4 at the third
    assert bits[0] == "4/4/4" and len(set(bits)) == 4
    first_w = m["history"][1]["bits"]
    final = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["config"]["model"]
    assert m["bits"]["label"] == bits[3] != first_w  # the last model that met the floor
    assert final["layer_weight_bits"] == m["bits"]["weight"] and final["layer_act_bits"] == m["bits"]["activation"]
    assert sum(final["layer_weight_bits"]) + sum(final["layer_act_bits"]) == 4 * 19 - 2  # two lowerings kept
    sd = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model"]
    fresh = build_vgg10(ModelConfig(**final))
    fresh.load_state_dict(sd)  # the saved weights fit a model built with the saved bits


def _train(run_dir, data, *extra, wait=True):
    cmd = [sys.executable, "-m", "train", "--data.path", str(data), "--run_dir", str(run_dir), *SMALL, *extra]
    if not wait:
        return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=True, timeout=600)


@pytest.mark.slow
def test_killed_precision_search_resumes_to_the_same_result(tmp_path, tiny_file):
    args = ("--prune.strategy", "precision", "--prune.floor", "0", "--prune.max_rounds", "4",
            "--optim.epochs_per_round", "1")
    ref = tmp_path / "ref"
    _train(ref, tiny_file, *args)
    run = tmp_path / "killed"
    p = _train(run, tiny_file, *args, wait=False)
    ck = run / "checkpoint.pt"
    kill_at_epoch(p, ck, 2)
    c = ckpt.load_checkpoint(ck)
    assert not c["state"]["done"] and c["current"]["model_cfg"]["layer_weight_bits"] is not None  # killed mid-search
    _train(run, tiny_file, *args)
    a = torch.load(ref / "model.pt", weights_only=True)
    b = torch.load(run / "model.pt", weights_only=True)
    assert a["config"]["model"] == b["config"]["model"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (ref, run))
    assert [h["bits"] for h in ma["history"]] == [h["bits"] for h in mb["history"]]
    assert [h["feedback_accuracy"] for h in ma["history"]] == [h["feedback_accuracy"] for h in mb["history"]]


@pytest.mark.slow
def test_table3_command_writes_every_row(tmp_path, tiny_file):
    out = tmp_path / "t3"
    r = subprocess.run([sys.executable, "-m", "train.table3", "--out", str(out), "--bits", "4", "3",
                        "--pretrain-epochs", "1", "--data.path", str(tiny_file), *SMALL, "--prune.floor", "0",
                        "--prune.max_rounds", "2", "--optim.epochs_per_round", "1"],
                       env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    t = json.loads((out / "table3.json").read_text())
    assert [x["row"] for x in t["rows"]] == ["FMP 4-bit", "FMP 3-bit", "IMP 3-bit", "FMP 3-bit + precision search"]
    fmp4, fmp3, imp3, mixed = t["rows"]
    assert fmp4["bits"] == "4/4/4" and fmp3["bits"] == "3/3/3" and imp3["bits"] == "3/3/3"
    assert mixed["bits"] != "3/3/3" and mixed["cost"] < fmp3["cost"]  # two bits lowered at floor 0
    assert fmp3["cost"] < fmp4["cost"] and fmp4["steps_kept"] == 2
    for x in t["rows"]:
        assert {"eta_measured", "eta_eq3_all", "bops_pct", "weight_bits_pct", "cost", "accuracy"} <= x.keys()
    assert json.loads((out / "compare.json").read_text())["rows"][0]["run_dir"] == str(out / "fmp-4b")
    assert (out / "cost_vs_bits.png").stat().st_size > 10_000
    assert "FMP 3-bit + precision search" in r.stdout and "eta eq.3" in r.stdout
