"""torchrun on this machine's CPUs (gloo): BatchNorm over the global batch, the masks' check, world-size resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import kill_at_epoch
from tests.test_training import SMALL, run_train

pytestmark = pytest.mark.distributed  # torchrun ranks: make test-dist


def _torchrun(*args, timeout=300, wait=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_global_batchnorm_on_two_ranks_is_one_batchnorm_over_the_whole_batch(tmp_path):
    out = tmp_path / "bn.json"
    r = _torchrun("tests/ddp_sync_worker.py", "bn", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    err = json.loads(out.read_text())
    assert err["y_scale"] > 1
    for k in ("y", "x_grad", "param_grad", "running_mean", "running_var"):
        assert err[k] < 1e-4, (k, err)


def test_ranks_that_pruned_different_weights_stop_the_job_naming_them(tmp_path):
    out = tmp_path / "masks"
    r = _torchrun("tests/ddp_sync_worker.py", "masks", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    for rank in (0, 1):
        msg = json.loads((tmp_path / f"masks.{rank}").read_text())["error"]
        assert msg.startswith("epoch 2: ranks [1] pruned other weights than rank 0"), msg


def test_a_torchrun_training_job_ends_its_process_group_on_every_rank(tmp_path, tiny_file):
    """A rank that exits with its gloo group up can abort (SIGABRT) after its work is done, failing the job."""
    out = tmp_path / "job"
    r = _torchrun("tests/ddp_sync_worker.py", "job", str(out), "--data.path", str(tiny_file), "--run_dir",
                  str(tmp_path / "run"), *SMALL, "--prune.strategy", "none", "--optim.epochs_per_round", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    for rank in (0, 1):
        assert json.loads((tmp_path / f"job.{rank}").read_text()) == {"rc": 0, "process_group_up": False}
    assert (tmp_path / "run" / "model.pt").exists()


FMP = ["--train.fused", "false", "--prune.strategy", "fmp", "--prune.floor", "0", "--prune.max_rounds", "3",
       "--optim.epochs_per_round", "1", "--prune.cost_every_round", "false"]


def _descendants(pid: int) -> list[int]:
    children = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The process id of torchrun worker `rank` under the launcher process (its environment names the rank)."""
    for pid in _descendants(launcher):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and b"TORCHELASTIC_RUN_ID=" in b"\0".join(env):
            return pid
    return None


def _kill_rank_at_epoch(proc, checkpoint, rank: int, epoch: int, timeout: float = 600) -> None:
    from train import checkpoint as ckpt

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if checkpoint.exists() and ckpt.load_checkpoint(checkpoint)["state"]["epoch"] >= epoch:
            pid = _rank_pid(proc.pid, rank)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.2)
    raise AssertionError(f"rank {rank} was not caught after epoch {epoch} (launcher exit {proc.poll()})")


