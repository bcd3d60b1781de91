"""`python -m train.compare` and `python -m train.report` on a tiny file."""
import json
import os
import subprocess
import sys

import pytest

from train.compare import compact_widths, parse_strategy, table


def test_compare_prints_table_for_both_strategies(tmp_path, tiny_file):
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "train.compare", "--out", str(out), "--pretrain-epochs", "1",
           "--floor-relative", "0.5", "--data.path", str(tiny_file), "--model.conv_filters", "8",
           "--model.dense_units", "16", "--optim.batch_size", "128", "--data.val_fraction", "0.3",
           "--optim.epochs_per_round", "1", "--prune.max_rounds", "2", "--threads", "1",
           "--strategies", "imp,fmp,fmp-filters,fmp-hybrid"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "compare.json").read_text())
    assert [row["strategy"] for row in res["rows"]] == ["dense (start)", "imp", "fmp", "fmp-filters", "fmp-hybrid"]
    dense = res["rows"][0]
    assert dense["steps_all"] == 0 and dense["eta_measured"] == 1.0 and dense["widths"] == "8x7 / 16x2"
    for row in res["rows"][1:]:  # a floor of half the dense accuracy: every strategy prunes at least once
        assert row["feedback_split"] == "val"
        assert 1 <= row["steps_kept"] <= row["steps_all"] <= (4 if row["structure"] == "hybrid" else 2)
        assert row["cost"] < dense["cost"] and row["eta_measured"] > 1
    filt, hybrid = res["rows"][3], res["rows"][4]
    assert filt["structure"] == "filters" and filt["widths"] != dense["widths"]
    # the hybrid continues from the filter run's model: its widths, then unstructured steps on top
    assert hybrid["structure"] == "hybrid" and hybrid["widths"] == filt["widths"]
    assert hybrid["steps_all"] > filt["steps_all"] and hybrid["cost"] < filt["cost"]
    for line in ("strategy", "dense (start)", "imp", "fmp", "fmp-filters", "eta meas.", "conv / dense widths"):
        assert line in r.stdout
    budget = "budget: each pruning round fine-tunes up to 1 epoch(s) of the whole training split, ending once " \
             "the floor is met"
    assert r.stdout.rstrip().endswith(budget) and (out / "table.txt").read_text().rstrip().endswith(budget)
    assert (out / "trajectory.png").stat().st_size > 5000
    rep = subprocess.run([sys.executable, "-m", "train.report", str(out / "fmp")], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "test accuracy" in rep and "challenge cost" in rep and "accuracy per SNR" in rep
    bad = subprocess.run([sys.executable, "-m", "train.report", str(tmp_path / "nope")], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "metrics.json: missing" in bad.stderr


def test_a_sweep_on_part_of_the_training_split_says_it_is_an_illustration():
    from train.compare import budget_note
    from train.config import load_config

    demo = load_config("configs/demo.json")
    assert budget_note(demo) == (
        "budget: each pruning round fine-tunes up to 2 epoch(s) of 6% of the training split (a fresh draw each "
        "epoch), ending once the floor is met; a short-budget illustration (a round may see less than one pass "
        "over the training split): results at a realistic budget are the shipped ones, models/README.md")


def test_table_layout():
    row = {"strategy": "fmp", "bits": "4/4/4", "widths": "64x7 / 128x2", "steps_kept": 3, "steps_all": 5, "eta_measured": 1.95,
           "eta_eq3_all": 2.5, "bops_pct": 12.3456, "weight_bits_pct": 20.0, "cost": 0.1617,
           "accuracy": 0.5, "accuracy_10db": 0.6234, "feedback_accuracy": 0.55, "met_floor": True}
    t = table([row]).splitlines()
    assert len(t) == 3 and "3/5" in t[2] and "0.1617" in t[2] and "12.346" in t[2]
    assert "acc >= 10 dB" in t[0] and "0.6234" in t[2]


def test_high_snr_accuracy_is_the_mean_over_snrs_from_10_db():
    from train.compare import high_snr_accuracy

    m = {"accuracy_per_snr": {"-20": 0.0, "8": 0.1, "10": 0.5, "20": 0.6, "30": 0.7}}
    assert high_snr_accuracy(m) == pytest.approx(0.6)


def test_strategy_names_and_widths():
    assert parse_strategy("fmp-filters") == ("fmp", "filters")
    assert parse_strategy("imp-converge-hybrid") == ("imp-converge", "hybrid")
    assert parse_strategy("imp") == ("imp", "unstructured")
    with pytest.raises(ValueError, match="unknown strategy 'fmp-channels'"):
        parse_strategy("fmp-channels")
    assert compact_widths([24, 24, 24, 20, 16, 16]) == "24x3,20,16x2"


def test_strategies_become_independent_units_with_each_hybrid_after_its_filter_run():
    from train.compare import strategy_chains

    assert strategy_chains(["imp", "fmp", "fmp-filters", "fmp-hybrid"]) == [["imp"], ["fmp"], ["fmp-filters",
                                                                                                "fmp-hybrid"]]
    assert strategy_chains(["fmp-hybrid", "fmp-filters"]) == [["fmp-hybrid"], ["fmp-filters"]]  # nothing to continue
    assert strategy_chains(["imp-filters", "fmp-filters", "imp-hybrid"]) == [["imp-filters", "imp-hybrid"],
                                                                           ["fmp-filters"]]
