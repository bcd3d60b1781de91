"""`--executor ray` on a local Ray cluster of this machine's CPUs; skipped where Ray is not installed
(requirements-dist.txt, `make env-dist`; CI installs it)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.distributed

TINY = ["--model.conv_filters", "8", "--model.dense_units", "16", "--optim.batch_size", "128",
        "--data.val_fraction", "0.3", "--optim.epochs_per_round", "1", "--prune.max_rounds", "2", "--threads", "1",
        "--pretrain-epochs", "1", "--floor-relative", "0.5", "--strategies", "imp,fmp-filters,fmp-hybrid"]


def _compare(out, data, *extra, wait=True):
    cmd = [sys.executable, "-m", "train.compare", "--out", str(out), "--data.path", str(data), *TINY, *extra]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _ray_workers(strategy: str) -> list[int]:
    """Process ids of the Ray workers running the task of `strategy` (Ray titles them ray::TASK, a task named by
    its chain of strategies)."""
    pids = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = open(f"/proc/{d}/cmdline", "rb").read().decode(errors="replace").split("\0")[0]
        except OSError:
            continue
        if title.startswith("ray::") and strategy in title[5:].split(","):
            pids.append(int(d))
    return pids


def _kill_a_worker_mid_run(out, proc, timeout=600) -> str:
    """SIGKILL the Ray worker of the first strategy run that has checkpointed an epoch and not finished."""
    from train import checkpoint as ckpt

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for run in sorted(p for p in out.glob("*") if p.name != "dense"):
            ck = run / "checkpoint.pt"
            if ck.exists() and not (run / "metrics.json").exists() and ckpt.load_checkpoint(ck)["state"]["epoch"] >= 1:
                pids = _ray_workers(run.name)
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    return run.name
        time.sleep(0.2)
    raise AssertionError("no strategy run was caught mid-way")


@pytest.mark.slow
def test_ray_tasks_give_the_serial_table_after_a_worker_is_killed(tmp_path, tiny_file):
    """imp and the filters-then-hybrid chain as two Ray tasks, one worker SIGKILLed mid-run: the task is retried,
    resumes from its checkpoint, and the table, figures and widths are the serial run's."""
    serial = _compare(tmp_path / "serial", tiny_file)
    assert serial.returncode == 0, serial.stderr[-2000:]
    out = tmp_path / "ray"
    proc = _compare(out, tiny_file, "--executor", "ray", wait=False)
    killed = _kill_a_worker_mid_run(out, proc)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-2000:]
    assert "resumed" in (out / killed / "train.log").read_text()
    assert (out / "table.txt").read_text() == (tmp_path / "serial" / "table.txt").read_text()
    a = json.loads((tmp_path / "serial" / "compare.json").read_text())["rows"]
    b = json.loads((out / "compare.json").read_text())["rows"]
    drop = ("run_dir",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in a] == \
        [{k: v for k, v in r.items() if k not in drop} for r in b]
    assert [r["strategy"] for r in b] == ["dense (start)", "imp", "fmp-filters", "fmp-hybrid"]
    assert b[3]["structure"] == "hybrid" and b[3]["widths"] == b[2]["widths"]


def test_an_unreachable_ray_address_fails_in_one_line_before_any_work(tmp_path, tiny_file):
    r = _compare(tmp_path / "out", tiny_file, "--executor", "ray", "--ray-address", "127.0.0.1:1")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: --ray-address 127.0.0.1:1: no Ray head answers there")
    assert not (tmp_path / "out").exists()


