"""build.fit: the exact min-max-utilisation choice, checked against brute force on small instances."""
import itertools
import random

import pytest

from build.fit import RESOURCES, NoFit, Option, fit, pareto

CAP = {"LUT": 1000.0, "BRAM_18K": 100.0, "URAM": 20.0, "DSP": 50.0}


def _brute(units, target, cap):
    """(smallest max utilisation, fewest LUT among the choices at it) over every combination."""
    ok = [[o for o in opts if o.cycles <= target] for opts in units.values()]
    best = None
    for combo in itertools.product(*ok):
        util = max(sum(o.amount(r) for o in combo) / cap[r] for r in RESOURCES if cap.get(r, 0) > 0)
        lut = sum(o.amount("LUT") for o in combo)
        key = (round(util, 12), lut)
        best = key if best is None or key < best else best
    return best


def _instance(rng, n_units, n_opts):
    units = {}
    for u in range(n_units):
        units[f"u{u}"] = [Option(f"u{u}o{k}", rng.randint(1, 10),
                                 {"LUT": rng.randint(0, 400), "BRAM_18K": rng.randint(0, 40),
                                  "URAM": rng.choice([0, 0, rng.randint(1, 8)]), "DSP": rng.randint(0, 20)})
                          for k in range(n_opts)]
    return units


@pytest.mark.parametrize("seed", range(40))
def test_the_fit_equals_brute_force(seed):
    rng = random.Random(seed)
    units = _instance(rng, rng.randint(1, 4), rng.randint(1, 5))
    target = max(min(o.cycles for o in opts) for opts in units.values()) + rng.randint(0, 4)
    got = fit(units, target, CAP)
    util, lut = _brute(units, target, CAP)
    assert got.worst == pytest.approx(util, rel=1e-9, abs=1e-12)
    assert got.totals["LUT"] == lut
    assert all(got.choice[u].cycles <= target and got.choice[u] in units[u] for u in units)


def test_the_fit_trades_luts_for_dsps_where_luts_are_the_bottleneck():
    """Two layers: the LUT-cheapest choice of each alone fills the LUTs; the fit moves one to DSPs."""
    hls = lambda n: Option(f"{n} hls", 5, {"LUT": 600, "DSP": 0})  # noqa: E731
    rtl = lambda n: Option(f"{n} rtl", 5, {"LUT": 50, "DSP": 30})  # noqa: E731
    got = fit({"a": [hls("a"), rtl("a")], "b": [hls("b"), rtl("b")]}, 5, {"LUT": 1000, "DSP": 50})
    assert sorted(o.label for o in got.choice.values()) == ["a hls", "b rtl"] or \
        sorted(o.label for o in got.choice.values()) == ["a rtl", "b hls"]
    assert got.worst == pytest.approx(0.65) and got.totals["LUT"] == 650


def test_dominated_options_are_dropped_and_equal_ones_kept_once():
    a, b = Option("a", 1, {"LUT": 5, "DSP": 1}), Option("b", 1, {"LUT": 6, "DSP": 1})
    c = Option("c", 1, {"LUT": 5, "DSP": 1})
    d = Option("d", 1, {"LUT": 1, "DSP": 9})
    assert [o.label for o in pareto([b, a, c, d])] == ["d", "a"]


def test_a_unit_that_cannot_meet_the_rate_or_needs_what_the_part_lacks_is_named():
    with pytest.raises(NoFit, match="u0: no option meets 3 cycles a frame \\(the fastest takes 4\\)"):
        fit({"u0": [Option("x", 4, {"LUT": 1})]}, 3, CAP)
    with pytest.raises(NoFit, match="u0: every option fast enough needs URAM, which the part does not have"):
        fit({"u0": [Option("x", 1, {"URAM": 1}), Option("y", 9, {"LUT": 1})]}, 3, {"LUT": 10.0, "URAM": 0})
