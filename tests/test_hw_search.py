"""The hardware-aware search (compress/): cached FINN estimates, Algorithm 2's feedback rule, resuming, exporting.

Models here are narrow VGG10s (8 filters, 16 units) so that FINN's conversions take seconds.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from compress.estimates import LayerEstimates, Shape
from compress.moves import Move, apply_move
from compress.schedule import FeedbackSearch
from train.model import ModelConfig, build_vgg10

SMALL = ModelConfig(8, 4, 4, conv_widths=(8,) * 7, dense_widths=(16, 16))


def _model(cfg: ModelConfig, seed: int):
    torch.manual_seed(seed)
    m = build_vgg10(cfg).train()
    with torch.no_grad():
        for _ in range(16):
            m(torch.randn(8, 2, 1024) * 0.7)
    return m.eval()


def _save(model, cfg, path):
    from train.saved_model import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, cfg, {}, path)
    return path


@pytest.fixture(scope="module")
def estimate_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("est") / "layer_estimates.json"


@pytest.fixture(scope="module")
def impl_estimate_cache(tmp_path_factory):
    """The max-utilisation objective's cache (HLS and RTL options per layer), shared like estimate_cache."""
    return tmp_path_factory.mktemp("est") / "impl_estimates.json"


@pytest.mark.parametrize("fit", ["lut", "max-utilisation"])
def test_cached_layer_estimates_add_up_to_a_full_builds_search_totals(tmp_path, small_file, estimate_cache,
                                                                      impl_estimate_cache, fit):
    """A shape never converted as a whole, assembled from two other conversions' layers, is estimated
    exactly as the build's folding search estimates the exported model of that shape (other weights); with the
    max-utilisation objective, as the build's --impl search does (HLS or RTL per layer, thresholds standalone)."""
    from build.boards import board
    from build.config import BuildConfig
    from build.flow import build
    from build.report import BuildReport
    from export.config import ExportConfig
    from export.to_finn import export

    cache = estimate_cache if fit == "lut" else impl_estimate_cache
    est = LayerEstimates(board("ZCU104"), SMALL, cache, fit=fit)
    base = Shape.of(SMALL)
    one, two = ("widths", 2, 4), ("act_bits", 5, 3)  # layers {2, 3} and {5, 6}
    est.fill(base, [one])
    est.fill(base, [two])
    target = base.with_change(*one).with_change(*two)
    before = est.conversions
    got = est.at_rate(target, 100_000, 4.0)
    assert est.conversions == before, "the combined shape was converted instead of assembled from the cache"

    cfg = target.model_config(SMALL)
    run = _save(_model(cfg, seed=7), cfg, tmp_path / "m" / "model.pt")
    exp = export(ExportConfig(run=str(run), out=str(tmp_path / "export"), data=str(small_file), check_frames=4),
                 log=lambda *_: None)
    out = build(BuildConfig(export_dir=str(exp), out=str(tmp_path / "build"), board="ZCU104", target_fps=100_000,
                            fit=fit, impl="search" if fit != "lut" else "finn"), log=lambda *_: None)
    r = BuildReport.read(out)
    totals = r["folding_search"]["totals"]
    exact = ("LUT", "BRAM_18K", "DSP") if fit == "lut" else ("LUT",)  # ties of the fit may trade BRAM for DSP
    assert {k: got[k] for k in exact} == {k: totals[k] for k in exact}
    cap = board("ZCU104").resources()  # the objective and its tie-break are the same optimum either way
    assert got["worst"] == pytest.approx(max(totals[k] / cap[k] for k in totals), rel=1e-9)
    assert got["LUT"] > 0
    assert (got["rtl_layers"] > 0) == (fit != "lut")  # how many: a tie-break of two programs may differ


