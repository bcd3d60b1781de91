"""build.results: the shipped results regenerated from trained models alone (tiny models trained here)."""
import json

import pytest

from build.results import RATES, interpolate, results
from radioml.publish import OutputRefused


def test_interpolate_on_the_ladder_and_none_beyond_it():
    pts = [(0.6, 0.1), (0.8, 0.3)]
    assert interpolate(0.7, pts) == pytest.approx(0.2)
    assert interpolate(0.8, pts) == pytest.approx(0.3) and interpolate(0.85, pts) is None and interpolate(0.5, pts) is None


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, tiny_file):
    """A two-rung ladder and an FMP run from its wider rung, in the layout of models/."""
    from train.compare import run_comparison
    from train.config import DataConfig, OptimConfig, PruneConfig, TrainConfig
    from train.loop import train
    from train.model import ModelConfig

    models = tmp_path_factory.mktemp("models")

    def cfg(width, run_dir, **kw):
        return TrainConfig(data=DataConfig(path=str(tiny_file)), model=ModelConfig(4, 4, 4, conv_filters=width,
                                                                                   dense_units=16),
                           optim=OptimConfig(lr=3e-3, batch_size=64, epochs_per_round=1), run_dir=str(run_dir),
                           threads=1, seed=0, **kw)

    for w in (4, 8):
        train(cfg(w, models / "ladder" / f"f{w}", prune=PruneConfig(strategy="none", floor=0.0)))
    base = cfg(8, models / "compression" / "x", prune=PruneConfig(max_rounds=2),
               init_from=str(models / "ladder" / "f8"))
    run_comparison(base, models / "compression", ["fmp"], 0, 0.5)
    return models


@pytest.mark.slow
def test_results_table_json_and_plots_from_the_shipped_files(shipped, tmp_path):
    rates = RATES[-1:]  # one rate is enough to check the table (each rate is a FINN build per model)
    out = shipped / "results"
    rows = results(shipped, out, tmp_path / "work", "ZCU104", rates, None, 8, log=lambda *_: None)
    assert [r["name"] for r in rows] == ["dense 4 filters", "dense 8 filters", "fmp"]
    j = json.loads((out / "results.json").read_text())
    assert j["rates"] == list(rates) and len(j["rows"]) == 3
    fmp, ladder = rows[2], rows[:2]
    for r in rows:
        for rate in rates:
            assert r[f"at_{rate}"]["LUT"] > 0
    expect = interpolate(fmp["accuracy_10_30db"], [(x["accuracy_10_30db"], x["cost"]) for x in ladder])
    assert fmp["ladder_cost_at_accuracy"] == expect
    md = (out / "results.md").read_text()
    assert md.count("\n| ") == 4 and "| fmp |" in md and ("beyond ladder" in md) == (expect is None)
    for png in ("accuracy_vs_cost.png", "accuracy_vs_lut.png", "learning_curves.png"):
        assert (out / png).stat().st_size > 10_000

    # A rerun replaces its own table only with force, and never a file the user put beside it.
    with pytest.raises(OutputRefused, match="already exists"):
        results(shipped, out, tmp_path / "work", "ZCU104", rates, None, 8, log=lambda *_: None)
    (out / "notes.md").write_text("mine")
    with pytest.raises(OutputRefused, match="notes.md"):
        results(shipped, out, tmp_path / "work", "ZCU104", rates, None, 8, force=True, log=lambda *_: None)
    assert (out / "notes.md").read_text() == "mine" and (out / "results.md").read_text() == md
    (out / "notes.md").unlink()
    results(shipped, out, tmp_path / "work", "ZCU104", rates, None, 8, force=True, log=lambda *_: None)
    assert (out / "results.md").read_text() == md