@pytest.mark.slow
def test_two_ranks_with_global_batchnorm_train_and_prune_as_one_process_at_the_same_global_batch(tmp_path, tiny_file):
    """Global batch 128 (SMALL) split over 2 gloo ranks with --sync_bn: the losses and feedback accuracies of one
    process at batch 128, the same pruning decisions and the same masks (1,248 training frames: every shard even).
    Both without the fused step's pool-before-quantise: it sends a gradient to the larger raw value of a pair, so
    floating-point-level differences of the BatchNorm sums move it between exactly tied values. The 2-rank job
    loses rank 1 to a SIGKILL after its first epoch: torchrun stops the job with an error, and the same command
    resumes it from rank 0's checkpoint to the one-process result."""
    import torch

    start = tmp_path / "start"
    run_train(tmp_path, start, tiny_file, "--prune.strategy", "none", "--optim.epochs_per_round", "1")
    one, two = tmp_path / "one", tmp_path / "two"
    run_train(tmp_path, one, tiny_file, "--init_from", str(start / "model.pt"), *FMP)
    args = ("-m", "train", "--data.path", str(tiny_file), "--run_dir", str(two), *SMALL, "--init_from",
            str(start / "model.pt"), *FMP, "--sync_bn", "true")
    job = _torchrun(*args, wait=False)
    _kill_rank_at_epoch(job, two / "checkpoint.pt", rank=1, epoch=1)
    _, err = job.communicate(timeout=300)
    assert job.returncode != 0 and "FAILED" in err and not (two / "metrics.json").exists(), err[-3000:]
    r = _torchrun(*args, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed" in (two / "train.log").read_text()
    ha = json.loads((one / "metrics.json").read_text())["history"]
    hb = json.loads((two / "metrics.json").read_text())["history"]
    assert [h["action"] for h in ha] == [h["action"] for h in hb] and len(ha) == 4
    assert [h["kept_fraction"] for h in ha] == [h["kept_fraction"] for h in hb]
    for a, b in zip(ha[1:], hb[1:]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["feedback_loss"] == pytest.approx(a["feedback_loss"], rel=1e-4)
        assert abs(b["feedback_accuracy"] - a["feedback_accuracy"]) <= 2 / 624
    ma = torch.load(one / "model.pt", weights_only=True)["model"]
    mb = torch.load(two / "model.pt", weights_only=True)["model"]
    pruned = [k for k, v in ma.items() if k.endswith(".weight") and v.dim() > 1 and bool((v == 0).any())]
    assert pruned and all(torch.equal(ma[k] == 0, mb[k] == 0) for k in pruned)


@pytest.mark.slow
def test_a_compare_sweep_under_torchrun_trains_on_both_ranks_and_prunes_as_one_process(tmp_path, tiny_file):
    """`torchrun -m train.compare`: one process group for all the sweep's runs, rank 0 the only writer of the
    table; the same pruning decisions and weights kept as the serial sweep (same global batch, --sync_bn)."""
    start = tmp_path / "start"
    run_train(tmp_path, start, tiny_file, "--prune.strategy", "none", "--optim.epochs_per_round", "1")
    sweep = ["--data.path", str(tiny_file), *SMALL, "--init_from", str(start / "model.pt"), "--pretrain-epochs", "0",
             "--strategies", "imp,fmp", "--floor-relative", "0.5", "--train.fused", "false", "--sync_bn", "true",
             "--optim.epochs_per_round", "1", "--prune.max_rounds", "2", "--prune.cost_every_round", "false"]
    one = subprocess.run([sys.executable, "-m", "train.compare", "--out", str(tmp_path / "one"), *sweep],
                         env={**os.environ, "PYTHONPATH": os.getcwd()}, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _torchrun("-m", "train.compare", "--out", str(tmp_path / "two"), *sweep, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("feedback split:") == 1  # one rank prints the table
    ra = json.loads((tmp_path / "one" / "compare.json").read_text())["rows"]
    rb = json.loads((tmp_path / "two" / "compare.json").read_text())["rows"]
    assert [r["strategy"] for r in rb] == ["dense (start)", "imp", "fmp"] == [r["strategy"] for r in ra]
    for a, b in zip(ra, rb):
        assert (a["eta_measured"], a["steps_kept"], a["met_floor"]) == (b["eta_measured"], b["steps_kept"],
                                                                        b["met_floor"]), (a, b)
        assert abs(a["accuracy"] - b["accuracy"]) <= 3 / 1000, (a, b)
    r = _torchrun("-m", "train.compare", "--out", str(tmp_path / "ray"), *sweep, "--executor", "ray")
    assert r.returncode != 0 and "error: --executor ray under torchrun" in r.stderr


def test_a_resume_with_another_world_size_is_refused_in_one_line_and_writes_nothing(tmp_path, tiny_file):
    run = tmp_path / "run"
    p = run_train(tmp_path, run, tiny_file, *FMP, wait=False)
    kill_at_epoch(p, run / "checkpoint.pt", 1)
    before = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file() and f.name != ".lock"}  # the kill's lock
    r = _torchrun("-m", "train", "--data.path", str(tiny_file), "--run_dir", str(run), *SMALL, *FMP)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert lines and lines[0].endswith("rerun with --nproc_per_node 1") and "written by a run of 1 process(es), " \
        "resumed with 2" in lines[0]
    after = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file() and f.name != ".lock"}
    assert after.keys() == before.keys() and all(after[k] == before[k] for k in before if k != "train.log")


def test_more_ranks_than_frames_of_a_batch_is_refused_in_one_line_before_anything_is_written(tmp_path, tiny_file):
    run = tmp_path / "run"
    r = _torchrun("-m", "train", "--data.path", str(tiny_file), "--run_dir", str(run), *SMALL, *FMP,
                  "--optim.batch_size", "1")
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert lines and lines[0] == ("error: --nproc_per_node 2: more ranks than frames to share (--optim.batch_size 1, "
                                  "the epoch's last batch 1); use at most 1 processes or a larger batch"), lines
    assert not any(run.rglob("*"))  # the lock's directory may stay, empty