def test_a_move_gives_a_plain_model_that_computes_what_the_masked_one_does():
    model = _model(SMALL, seed=1)
    x = torch.randn(4, 2, 1024)
    narrow, ncfg = apply_move(model, SMALL, Move("channels", 3, 4))
    assert ncfg.convs == (8, 8, 8, 4, 8, 8, 8) and sum(1 for n, _ in narrow.named_buffers() if "mask" in n) == 0
    assert narrow[0:1](x).shape == model[0:1](x).shape  # the same input quantiser
    lower, lcfg = apply_move(model, SMALL, Move("weight", 4, 3))
    assert lcfg.weight_bits_each[4] == 3 and lcfg.convs == SMALL.convs
    assert not torch.equal(lower(x), model(x))  # requantised, not the same model


def test_the_schedule_keeps_rolls_back_and_shrinks_its_step_as_algorithm_2():
    """Scripted savings and feedback: kept moves go on at the same rate; a failed channel move halves
    its group's rate until it is below p_min, then the group takes no channel move; a failed bit move
    is frozen; the largest saving per accuracy cost is taken."""
    s = FeedbackSearch(groups=9, p0=0.2, divisor=2, p_min=0.05, max_steps=20)
    shape = Shape.of(dataclasses.replace(SMALL, conv_widths=(64,) * 7, dense_widths=(128, 128)))
    moves = s.moves(shape)
    assert Move("channels", 0, 52) in moves and Move("weight", 0, 3) in moves and Move("act", 8, 3) in moves
    assert len(moves) == 9 + 10 + 9
    # savings per cost: channels of group 0 is best (100 / 0.015), then weight bits of layer 0 (90 / 0.015)
    scripted = [(m, 100.0 if m == Move("channels", 0, 52) else 90.0 if m == Move("weight", 0, 3) else 1.0,
                 0.01 if m.kind != "act" else 0.5) for m in moves]
    assert s.pick(scripted) == Move("channels", 0, 52)
    s.kept(Move("channels", 0, 52))
    shape = Move("channels", 0, 52).shape_after(shape)
    assert Move("channels", 0, 40) in s.moves(shape)  # kept: same rate (52 * 0.8 = 41.6 -> 40)

    fail = Move("channels", 0, 40)
    s.failed(fail, shape)
    assert s.rates[0] == 0.1 and Move("channels", 0, 48) in s.moves(shape)  # 52 * 0.9 = 46.8 -> 48
    s.failed(Move("channels", 0, 48), shape)  # at 0.05, 52 * 0.95 = 49.4 rounds to 48 again: no new move,
    assert s.rates[0] == 0.025 < s.p_min  # so the rate halves once more, below p_min
    assert all(m.index != 0 or m.kind != "channels" for m in s.moves(shape))

    s.failed(Move("weight", 0, 3), shape)
    assert Move("weight", 0, 3) not in s.moves(shape) and ["weight", 0] in s.frozen
    assert s.pick([(m, 0.0, 0.0) for m in s.moves(shape)]) is None and "saves" in s.stop_reason


def test_the_schedule_stops_after_max_steps():
    s = FeedbackSearch(groups=9, max_steps=1)
    shape = Shape.of(SMALL)
    assert s.pick([(Move("weight", 1, 3), 5.0, 0.0)]) == Move("weight", 1, 3)
    assert s.pick([(Move("weight", 2, 3), 5.0, 0.0)]) is None and s.stop_reason == "reached max_steps=1"
    assert s.moves(shape)  # stopping is the budget, not a lack of moves


def test_distillation_loss_is_cross_entropy_at_weight_0_and_pulls_to_the_teacher():
    from compress.finetune import distillation_loss

    torch.manual_seed(0)
    s, t, y = torch.randn(6, 24), torch.randn(6, 24), torch.randint(0, 24, (6,))
    ce = torch.nn.functional.cross_entropy(s, y)
    assert torch.equal(distillation_loss(s, t, y, 0.0, 4.0), ce)
    assert distillation_loss(t, t, y, 1.0, 4.0).abs() < 1e-6  # a student equal to its teacher has nothing to learn
    assert distillation_loss(s, t, y, 1.0, 4.0) > 0.01