def test_results_never_writes_into_the_models_directory(tmp_path):
    """A user's MODELS/results.md (not ours) is no output directory: refused before any work, left as it was."""
    models = tmp_path / "models"
    (models / "ladder" / "f8").mkdir(parents=True)
    (models / "ladder" / "f8" / "metrics.json").write_text("{}")
    (models / "results").write_text("user notes")
    with pytest.raises(OutputRefused, match="not a directory|exists"):
        results(models, models / "results", tmp_path / "work", "ZCU104", RATES, None, 8, log=lambda *_: None)
    assert (models / "results").read_text() == "user notes" and not (tmp_path / "work").exists()


def test_a_finished_strategy_is_a_row_while_its_sweep_still_trains_the_next(shipped, tmp_path):
    """The sweep writes compare.json only at its end (days at the realistic budget): each strategy's row is there
    as soon as its run has written metrics.json, and a run still training is named, not tabled."""
    import shutil

    from build.results import compression_rows, table, unfinished_runs

    models = tmp_path / "models"
    shutil.copytree(shipped, models, ignore=shutil.ignore_patterns("results"))
    comp = models / "compression"
    (comp / "compare.json").unlink()
    shutil.copytree(comp / "fmp", comp / "imp")
    (comp / "fmp-filters").mkdir()
    shutil.copy(comp / "fmp" / "config.json", comp / "fmp-filters")
    (comp / "notes").mkdir()  # not a strategy: neither a row nor a pending run
    rows = compression_rows(models)
    assert [r["name"] for r in rows] == ["fmp", "imp"] and [r["run_dir"] for r in rows] == [str(comp / "fmp"),
                                                                                          str(comp / "imp")]
    assert unfinished_runs(models) == ["fmp-filters"]
    assert table([], "ZCU104", RATES, ["fmp-filters"]).endswith("Still training, not in the table: fmp-filters.")


def test_a_hybrid_row_counts_its_filter_phase_as_its_eta_measured_does(shipped, tmp_path):
    """The hybrid trains from filter FMP's final model: its eta measured is against the start's weights, so its
    eq. 3, epochs and train time must count the filter phase too, and the table says so."""
    import shutil

    from build.results import compression_rows, row_figures, table
    from train.results import read_metrics, write_metrics

    models = tmp_path / "models"
    shutil.copytree(shipped, models, ignore=shutil.ignore_patterns("results"))
    comp = models / "compression"
    (comp / "compare.json").unlink()
    for name in ("fmp-filters", "fmp-hybrid"):
        shutil.copytree(comp / "fmp", comp / name)
    # the filter phase's own figures, distinct from the hybrid's, so that each sum and product is seen
    f = read_metrics(comp / "fmp-filters")
    f.update(epochs=f["epochs"] + 5, eta_eq3_all_rounds=1.5)
    f["history"][0]["seconds"] += 100.0
    write_metrics(comp / "fmp-filters", f)
    rows = {r["name"]: r for r in compression_rows(models)}
    assert "continues" not in rows["fmp"] and "continues" not in rows["fmp-filters"]
    assert rows["fmp-hybrid"]["continues"]["name"] == "fmp-filters"
    hw = {240_000: {"resources": {"LUT": 1000, "DSP": 0, "BRAM_18K": 2}, "meets_target": True, "fits": True}}
    alone, filters, hybrid = (row_figures(rows[n], hw) for n in ("fmp", "fmp-filters", "fmp-hybrid"))
    m = rows["fmp"]["metrics"]
    assert alone["epochs"] == m["epochs"] and hybrid["epochs"] == 2 * m["epochs"] + 5
    assert hybrid["train_seconds"] == pytest.approx(alone["train_seconds"] + filters["train_seconds"])
    assert filters["train_seconds"] == pytest.approx(alone["train_seconds"] + 100.0)
    assert hybrid["eta_eq3"] == pytest.approx(1.5 * m["eta_eq3_all_rounds"])
    assert hybrid["eta_measured"] == alone["eta_measured"]
    assert "fmp-hybrid: eq. 3, epochs and train time count both phases, fmp-filters" in table(
        [alone, hybrid], "ZCU104", (240_000,))
