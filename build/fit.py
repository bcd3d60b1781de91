"""The folding that fits the part best: every unit meets the rate, the largest utilisation is minimal.

A FINN pipeline spends several resources at once (LUT, BRAM18, URAM, DSP), and the part holds a
fixed amount of each. Choosing, per folding unit, one option (a folding, an HLS MVAU's weight
memory, and with --impl search the layer's HLS or RTL implementation) so that every unit meets the cycle budget and

    max over resources r of  (sum over units of the option's r) / capacity(r)

is minimal couples the units: the cheapest option of one unit on its own depends on which
resource the others exhaust. It is solved exactly as a small mixed-integer program (one
binary per option, one continuous bound t on every resource's utilisation, minimise t) with
HiGHS through scipy's `milp` at zero optimality gap; a second program among the solutions
within that bound takes the one with the fewest LUTs. Options that another option of the same
unit matches or beats on every resource are dropped first: they can never be needed, and the
program stays small (a few dozen options a unit).
"""
from __future__ import annotations

from dataclasses import dataclass, field

RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")
_TIE_TOLERANCE = 1e-9  # relative slack on the optimal bound in the second (fewest-LUT) program
_SCALE = 1e6  # shares are solved in millionths: HiGHS's absolute gap (1e-6) is then far below one LUT of a U250


@dataclass(frozen=True)
class Option:
    """One way to build a unit: `label` names it (opaque to the solver), `cycles` a frame, `cost` per resource."""
    label: object
    cycles: int
    cost: dict = field(hash=False)

    def amount(self, resource: str) -> float:
        return float(self.cost.get(resource, 0.0))


@dataclass
class Fit:
    choice: dict  # unit -> chosen Option
    utilisation: dict  # resource -> fraction of the capacity used
    worst: float  # the largest utilisation (the objective)
    totals: dict  # resource -> amount used


class NoFit(ValueError):
    """No option of some unit meets the cycle budget on this part: names the unit and what it would need."""


def _dominated(a: Option, b: Option) -> bool:
    """b is at least as good as a on every resource (so a is never needed)."""
    return all(b.amount(r) <= a.amount(r) for r in RESOURCES)


def pareto(options: list[Option]) -> list[Option]:
    """The options no other one matches or beats on every resource (of equal ones, the fastest kept)."""
    kept: list[Option] = []
    for o in sorted(options, key=lambda o: (tuple(o.amount(r) for r in RESOURCES), o.cycles)):
        if not any(_dominated(o, k) for k in kept):
            kept.append(o)
    return kept


def usable(units: dict, target_cycles: int, capacity: dict, unmet: str = "raise") -> dict:
    """Per unit, the Pareto options within `target_cycles` that use no resource the part lacks; a unit that
    cannot meet it raises NoFit, or with unmet="fastest" keeps its fastest options (the pipeline then runs at
    that unit's pace, as the LUT search does)."""
    out = {}
    for name, options in units.items():
        fast = [o for o in options if o.cycles <= target_cycles]
        if not fast:
            best = min(o.cycles for o in options)
            if unmet != "fastest":
                raise NoFit(f"{name}: no option meets {target_cycles:,} cycles a frame (the fastest takes {best:,})")
            fast = [o for o in options if o.cycles == best]
        ok = [o for o in fast if all(o.amount(r) == 0 or capacity.get(r, 0) > 0 for r in RESOURCES)]
        if not ok:
            lacking = sorted({r for o in fast for r in RESOURCES if o.amount(r) > 0 and capacity.get(r, 0) <= 0})
            raise NoFit(f"{name}: every option fast enough needs {', '.join(lacking)}, which the part does not have")
        out[name] = pareto(ok)
    return out


def _solve(units: dict, capacity: dict) -> dict:
    """The choice by unit of the two programs (min max-utilisation, then fewest LUT)."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    names = list(units)
    opts = [(u, o) for u in names for o in units[u]]
    n = len(opts)
    res = [r for r in RESOURCES if capacity.get(r, 0) > 0]
    use = np.array([[o.amount(r) / capacity[r] * _SCALE for r in res] for _, o in opts])  # n x resources
    one = np.zeros((len(names), n))
    for j, (u, _) in enumerate(opts):
        one[names.index(u), j] = 1.0
    options = {"mip_rel_gap": 0.0, "presolve": True}

    # 1: minimise t subject to every resource's utilisation <= t (variables: n binaries, then t)
    a = np.hstack([use.T, -np.ones((len(res), 1))])
    cons = [LinearConstraint(np.hstack([one, np.zeros((len(names), 1))]), 1, 1), LinearConstraint(a, -np.inf, 0)]
    c = np.zeros(n + 1)
    c[-1] = 1.0
    integrality = np.r_[np.ones(n), 0]
    r1 = milp(c, constraints=cons, integrality=integrality, bounds=Bounds(0, np.r_[np.ones(n), np.inf]),
              options=options)
    if not r1.success:
        raise RuntimeError(f"the fitting program found no solution: {r1.message}")
    picked = np.round(r1.x[:n]).astype(bool)
    worst = float(use[picked].sum(axis=0).max())  # in millionths

    # 2: among the choices within that bound, the fewest LUTs
    bound = worst * (1 + _TIE_TOLERANCE) + 1e-6
    lut = np.array([o.amount("LUT") for _, o in opts])
    r2 = milp(lut, constraints=[LinearConstraint(one, 1, 1), LinearConstraint(use.T, -np.inf, bound)],
              integrality=np.ones(n), bounds=Bounds(0, 1), options=options)
    if r2.success:
        picked = np.round(r2.x).astype(bool)
    return {u: o for (u, o), p in zip(opts, picked) if p}


def fit(units: dict, target_cycles: int, capacity: dict, unmet: str = "raise") -> Fit:
    """The option per unit that meets `target_cycles` with the smallest largest utilisation of `capacity`
    (resource -> amount the part has; ties: fewest LUT). `units`: name -> list of Option; `unmet`: see usable."""
    if not units:
        raise ValueError("nothing to fit: no folding units")
    if not any(capacity.get(r, 0) > 0 for r in RESOURCES):
        raise ValueError(f"nothing to fit into: no resource of {', '.join(RESOURCES)} has a capacity")
    short = usable(units, target_cycles, capacity, unmet)
    if all(len(v) == 1 for v in short.values()):
        choice = {u: v[0] for u, v in short.items()}
    else:
        choice = _solve(short, capacity)
    totals = {r: sum(o.amount(r) for o in choice.values()) for r in RESOURCES}
    util = {r: totals[r] / capacity[r] for r in RESOURCES if capacity.get(r, 0) > 0}
    return Fit(choice={u: choice[u] for u in units}, utilisation=util, worst=max(util.values()), totals=totals)