def _search_cfg(tmp, start, data, cache, **kw):
    """A 2-step search over channel and weight-bit moves (activation bits stay at 4: their candidate shapes
    would double the FINN conversions, and apply_move's bit path is the weight moves' own)."""
    from compress.config import SearchConfig

    kw = {"max_steps": 2, "fit": "lut", "max_polyphase": 1, **kw}  # the LUT objective unless said: its cache has
    # fewer options; no front-end move unless said (its candidate shapes are conversions of their own)
    return SearchConfig(start=str(start), data=str(data), out=str(tmp), board="ZCU104", target_fps=100_000,
                        floor=0.0, epochs_per_step=1, train_subset=0.02, probe_frames=32, min_act_bits=4,
                        estimate_cache=str(cache), threads=1, estimate_workers=2, seed=3, **kw)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, tiny_file, estimate_cache):
    """An uninterrupted 2-step search, and the same search killed in its second step and rerun."""
    from compress.search import Search, search

    root = tmp_path_factory.mktemp("search")
    start = _save(_model(SMALL, seed=5), SMALL, root / "start" / "model.pt")
    whole = search(_search_cfg(root / "whole", start, tiny_file, estimate_cache), log_fn=lambda *_: None)

    class Killed(BaseException):
        pass

    def die_in_step_2(msg):
        if msg.startswith("step 2:"):
            raise Killed

    with pytest.raises(Killed):
        Search(_search_cfg(root / "killed", start, tiny_file, estimate_cache), die_in_step_2).run()
    killed_state = json.loads((root / "killed" / "search.json").read_text())
    resumed = search(_search_cfg(root / "killed", start, tiny_file, estimate_cache), log_fn=lambda *_: None)
    return whole, resumed, killed_state, root


def test_a_killed_search_resumes_to_the_same_frontier(searched):
    whole, resumed, killed_state, _ = searched
    assert len(killed_state["history"]) == 1  # the kill came after step 1 was written
    strip = lambda b: [{k: v for k, v in p.items() if k != "model"} for p in b["points"]]  # noqa: E731
    assert strip(resumed) == strip(whole)
    assert len(whole["points"]) >= 2 and whole["points"][0]["name"] == "start"
    assert whole["points"][-1]["lut"] < whole["points"][0]["lut"]  # floor 0: every move is kept and saves LUTs
    assert any(p["on_frontier"] for p in whole["points"])


def test_a_search_on_other_settings_is_refused(searched, tiny_file, estimate_cache):
    from compress.search import search

    _, _, _, root = searched
    cfg = _search_cfg(root / "whole", root / "start" / "model.pt", tiny_file, estimate_cache)
    cfg.kd_weight = 0.0
    with pytest.raises(ValueError, match="differs in kd_weight"):
        search(cfg, log_fn=lambda *_: None)


def test_a_frontier_point_exports_with_every_check_and_builds_bit_exact(searched, tmp_path, small_file):
    from build.config import BuildConfig
    from build.flow import build
    from build.report import BuildReport
    from export.config import ExportConfig
    from export.to_finn import export

    from .conftest import assert_every_stage_agrees

    whole, _, _, _ = searched
    point = whole["points"][-1]
    exp = export(ExportConfig(run=point["model"], out=str(tmp_path / "export"), data=str(small_file), check_frames=4),
                 log=lambda *_: None)
    assert_every_stage_agrees(exp)
    out = build(BuildConfig(export_dir=str(exp), out=str(tmp_path / "build"), board="ZCU104", target_fps=100_000,
                            fit="lut"), log=lambda *_: None)  # the search's objective
    rep = BuildReport.read(out)
    assert rep["folded_verification"]["ok"] and rep["folding_search"]["totals"]["LUT"] == point["lut"]


