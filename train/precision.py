"""Feedback precision search: lower one layer's bits at a time, keep a step only above the floor.

The FMP idea applied to bit widths (issue 11). After pruning, a model starts at
its bits (say 4 everywhere). Each step takes the candidate with the largest
saving - one layer's weight bits, or one activation's bits, lowered by one -
fine-tunes for up to `epochs_per_round` epochs, and

  * keeps it as soon as an epoch's feedback accuracy meets the floor (that
    model is the new last good one) and tries the next candidate;
  * otherwise rolls back to the last good model, freezes that candidate (it
    is never tried again) and tries the next one;
  * stops when no candidate is left.

Savings are computed from per-layer figures of the start model, by objective:

  cost      the challenge's normalised cost: bit-ops (non-zero MACs x weight
            bits x input-activation bits) and weight bits (non-zero weights x
            weight bits), each over its baseline constant (train/cost.py);
  hardware  what a FINN MVAU's LUTs scale with at a fixed frame rate: dense
            MACs (FINN does not skip zero weights; folding gives a layer PE x
            SIMD in proportion to its MACs) x weight bits x input bits, plus
            the thresholds of each activation (2^bits - 1 per channel).

The scheduler holds only numbers and lists, so its state is checkpointable and a
killed run resumes to the same result, like the pruning schedulers.
"""
from __future__ import annotations

import torch
from torch import nn

from .channel_pruning import widths
from .cost import BASELINE_BOPS, BASELINE_W_BITS
from .model import Polyphase, prunable_layers
from .schedulers import Action
from .state import StrictState

OBJECTIVES = ("cost", "hardware")


@torch.no_grad()
def layer_figures(model: nn.Module, input_length: int) -> list[dict]:
    """What a bit is worth in each weight layer (7 convs, 3 dense) of the start model: MACs per
    frame with non-zero weights (the cost's bit-ops count these), MACs as FINN computes them
    (removed filters excepted), non-zero weights, and output channels (thresholds per bit)."""
    out, length, at = [], input_length, {}
    for m in model.modules():  # the length each conv sees: a polyphase front end divides it, each pool halves it
        if isinstance(m, Polyphase):
            length //= m.phases
        elif isinstance(m, nn.MaxPool1d):
            length //= 2
        elif isinstance(m, nn.Conv1d):  # 'same' padding
            at[id(m)] = length
    for (layer, name), live in zip(prunable_layers(model), widths(model) + [None]):
        w = getattr(layer, name)
        nz = float((w != 0).sum())
        rows = int((w.flatten(1) != 0).any(1).sum())  # a removed filter is no MVAU row
        cols = int((w != 0).flatten(1).any(0).sum())
        positions = at.get(id(layer), 1)
        out.append({"macs": nz * positions, "dense_macs": float(rows * cols * positions),
                    "weights": nz, "out_channels": int(live if live is not None else w.shape[0])})
    return out


def saving(figures: list[dict], input_bits: int, wbits: list[int], abits: list[int],
           kind: str, i: int, objective: str) -> float:
    """What lowering layer i's weight bits (kind 'weight') or activation i's bits (kind 'act')
    by one saves, in the objective's units (normalised cost, or bit-op units for hardware)."""
    def layer_in_bits(j):
        return input_bits if j == 0 else abits[j - 1]

    if objective == "cost":
        if kind == "weight":
            f = figures[i]
            return 0.5 * f["macs"] * layer_in_bits(i) / BASELINE_BOPS + 0.5 * f["weights"] / BASELINE_W_BITS
        return 0.5 * figures[i + 1]["macs"] * wbits[i + 1] / BASELINE_BOPS  # activation i feeds layer i+1
    if kind == "weight":
        return figures[i]["dense_macs"] * layer_in_bits(i)
    consumer = figures[i + 1]["dense_macs"] * wbits[i + 1]
    thresholds = figures[i]["out_channels"] * (2 ** abits[i] - 2 ** (abits[i] - 1))
    return consumer + thresholds


