"""Hardware-visible pruning: `train.compare` with filter pruning, then `build.compare` FINN estimates per model."""
import json
import os
import subprocess
import sys

import pytest

from build.boards import board
from build.folding import candidates, choose, max_rate, totals

ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_file, small_file):
    out = tmp_path_factory.mktemp("cmp") / "runs"
    cmd = [sys.executable, "-m", "train.compare", "--out", str(out), "--pretrain-epochs", "1",
           "--floor-relative", "0", "--strategies", "fmp,fmp-filters", "--reference-filters", "16",
           "--data.path", str(tiny_file), "--model.conv_filters", "32", "--model.dense_units", "64",
           "--optim.batch_size", "128", "--data.val_fraction", "0.3", "--optim.epochs_per_round", "1",
           "--prune.max_rounds", "2", "--prune.cost_every_round", "false", "--threads", "1"]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, "-m", "build.compare", str(out), "--board", "ZCU104", "--target-fps", "50000",
                        "--data", str(small_file), "--check-frames", "4"],
                       env=ENV, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout


def test_compare_table_names_widths_of_every_row(runs):
    out, _ = runs
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["strategy"] for r in rows] == ["dense (start)", "fmp", "fmp-filters", "dense 16 filters (reference)"]
    assert [r["widths"] for r in rows] == ["32x7 / 64x2", "32x7 / 64x2", "20x7 / 40x2", "16x7 / 64x2"]
    assert rows[2]["cost"] < rows[0]["cost"] and rows[1]["cost"] < rows[0]["cost"]


def test_filter_pruning_shrinks_the_accelerator_and_unstructured_does_not(runs):
    out, stdout = runs
    hw = {r["strategy"]: r for r in json.loads((out / "hardware.json").read_text())["rows"]}
    dense, fmp, filt, ref = (hw[k] for k in ("dense (start)", "fmp", "fmp-filters", "dense 16 filters (reference)"))
    for r in hw.values():
        assert r["meets_target"] and r["target_fps"] == 50000
        assert r["folded_verified"] and r["verified_frames"] == 4  # the folded graph of both builds, bit-exact
    assert fmp["weights_kept"] < 0.7 * dense["weights_kept"]
    assert fmp["lut"] == pytest.approx(dense["lut"], rel=0.02)  # FINN stores and multiplies the zeros
    assert filt["lut"] < 0.75 * dense["lut"]  # (20/32)^2 of the MACs
    assert ref["lut"] < filt["lut"]  # 16 filters are narrower still
    assert filt["max_fps"] >= dense["max_fps"]
    for line in ("FINN estimates on ZCU104", "fmp-filters", "max frames/s", "bit-exact (4 frames)"):
        assert line in stdout
    assert (out / "hardware.txt").read_text().count("\n") == 7
    assert (out / "accuracy_vs_lut.png").stat().st_size > 10_000


def test_max_fps_is_the_fastest_folding_under_the_cap(runs):
    from qonnx.core.modelwrapper import ModelWrapper

    out, _ = runs
    built = out / "hardware" / "fmp-filters" / "build-max"
    rep = json.loads((built / "build_report.json").read_text())
    cands = candidates(ModelWrapper(str(built / "model_dataflow.onnx")), board("ZCU104").part)
    avail = board("ZCU104").resources()
    budget = {k: 0.8 * avail[k] for k in ("LUT", "BRAM_18K", "DSP")}
    cycles, _ = max_rate(cands, budget)
    assert cycles == rep["max_fps"]["target_cycles"] and rep["max_cycles"] <= cycles
    assert rep["estimated_fps"] > 100_000 and rep["fits"]
    # a budget that binds: half the LUTs of the fastest folding
    fastest = max(min(c[1] for c in layer) for layer in cands.values())
    tight = {"LUT": 0.5 * totals(choose(cands, fastest))["LUT"], "BRAM_18K": 1e9, "DSP": 1e9}
    cycles, choice = max_rate(cands, tight)
    assert cycles > fastest and totals(choice)["LUT"] <= tight["LUT"]
    faster = max(c[1] for layer in cands.values() for c in layer if fastest <= c[1] < cycles)  # the next level up
    assert totals(choose(cands, faster))["LUT"] > tight["LUT"]
    with pytest.raises(ValueError, match="even the slowest folding exceeds"):
        max_rate(cands, {"LUT": 10.0, "BRAM_18K": 1e9, "DSP": 1e9})


@pytest.mark.parametrize("cap", ["0", "1.5", "-0.2"])
def test_a_utilisation_cap_outside_0_1_is_refused(cap, tmp_path):
    for cmd in (["build", "--export", str(tmp_path), "--max-fps"], ["build.compare", str(tmp_path)]):
        r = subprocess.run([sys.executable, "-m", *cmd, "--util-cap", cap], env=ENV, capture_output=True, text=True)
        assert r.returncode == 2 and f"--util-cap: must be in (0, 1], got {cap}" in r.stderr
        assert not (tmp_path / "hardware.json").exists()