def test_a_larger_step_budget_continues_a_finished_search(searched, tiny_file, estimate_cache):
    from compress.search import search

    whole, _, _, root = searched
    state = json.loads((root / "whole" / "search.json").read_text())
    assert state["schedule"]["stop_reason"] == "reached max_steps=2" and len(state["history"]) == 2
    more = _search_cfg(root / "whole", root / "start" / "model.pt", tiny_file, estimate_cache)
    more.max_steps = 3
    body = search(more, log_fn=lambda *_: None)
    state = json.loads((root / "whole" / "search.json").read_text())
    same = lambda ps: [{k: v for k, v in p.items() if k != "on_frontier"} for p in ps]  # noqa: E731
    assert len(state["history"]) == 3 and same(body["points"][:len(whole["points"])]) == same(whole["points"])


def test_a_second_search_on_the_same_directory_is_refused(searched, tiny_file, estimate_cache):
    from compress.search import search
    from radioml.publish import dir_lock as run_lock

    _, _, _, root = searched
    cfg = _search_cfg(root / "whole", root / "start" / "model.pt", tiny_file, estimate_cache)
    with run_lock(root / "whole", "--out"):
        with pytest.raises(ValueError, match=r"in use by process \d+ \(another run on this --out\)"):
            search(cfg, log_fn=lambda *_: None)


def test_a_search_refuses_a_directory_it_did_not_write_and_leaves_it_as_it_was(tmp_path, tiny_file, estimate_cache):
    from compress.search import search

    start = _save(_model(SMALL, seed=5), SMALL, tmp_path / "start" / "model.pt")
    other = tmp_path / "someones-run"
    other.mkdir()
    (other / "model.pt").write_bytes(b"theirs")
    with pytest.raises(ValueError, match=r"someones-run: holds model.pt and no search.json: not a search directory"):
        search(_search_cfg(other, start, tiny_file, estimate_cache), log_fn=lambda *_: None)
    assert [p.name for p in other.iterdir()] == ["model.pt"] and (other / "model.pt").read_bytes() == b"theirs"
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    cfg = _search_cfg(tmp_path / "new", start, tiny_file, junk)
    with pytest.raises(ValueError, match=r"junk.json: not readable JSON .*pass another --estimate-cache"):
        search(cfg, log_fn=lambda *_: None)
    assert junk.read_text() == "{not json"


def test_a_max_utilisation_search_shrinks_the_largest_share_and_its_cache_serves_no_lut_search(tmp_path, tiny_file,
                                                                                                impl_estimate_cache):
    """--fit max-utilisation: each step saves share of the part at the rate (HLS or RTL per layer as the build's
    --impl search); the frontier is drawn and listed by that share; its estimate cache (other graphs: standalone
    thresholds) is refused by a LUT search in one line."""
    from compress.config import SearchConfig
    from compress.search import search

    assert SearchConfig().fit == "max-utilisation"  # the default objective, as the build's
    start = _save(_model(SMALL, seed=5), SMALL, tmp_path / "start" / "model.pt")
    cache = impl_estimate_cache
    body = search(_search_cfg(tmp_path / "s", start, tiny_file, cache, fit="max-utilisation", max_steps=1,
                              min_weight_bits=4, max_polyphase=4), log_fn=lambda *_: None)  # channel moves only:
    # fewer conversions; the front end is no move while the rate is within reach (no polyphase shape converted)
    assert body["points"][0]["meets_target"]
    assert not [s for s in json.loads(cache.read_text())["layers"] if s.startswith("P")]
    first, kept = body["points"][0], body["points"][-1]
    assert body["fit"] == "max-utilisation" and len(body["points"]) == 2  # floor 0: the step is kept
    assert kept["objective"] < first["objective"] and kept["worst_share"] == kept["objective"]  # it meets the rate
    assert first["rtl_layers"] + kept["rtl_layers"] > 0 and any(p["on_frontier"] for p in body["points"])
    assert "largest share" in (tmp_path / "s" / "frontier.txt").read_text()
    with pytest.raises(ValueError, match="impl_search.*estimates for the max-utilisation objective"):
        search(_search_cfg(tmp_path / "lut", start, tiny_file, cache), log_fn=lambda *_: None)