def test_ray_address_without_the_ray_executor_is_refused(tmp_path, tiny_file):
    r = _compare(tmp_path / "out", tiny_file, "--ray-address", "auto")
    assert r.returncode == 2 and r.stderr.strip().endswith("error: --ray-address needs --executor ray")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_table3_on_ray_gives_the_serial_table(tmp_path, tiny_file):
    """Table 3's rows as Ray tasks (FMP at 4 bits; FMP at 3 bits then its precision search): the serial table."""
    args = ["--bits", "4", "3", "--pretrain-epochs", "1", "--data.path", str(tiny_file), "--prune.floor", "0",
            "--no-imp", "--model.conv_filters", "8", "--model.dense_units", "16", "--optim.batch_size", "128",
            "--data.val_fraction", "0.3", "--optim.epochs_per_round", "1", "--prune.max_rounds", "1", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for name, extra in (("serial", []), ("ray", ["--executor", "ray"])):
        r = subprocess.run([sys.executable, "-m", "train.table3", "--out", str(tmp_path / name), *args, *extra],
                           env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
    text = (tmp_path / "ray" / "table3.txt").read_text()
    assert text == (tmp_path / "serial" / "table3.txt").read_text() and "FMP 3-bit + precision search" in text


def _cli(module, *args, timeout=900):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_build_compare_on_ray_gives_the_serial_table(tmp_path, tiny_file):
    """Each row's export and two estimate builds as a Ray task: the rows, table and stdout are the serial run's."""
    r = _cli("train.compare", "--out", tmp_path / "runs", "--data.path", tiny_file, "--strategies", "fmp-filters",
             "--model.conv_filters", "8", "--model.dense_units", "16", "--optim.batch_size", "128",
             "--data.val_fraction", "0.3", "--optim.epochs_per_round", "1", "--prune.max_rounds", "1",
             "--pretrain-epochs", "1", "--floor-relative", "0", "--prune.cost_every_round", "false", "--threads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    out = {}
    for name, extra in (("serial", []), ("ray", ["--executor", "ray"])):
        runs = tmp_path / name  # the same training runs (compare.json names them), each its own hardware/
        runs.mkdir()
        (runs / "compare.json").write_text((tmp_path / "runs" / "compare.json").read_text())
        r = _cli("build.compare", runs, "--board", "ZCU104", "--target-fps", "50000", "--data", tiny_file,
                 "--check-frames", "2", *extra)
        assert r.returncode == 0, r.stderr[-2000:]
        out[name] = r.stdout.splitlines()[-4:]  # the table
    assert out["ray"] == out["serial"]
    hw = {name: json.loads((tmp_path / name / "hardware.json").read_text()) for name in out}
    assert hw["ray"] == hw["serial"] and [r["strategy"] for r in hw["ray"]["rows"]] == ["dense (start)", "fmp-filters"]
    assert (tmp_path / "ray" / "hardware.txt").read_text() == (tmp_path / "serial" / "hardware.txt").read_text()


def _start_model(path):
    """A calibrated 8-filter VGG10 saved as a model.pt (test_hw_search's small model)."""
    import torch

    from train.model import ModelConfig, build_vgg10
    from train.saved_model import save_model

    cfg = ModelConfig(8, 4, 4, conv_widths=(8,) * 7, dense_widths=(16, 16))
    torch.manual_seed(5)
    m = build_vgg10(cfg).train()
    with torch.no_grad():
        for _ in range(16):
            m(torch.randn(8, 2, 1024) * 0.7)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(m.eval(), cfg, {}, path)
    return path


def _search_args(tmp_path, data):
    """Two channel moves on a LUT objective (bits stay at 4: fewer FINN conversions), each fine-tuned for an
    epoch over the whole training split (its accuracies move off chance)."""
    return ["--start", _start_model(tmp_path / "start" / "model.pt"), "--data", data, "--board", "ZCU104",
            "--target-fps", "100000", "--fit", "lut", "--floor", "0", "--epochs-per-step", "1", "--train-subset", "1",
            "--lr", "0.005", "--probe-frames", "64", "--min-weight-bits", "4", "--min-act-bits", "4", "--threads", "1",
            "--estimate-workers", "2", "--seed", "3", "--max-steps", "2",
            "--estimate-cache", tmp_path / "layer_estimates.json"]


@pytest.mark.slow
def test_compress_on_ray_gives_the_serial_frontier(tmp_path, tiny_file):
    """Each candidate's probe accuracy and each step's fine-tuning as Ray tasks: the same moves, the same
    frontier (widths, bits, hardware, feedback and test accuracies)."""
    args = _search_args(tmp_path, tiny_file)
    for name, extra in (("serial", []), ("ray", ["--executor", "ray"])):
        r = _cli("compress", "--out", tmp_path / name, *args, *extra)
        assert r.returncode == 0, r.stderr[-2000:]
    state = {name: json.loads((tmp_path / name / "search.json").read_text()) for name in ("serial", "ray")}
    points = {name: [{k: v for k, v in p.items() if k != "model"} for p in s["points"]] for name, s in state.items()}
    steps = {name: [{k: v for k, v in h.items() if k != "seconds"} for h in s["history"]]
             for name, s in state.items()}
    assert points["ray"] == points["serial"] and steps["ray"] == steps["serial"]
    assert len(points["ray"]) == 3 and points["ray"][-1]["lut"] < points["ray"][0]["lut"]
    assert points["ray"][-1]["feedback_accuracy"] != points["ray"][0]["feedback_accuracy"]  # fine-tuning moved it


def test_compress_and_build_compare_refuse_an_unreachable_ray_address_in_one_line(tmp_path, tiny_file):
    from train.results import write_compare

    out = tmp_path / "search"
    r = _cli("compress", "--out", out, *_search_args(tmp_path, tiny_file), "--executor", "ray",
             "--ray-address", "127.0.0.1:1", timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: --ray-address 127.0.0.1:1: no Ray head answers there")
    assert not out.exists() and not (tmp_path / "layer_estimates.json").exists()

    runs = tmp_path / "runs"
    write_compare(runs, {"floor": 0.5, "rows": [{"strategy": "dense", "run_dir": str(tmp_path / "dense"),
                                                 "widths": "8x7 / 16x2", "cost": 1.0, "accuracy": 0.5,
                                                 "met_floor": True}]})
    r = _cli("build.compare", runs, "--executor", "ray", "--ray-address", "127.0.0.1:1", timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: --ray-address 127.0.0.1:1: no Ray head answers there")
    assert sorted(p.name for p in runs.iterdir()) == ["compare.json"]