class PrecisionScheduler(StrictState):
    """Greedy bit lowering with feedback and rollback; stepped once per epoch like the pruners."""

    structure = "unstructured"  # never prunes; kept for the loop's logging

    def __init__(self, floor: float, epochs_per_round: int, objective: str = "cost",
                 min_weight_bits: int = 2, min_act_bits: int = 2, max_rounds: int = 100):
        if objective not in OBJECTIVES:
            raise ValueError(f"precision objective must be one of {OBJECTIVES}, got {objective!r}")
        self.floor = floor
        self.epochs_per_round = epochs_per_round
        self.objective = objective
        self.min_weight_bits = min_weight_bits
        self.min_act_bits = min_act_bits
        self.max_rounds = max_rounds
        self.epoch_in_round = 0
        self.steps = 0  # bit lowerings tried, rolled-back ones included
        self.has_good = False
        self.done = False
        self.figures: list = []  # layer_figures of the start model (set by `start`)
        self.input_bits = 0
        self.good_bits: dict = {}  # {"weight": [...], "act": [...]} of the last model that met the floor
        self.trial: list | None = None  # [kind, index] being tried
        self.frozen: list = []  # [kind, index] pairs whose lowering broke the floor

    @property
    def rate(self) -> float:
        return 0.0

    @property
    def started(self) -> bool:
        return bool(self.figures)

    def start(self, figures: list[dict], input_bits: int, weight_bits, act_bits) -> None:
        """Called once with the start model's layer figures and bits."""
        self.figures, self.input_bits = figures, input_bits
        self.good_bits = {"weight": list(weight_bits), "act": list(act_bits)}

    def candidates(self, bits: dict) -> list[tuple[float, str, int]]:
        """(saving, kind, index) of every allowed one-bit lowering, largest saving first."""
        out = []
        for kind, key, low in (("weight", "weight", self.min_weight_bits), ("act", "act", self.min_act_bits)):
            for i, b in enumerate(bits[key]):
                if b - 1 >= low and [kind, i] not in self.frozen:
                    out.append((saving(self.figures, self.input_bits, bits["weight"], bits["act"], kind, i,
                                       self.objective), kind, i))
        return sorted(out, key=lambda c: (-c[0], c[1], c[2]))

    def _next(self, met_floor: bool, kind_if_found: str, reason_if_none: str) -> Action:
        cands = self.candidates(self.good_bits)
        if not cands:
            return Action("stop", met_floor=met_floor, reason=reason_if_none)
        if self.steps >= self.max_rounds:
            return Action("stop", met_floor=met_floor, reason=f"reached max_rounds={self.max_rounds}")
        _, kind, i = cands[0]
        self.trial = [kind, i]
        self.steps += 1
        self.epoch_in_round = 0
        bits = {k: list(v) for k, v in self.good_bits.items()}
        bits[kind][i] -= 1
        return Action(kind_if_found, met_floor=met_floor, bits=bits,
                      reason=f"{kind} bits of layer {i}: {bits[kind][i] + 1} -> {bits[kind][i]}")

    def step(self, accuracy: float) -> Action:
        if self.done:
            raise RuntimeError("scheduler already stopped")
        if not self.started:
            raise RuntimeError("PrecisionScheduler.start() was not called")
        self.epoch_in_round += 1
        if accuracy >= self.floor:
            self.has_good = True
            if self.trial is not None:  # the lowering held: it is part of the last good model now
                kind, i = self.trial
                self.good_bits[kind][i] -= 1
                self.trial = None
            action = self._next(True, "requantize", "no layer can lose another bit")
        elif self.epoch_in_round < self.epochs_per_round:
            action = Action("keep")
        elif self.trial is None:
            action = Action("stop", final="current", reason="the start model is below the floor")
        else:
            self.frozen.append(self.trial)
            self.trial = None
            action = self._next(False, "rollback", "no layer can lose another bit")
        self.done = action.kind == "stop"
        return action

