"""`--executor ray` on a local Ray cluster of this machine's CPUs; skipped where Ray is not installed
(requirements-dist.txt, `make env-dist`; CI installs it)."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("ray")

TINY = ["--model.conv_filters", "8", "--model.dense_units", "16", "--optim.batch_size", "128",
        "--data.val_fraction", "0.3", "--optim.epochs_per_round", "1", "--prune.max_rounds", "1", "--threads", "1",
        "--pretrain-epochs", "1", "--floor-relative", "0.5", "--strategies", "imp,fmp-filters,fmp-hybrid"]


def _compare(out, data, *extra):
    cmd = [sys.executable, "-m", "train.compare", "--out", str(out), "--data.path", str(data), *TINY, *extra]
    return subprocess.run(cmd, env={**os.environ, "PYTHONPATH": os.getcwd()}, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.slow
def test_ray_tasks_give_the_serial_table(tmp_path, tiny_file):
    """imp and the filters-then-hybrid chain as two Ray tasks: the same table, figures and widths as one process."""
    serial = _compare(tmp_path / "serial", tiny_file)
    assert serial.returncode == 0, serial.stderr[-2000:]
    ray = _compare(tmp_path / "ray", tiny_file, "--executor", "ray")
    assert ray.returncode == 0, ray.stderr[-2000:]
    assert (tmp_path / "ray" / "table.txt").read_text() == (tmp_path / "serial" / "table.txt").read_text()
    a = json.loads((tmp_path / "serial" / "compare.json").read_text())["rows"]
    b = json.loads((tmp_path / "ray" / "compare.json").read_text())["rows"]
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
