"""Pruning-rate schedulers: Feedback Magnitude Pruning (FMP) and Iterative Magnitude Pruning (IMP).

Like torch's LR schedulers, a scheduler is stepped once per epoch, here with
the feedback (the accuracy just measured against the criterion), and answers
with an Action for the training loop:

  keep      train another epoch
  prune     the model met the floor: save it as the last good model, prune by `amount`
  rollback  the round's epochs ran out below the floor: reload the last good model
  stop      done; the final model is the last good one (or the current one, for
            the no-pruning baseline)
  requantize  (train/precision.py) the model met the floor: save it, then give it `bits`

`met_floor` on the Action tells the loop to snapshot the model as the last good
one; `structure` says what the next prune removes (unstructured weights or whole
filters), and `Hybrid` chains two schedules: filters until the first stops, then
unstructured from the last good model. The schedulers hold only numbers, so their
state_dict() is checkpointable.
Paper: Krzyston et al., "Neural network compression with feedback magnitude
pruning for automatic modulation classification" (Algorithms 1 and 2).
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from .state import StrictState


@dataclass(frozen=True)
class Action:
    kind: str  # keep | prune | requantize (the precision search) | rollback | stop
    amount: float = 0.0  # pruning rate, for prune
    met_floor: bool = False
    final: str = "last_good"  # for stop: last_good | current
    reason: str = ""
    bits: typing.Optional[dict] = None  # requantize / rollback of the precision search: the model's new bits


class PruningScheduler(StrictState):
    """Common state: the floor, the epoch budget per round, counters."""

    def __init__(self, floor: float, epochs_per_round: int, max_rounds: int = 100):
        self.floor = floor
        self.epochs_per_round = epochs_per_round
        self.max_rounds = max_rounds
        self.epoch_in_round = 0  # epochs since the last prune or rollback
        self.prunes = 0  # pruning steps taken, rolled-back ones included
        self.has_good = False  # some model met the floor
        self.done = False
        self.structure = "unstructured"  # what a prune removes: unstructured weights | filters
        self.p = 0.0  # pruning rate of the next prune (IMP and FMP set it)

    def step(self, accuracy: float) -> Action:
        if self.done:
            raise RuntimeError("scheduler already stopped")
        self.epoch_in_round += 1
        action = self._decide(accuracy)
        if action.met_floor:
            self.has_good = True
        if action.kind == "prune":
            self.prunes += 1
            if self.prunes > self.max_rounds:
                action = Action("stop", met_floor=True, reason=f"reached max_rounds={self.max_rounds}")
                self.prunes -= 1
        if action.kind in ("prune", "rollback"):
            self.epoch_in_round = 0
        self.done = action.kind == "stop"
        return action

    def _decide(self, accuracy: float) -> Action:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def rate(self) -> float:
        """The pruning rate the next prune applies (0 for no pruning)."""
        return self.p



class NoPruning(PruningScheduler):
    """Train the dense model for one round's epochs; the final model is the last epoch's.

    With `patience` (> 0) the run trains to a plateau instead: it stops once the feedback accuracy has not
    improved for `patience` epochs (or the epochs run out), and the final model is the best epoch's (each
    improvement is reported as met_floor, so the loop keeps that model as its last good one)."""

    def __init__(self, floor: float, epochs_per_round: int, max_rounds: int = 100, patience: int = 0):
        super().__init__(floor, epochs_per_round, max_rounds)
        self.patience = patience
        self.best = float("-inf")  # best feedback accuracy so far (patience runs)
        self.since_best = 0  # epochs since it improved

    def _decide(self, accuracy):
        end = self.epoch_in_round >= self.epochs_per_round
        if not self.patience:
            met = accuracy >= self.floor
            if end:
                return Action("stop", met_floor=met, final="current", reason="epoch budget used")
            return Action("keep", met_floor=met)
        improved = accuracy > self.best
        if improved:
            self.best, self.since_best = accuracy, 0
        else:
            self.since_best += 1
        if self.since_best >= self.patience:
            return Action("stop", reason=f"plateau: no feedback gain in {self.patience} epochs (best {self.best:.4f})")
        if end:
            return Action("stop", met_floor=improved, reason=f"epoch budget used (best {self.best:.4f})")
        return Action("keep", met_floor=improved)


class IMP(PruningScheduler):
    """Algorithm 1: fixed rate p. With the accuracy criterion (default), prune as soon as
    an epoch meets the floor and stop when a round's epochs end below it; with
    converge=True (Table 1's "Normal IMP"), every round trains all its epochs and the
    last epoch's accuracy decides."""

    def __init__(self, floor, epochs_per_round, p: float = 0.2, converge: bool = False, max_rounds: int = 100):
        super().__init__(floor, epochs_per_round, max_rounds)
        self.p = p
        self.converge = converge

    def _decide(self, accuracy):
        met = accuracy >= self.floor
        end = self.epoch_in_round >= self.epochs_per_round
        if self.converge and not end:
            return Action("keep")
        if met:
            return Action("prune", amount=self.p, met_floor=True)
        if end:
            return Action("stop", reason="round ended below the floor")
        return Action("keep")


class FMP(PruningScheduler):
    """Algorithm 2: p starts at p0; meeting the floor prunes by p and restarts the epoch
    count; a round that ends below the floor divides p by `divisor` and rolls back to
    the last model that met the floor; stop once p < p_min."""

    def __init__(self, floor, epochs_per_round, p0: float = 0.2, divisor: float = 2.0,
                 p_min: float = 0.05, max_rounds: int = 100):
        super().__init__(floor, epochs_per_round, max_rounds)
        self.p = p0
        self.divisor = divisor
        self.p_min = p_min

    def _decide(self, accuracy):
        if accuracy >= self.floor:
            return Action("prune", amount=self.p, met_floor=True)
        if self.epoch_in_round < self.epochs_per_round:
            return Action("keep")
        self.p /= self.divisor
        if self.p < self.p_min:
            return Action("stop", reason=f"p = {self.p:g} < p_min = {self.p_min:g}")
        if not self.has_good:  # nothing to roll back to: keep training at the smaller rate
            self.epoch_in_round = 0
            return Action("keep", reason="no model met the floor yet; p decayed")
        return Action("rollback", reason=f"round ended below the floor; p -> {self.p:g}")


class Hybrid:
    """Filter pruning under one schedule until it stops, then unstructured pruning under a fresh
    copy of the same schedule, from the last model that met the floor (the challenge cost
    rewards both; only the filters shrink the FINN accelerator)."""

    def __init__(self, filters: PruningScheduler, unstructured: PruningScheduler):
        filters.structure, unstructured.structure = "filters", "unstructured"
        self.phases = [filters, unstructured]
        self.phase = 0

    @property
    def current(self) -> PruningScheduler:
        return self.phases[self.phase]

    @property
    def rate(self) -> float:
        return self.current.rate

    @property
    def structure(self) -> str:
        return self.current.structure

    @property
    def done(self) -> bool:
        return self.current.done

    def step(self, accuracy: float) -> Action:
        action = self.current.step(accuracy)
        if action.kind != "stop" or self.phase == 1 or not self.current.has_good:
            return action
        self.phase = 1
        self.current.has_good = True  # the filter phase's last good model is this phase's start
        return Action("rollback", met_floor=action.met_floor,
                      reason=f"filter pruning stopped ({action.reason}); unstructured from the last good model")

    def state_dict(self) -> dict:
        return {"phase": self.phase, "phases": [p.state_dict() for p in self.phases]}

    def load_state_dict(self, state: dict) -> None:
        self.phase = state["phase"]
        for p, s in zip(self.phases, state["phases"]):
            p.load_state_dict(s)
