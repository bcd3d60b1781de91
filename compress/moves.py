"""The search's moves on a trained VGG10: fewer channels in one layer, or one bit less in one layer.

A move is a plain record (checkpointable), and applying it gives a new, physically narrow
or requantised model, never masks: every model the search keeps is a plain model.pt that
`python -m export.to_finn --run` takes as it is.

  channels  group g (7 conv blocks, 2 hidden dense layers) keeps `value` channels: those whose
            weight rows have the largest L1 norm (train/channel_pruning.py's criterion and
            masking), then train/narrow.py rebuilds the network without the others
  weight    weight layer i (10) gets `value` weight bits
  act       activation i (9) gets `value` bits
  front     the front end takes P = `value` samples a clock (from the standard one, or 2 -> 4)
            (train/front_end.py: the first conv's taps rearranged, the first log2(P) pools
            dropped); the move that takes the network past one I/Q sample a clock

Bits move in steps of one; channel moves remove `rate` of the group's channels, rounded to
train/channel_pruning.py's multiple of 4 (at least 4), and the rate shrinks when a move fails.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from train.channel_pruning import CHANNEL_MULTIPLE, alive, keep_strongest, kept_count
from train.checkpoint import in_place_loading, quant_state, restore_quant_state
from train.front_end import to_polyphase
from train.masks import deployable_copy
from train.model import build_vgg10, channel_groups
from train.narrow import narrow

from .estimates import Shape

KINDS = ("channels", "weight", "act", "front")
SHAPE_FIELD = {"channels": "widths", "weight": "weight_bits", "act": "act_bits", "front": "polyphase"}


@dataclass(frozen=True)
class Move:
    kind: str  # channels | weight | act | front
    index: int  # 0 for front
    value: int  # channels kept, the new bit width, or the front end's samples a clock

    def label(self, shape: Shape) -> str:
        if self.kind == "front":
            return f"front end: {shape.polyphase} -> {self.value} samples a clock (polyphase)"
        old = getattr(shape, SHAPE_FIELD[self.kind])[self.index]
        what = {"channels": "channels of group", "weight": "weight bits of layer", "act": "bits of activation"}
        return f"{what[self.kind]} {self.index}: {old} -> {self.value}"

    def change(self) -> tuple[str, int, int]:
        return SHAPE_FIELD[self.kind], self.index, self.value

    def shape_after(self, shape: Shape) -> Shape:
        return shape.with_change(*self.change())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def channel_step(width: int, rate: float) -> int:
    """Channels a group keeps after a move at `rate` (at least CHANNEL_MULTIPLE fewer, never < 4)."""
    kept = kept_count(width, rate)
    if kept == width and width > CHANNEL_MULTIPLE:
        kept = width - CHANNEL_MULTIPLE
    return kept


@torch.no_grad()
def apply_move(model, mcfg, move: Move):
    """(new eval-mode model, its ModelConfig) with `move` applied; `model` is left as it was."""
    if move.kind == "front":
        return to_polyphase(model, mcfg, move.value)
    if move.kind == "channels":
        m = deployable_copy(model)
        g = channel_groups(m)[move.index]
        n = int(alive(g).sum())
        if not 1 <= move.value < n:
            raise ValueError(f"group {move.index} has {n} channels; cannot keep {move.value}")
        keep_strongest(g, move.value)
        return narrow(deployable_copy(m), mcfg)
    shape = move.shape_after(Shape.of(mcfg))
    ncfg = shape.model_config(mcfg)
    new = build_vgg10(ncfg)
    with in_place_loading():
        new.load_state_dict(model.state_dict())
    restore_quant_state(new, quant_state(model))
    return new.eval(), ncfg