def test_a_search_launched_under_torchrun_is_refused_before_anything_is_written(tmp_path, tiny_file, estimate_cache,
                                                                                   monkeypatch):
    from compress.search import search

    start = _save(_model(SMALL, seed=5), SMALL, tmp_path / "start" / "model.pt")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"^compress under torchrun: every rank would run the same search"):
        search(_search_cfg(tmp_path / "out", start, tiny_file, estimate_cache), log_fn=lambda *_: None)
    assert not (tmp_path / "out").exists()


def test_front_end_moves_go_to_more_samples_a_clock_and_are_frozen_when_they_fail():
    s = FeedbackSearch(groups=9)
    shape = Shape.of(SMALL)
    assert not [m for m in s.moves(shape) if m.kind == "front"]  # max_polyphase 1: none
    assert [m for m in s.moves(shape, 4) if m.kind == "front"] == [Move("front", 0, 2), Move("front", 0, 4)]
    assert [m for m in s.moves(shape, 2) if m.kind == "front"] == [Move("front", 0, 2)]
    s.failed(Move("front", 0, 4), shape)
    assert [m for m in s.moves(shape, 4) if m.kind == "front"] == [Move("front", 0, 2)]
    after = Move("front", 0, 2).shape_after(shape)
    assert after.polyphase == 2 and after.widths == shape.widths
    assert not [m for m in s.moves(after, 4) if m.kind == "front"]  # 2 -> 4 was frozen above
    fresh = FeedbackSearch(groups=9)
    assert [m for m in fresh.moves(after, 4) if m.kind == "front"] == [Move("front", 0, 4)]  # 2 -> 4 goes on
    assert not [m for m in fresh.moves(Move("front", 0, 4).shape_after(shape), 4) if m.kind == "front"]
    assert shape.touched("polyphase", 0) == set(range(10))  # every layer's signature carries P
    assert Move("front", 0, 4).label(shape) == "front end: 1 -> 4 samples a clock (polyphase)"


def test_while_the_rate_is_missed_the_search_takes_only_moves_that_raise_it(tmp_path, tiny_file):
    """RFSoC 2x2 at 480,000 frames/s from a model taking 2 samples a clock (387,597 frames/s at most at 200 MHz): a
    channel cut saves more share per accuracy here (the search took one without this rule), but only the front end
    raises the rate, so the step is 2 -> 4 samples a clock and its point reaches the rate; the point is a P = 4
    model.pt that loads and runs."""
    from compress.search import search
    from train.saved_model import load_model

    small = ModelConfig(8, 4, 4, conv_widths=(4, 8, 4, 4, 4, 4, 4), dense_widths=(4, 4), polyphase=2)  # one channel
    # move (4 is the least width): three FINN conversions in all
    start = _save(_model(small, seed=5), small, tmp_path / "start" / "model.pt")
    cfg = _search_cfg(tmp_path / "s", start, tiny_file, tmp_path / "est.json", fit="max-utilisation", max_steps=1,
                      min_weight_bits=4, max_polyphase=4)
    cfg.board, cfg.target_fps = "RFSoC2x2", 480_000
    body = search(cfg, log_fn=lambda *_: None)
    (step,) = json.loads((tmp_path / "s" / "search.json").read_text())["history"]
    first, kept = body["points"]
    assert not first["meets_target"] and 380_000 < first["fps"] < 400_000
    assert step["move"] == {"kind": "front", "index": 0, "value": 4}, step["label"]
    assert kept["polyphase"] == 4 and kept["meets_target"]
    model, mcfg, _ = load_model(kept["model"])
    assert mcfg.polyphase == 4 and model(torch.randn(2, 2, 1024)).shape == (2, 24)
    assert "P4: 4,8,4" in (tmp_path / "s" / "frontier.txt").read_text()
