"""The pruning scheduler a run's config names: one place that knows every kind (and imports them all)."""
from __future__ import annotations

from .precision import PrecisionScheduler
from .schedulers import FMP, IMP, Hybrid, NoPruning, PruningScheduler


def make_scheduler(strategy: str, prune_cfg, epochs_per_round: int, precision_cfg=None, stop_patience: int = 0):
    """The scheduler named by a PruneConfig (strategy and structure); strategy 'precision' is the
    bit-width search of train/precision.py, configured by `precision_cfg`; `stop_patience` ends a dense run
    (strategy none) at its plateau."""
    c = prune_cfg
    if strategy == "precision":
        pc = precision_cfg
        return PrecisionScheduler(c.floor, epochs_per_round, pc.objective, pc.min_weight_bits, pc.min_act_bits,
                                  c.max_rounds)
    if c.structure == "hybrid" and strategy != "none":
        return Hybrid(_schedule(strategy, c, epochs_per_round), _schedule(strategy, c, epochs_per_round))
    sched = _schedule(strategy, c, epochs_per_round, stop_patience)
    sched.structure = "unstructured" if c.structure == "hybrid" else c.structure
    return sched


def _schedule(strategy: str, c, epochs_per_round: int, stop_patience: int = 0) -> PruningScheduler:
    if strategy == "none":
        return NoPruning(c.floor, epochs_per_round, c.max_rounds, stop_patience)
    if strategy in ("imp", "imp-converge"):
        return IMP(c.floor, epochs_per_round, c.p0, strategy == "imp-converge", c.max_rounds)
    if strategy == "fmp":
        return FMP(c.floor, epochs_per_round, c.p0, c.divisor, c.p_min, c.max_rounds)
    raise ValueError(f"unknown pruning strategy {strategy!r}")
