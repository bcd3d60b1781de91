"""The training loop on a tiny generated file: FMP run, rollback, resume after a kill, outputs."""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import kill_at_epoch
from train import checkpoint as ckpt
from train.masks import init_masks, prune_by
from train.model import ModelConfig, build_vgg10, prunable_layers

SMALL = ["--model.conv_filters", "8", "--model.dense_units", "16", "--optim.batch_size", "128",
         "--data.val_fraction", "0.3", "--threads", "1"]


def run_train(tmp_path, run_dir, data, *extra, check=True, wait=True):
    cmd = [sys.executable, "-m", "train", "--data.path", str(data), "--run_dir", str(run_dir), *SMALL, *extra]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=check, timeout=600)


def load_model(run_dir):
    return torch.load(run_dir / "model.pt", weights_only=True)


def test_rollback_leaves_optimizer_on_the_reloaded_weights():
    """The FMP authors' script kept Adam on the old parameters after reloading: only BN moved."""
    torch.manual_seed(0)
    model = init_masks(build_vgg10(ModelConfig(4, 4, 4, conv_filters=8, dense_units=16)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    x, y = torch.randn(16, 2, 1024), torch.randint(0, 24, (16,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    good = ckpt.snapshot(model, opt, sched)
    prune_by(model, 0.5)
    step()
    step()
    ckpt.restore(good, model, opt, sched)
    conv = prunable_layers(model)[1][0]
    assert torch.equal(conv.weight_orig, good["model"]["5.weight_orig"])
    assert torch.equal(conv.weight_mask, good["model"]["5.weight_mask"])  # the later pruning is undone
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    before = conv.weight_orig.detach().clone()
    step()
    assert not torch.equal(before, conv.weight_orig), "optimizer no longer updates the reloaded conv weights"


def test_fmp_run_writes_model_metrics_plots(tmp_path, tiny_file):
    run = tmp_path / "fmp"
    run_train(tmp_path, run, tiny_file, "--prune.strategy", "fmp", "--prune.floor", "0",
                  "--prune.max_rounds", "3", "--optim.epochs_per_round", "2")
    m = json.loads((run / "metrics.json").read_text())
    assert m["strategy"] == "fmp" and m["feedback_split"] == "val" and m["met_floor"]
    assert m["pruning_steps_kept"] == 3 and m["epochs"] == 4
    assert m["weights_kept"] == pytest.approx(m["weights"] * 0.8 ** 3, abs=2)
    assert m["eta_measured"] == pytest.approx(1 / 0.8 ** 3, rel=1e-3)
    assert m["eta_eq3_all_rounds"] == pytest.approx(1 / 0.8 ** 3)
    assert m["frames"] == 624 and 0 <= m["accuracy"] <= 1
    assert len(m["accuracy_per_snr"]) == 26 and len(m["confusion"]) == 24
    costs = [rec["cost"] for rec in m["rounds"]]
    assert len(costs) == 4 and all(a > b for a, b in zip(costs, costs[1:])), costs  # sparser -> cheaper
    for png in ("confusion.png", "accuracy_vs_snr.png", "accuracy_per_class_vs_snr.png", "trajectory.png"):
        assert (run / png).stat().st_size > 5000
    assert (run / "train.log").read_text().count("epoch") >= 4
    sd = load_model(run)["model"]
    zeros = sum(int((v == 0).sum()) for k, v in sd.items() if k.endswith(".weight") and v.dim() >= 2)
    assert zeros >= m["weights"] - m["weights_kept"]  # masks made permanent
    # the same command again: finished run, nothing retrained, same model
    run_train(tmp_path, run, tiny_file, "--prune.strategy", "fmp", "--prune.floor", "0",
              "--prune.max_rounds", "3", "--optim.epochs_per_round", "2")
    assert all(torch.equal(sd[k], v) for k, v in load_model(run)["model"].items())


def test_other_config_on_same_run_dir_is_refused(tmp_path, tiny_file):
    run = tmp_path / "r"
    run_train(tmp_path, run, tiny_file, "--prune.strategy", "none", "--optim.epochs_per_round", "1")
    r = run_train(tmp_path, run, tiny_file, "--prune.strategy", "none", "--optim.epochs_per_round", "1",
                  "--optim.lr", "0.01", check=False)
    assert r.returncode == 2
    assert "written by another config (differs in optim.lr)" in r.stderr


def test_a_config_written_before_a_field_existed_resumes_as_its_default_and_no_other_value():
    """Checkpoints and search states of runs started before model.polyphase (or compress's fit) existed lack the
    field: it counts as its default, which is what the older code did; any other value is still a difference."""
    import dataclasses

    from compress.config import SearchConfig
    from train.config import TrainConfig, semantic_diff

    new = TrainConfig().to_dict()
    old = copy.deepcopy(new)
    del old["model"]["polyphase"]
    assert semantic_diff(old, new, defaults=TrainConfig().to_dict()) == []
    poly = TrainConfig(model=dataclasses.replace(TrainConfig().model, polyphase=2)).to_dict()
    assert semantic_diff(old, poly, defaults=TrainConfig().to_dict()) == ["model.polyphase"]
    from compress.config import absent_defaults

    search_old = SearchConfig().to_dict()
    del search_old["fit"]  # written before --fit: a LUT search, though the default is now max-utilisation
    assert semantic_diff(search_old, SearchConfig(fit="lut").to_dict(), defaults=absent_defaults()) == []
    assert semantic_diff(search_old, SearchConfig().to_dict(), defaults=absent_defaults()) == ["fit"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path, tiny_file):
    args = ("--prune.strategy", "fmp", "--prune.floor", "0", "--prune.max_rounds", "4",
            "--optim.epochs_per_round", "2", "--prune.cost_every_round", "false")
    ref = tmp_path / "ref"
    run_train(tmp_path, ref, tiny_file, *args)
    run = tmp_path / "killed"
    p = run_train(tmp_path, run, tiny_file, *args, wait=False)
    ck = run / "checkpoint.pt"
    kill_at_epoch(p, ck, 2)
    c = ckpt.load_checkpoint(ck)
    assert not c["state"]["done"]
    masks = {k: v for k, v in c["current"]["model"].items() if k.endswith("weight_mask")}
    assert sum(int(v.sum()) for v in masks.values()) < sum(v.numel() for v in masks.values())  # pruned
    run_train(tmp_path, run, tiny_file, *args)
    a, b = load_model(ref)["model"], load_model(run)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma = json.loads((ref / "metrics.json").read_text())
    mb = json.loads((run / "metrics.json").read_text())
    assert ma["accuracy"] == mb["accuracy"] and ma["weights_kept"] == mb["weights_kept"]
    assert [h["feedback_accuracy"] for h in ma["history"]] == [h["feedback_accuracy"] for h in mb["history"]]


def test_a_finished_run_rerun_rewrites_nothing(tmp_path, tiny_file):
    """Rerunning a finished run's command (a sweep rerun to resume its unfinished rows) leaves its files as they
    were: no re-scoring, no new model.pt, metrics.json or plots."""
    run = tmp_path / "run"
    run_train(tmp_path, run, tiny_file, "--prune.strategy", "none", "--optim.epochs_per_round", "1")
    mine = ("model.pt", "metrics.json", "checkpoint.pt", "confusion.png")
    before = {n: ((run / n).read_bytes(), (run / n).stat().st_mtime_ns) for n in mine}
    r = run_train(tmp_path, run, tiny_file, "--prune.strategy", "none", "--optim.epochs_per_round", "1")
    assert {n: ((run / n).read_bytes(), (run / n).stat().st_mtime_ns) for n in mine} == before
    assert "nothing to redo" in (run / "train.log").read_text(), r.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_data_parallel_on_two_cpu_processes(tmp_path, tiny_file):
    """The same command under torchrun: DistributedDataParallel (gloo on CPU), rank 0 writes."""
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "train", "--data.path", str(tiny_file), "--run_dir", str(run), *SMALL,
           "--prune.strategy", "fmp", "--prune.floor", "0", "--prune.max_rounds", "2",
           "--optim.epochs_per_round", "1", "--prune.cost_every_round", "false"]
    r = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": os.getcwd()}, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["pruning_steps_kept"] == 2 and m["epochs"] == 3
    assert m["weights_kept"] == pytest.approx(m["weights"] * 0.64, abs=2)
    assert (run / "train.log").read_text().count("world 2") == 1


def test_two_ranks_score_the_feedback_split_in_halves_and_agree_with_one_process(tmp_path, tiny_file):
    """Under torchrun each rank scores half the feedback frames with rank 0's BatchNorm statistics, and the
    gathered figures are the single process's (the worker gives the ranks different statistics first)."""
    out = tmp_path / "eval.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "tests/ddp_eval_worker.py", str(tiny_file), str(out)]
    r = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": os.getcwd()}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["frames"] > 100 and res["same"] == {"y": True, "pred": True, "snr": True}
    assert res["accuracy"][0] == res["accuracy"][1] and res["loss"][0] == pytest.approx(res["loss"][1], rel=1e-6)


def test_init_from_a_model_file_keeps_its_pruned_weights_and_refuses_another_shape(tmp_path, tiny_file):
    src = tmp_path / "src"
    run_train(tmp_path, src, tiny_file, "--prune.strategy", "fmp", "--prune.floor", "0", "--prune.max_rounds", "2",
              "--optim.epochs_per_round", "1", "--prune.cost_every_round", "false")
    zeros_src = {k: int((v == 0).sum()) for k, v in load_model(src)["model"].items() if k.endswith(".weight") and v.dim() > 1}
    assert sum(zeros_src.values()) > 0
    run = tmp_path / "from_file"
    r = run_train(tmp_path, run, tiny_file, "--prune.strategy", "none", "--optim.epochs_per_round", "1",
                  "--init_from", str(src / "model.pt"))
    assert f"starting from {src / 'model.pt'}" in (run / "train.log").read_text()
    after = load_model(run)["model"]
    for k, n in zeros_src.items():  # pruned weights stayed pruned through the training epoch
        assert int((after[k] == 0).sum()) >= n, k
    bad = run_train(tmp_path, tmp_path / "wide", tiny_file, "--prune.strategy", "none", "--optim.epochs_per_round", "1",
                    "--init_from", str(src / "model.pt"), "--model.conv_filters", "16", check=False)
    assert bad.returncode == 2 and "other layers or widths" in bad.stderr and "model.pt" in bad.stderr
    assert r.returncode == 0
