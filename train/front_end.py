"""A trained standard-front-end VGG10 made polyphase (model.polyphase P): the starting point of a front-end move.

The polyphase model takes the same frame as 2P channels over 1024/P positions and drops the
pools of its first log2(P) blocks, so every layer keeps its trained state but the first conv,
whose input changes. Its taps are the standard taps placed where the math puts them: the new
output at position u is the standard conv's output at sample uP (the first of the P samples
the dropped pools reduced), W'[f, kC + c, e] = W[f, c, Pe + k] wherever Pe + k is a tap offset
in -1..1 (tests/test_polyphase.py). The pools it drops and, for P = 4, the second block's
changed spacing cost accuracy; the move's fine-tuning recovers it or the move is rolled back.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from radioml.classes import POLYPHASES

from .checkpoint import in_place_loading, quant_state, restore_quant_state
from .model import ModelConfig, Polyphase, build_vgg10


def polyphase_taps(weight: torch.Tensor, phases: int) -> torch.Tensor:
    """(F, C, 3) kernel-3 taps over samples -> (F, P*C, 3) taps over the P-phase frame, output phase 0."""
    f, c, k = weight.shape
    if k != 3:
        raise ValueError(f"the first conv has kernel {k}; the front-end move needs kernel 3")
    out = weight.new_zeros(f, phases * c, 3)
    for phase in range(phases):
        for e in (-1, 0, 1):
            d = phases * e + phase  # sample offset of position offset e, phase `phase`
            if -1 <= d <= 1:
                out[:, phase * c:(phase + 1) * c, e + 1] = weight[:, :, d + 1]
    return out


def _stateful(model: nn.Sequential) -> list[nn.Module]:
    """The layers that carry trained state, in order (pools and the rearrangement hold none)."""
    return [m for m in model if not isinstance(m, (nn.MaxPool1d, Polyphase))]


@torch.no_grad()
def to_polyphase(model: nn.Sequential, cfg: ModelConfig, phases: int) -> tuple[nn.Sequential, ModelConfig]:
    """(eval-mode polyphase model, its ModelConfig) from a standard-front-end model; `model` is left as it was."""
    if cfg.polyphase != 1:
        raise ValueError(f"the model is already polyphase (P = {cfg.polyphase}); a front-end move starts from P = 1")
    if phases not in POLYPHASES or phases == 1:
        raise ValueError(f"phases must be one of {', '.join(map(str, POLYPHASES[1:]))}, got {phases}")
    ncfg = dataclasses.replace(cfg, polyphase=phases)
    new = build_vgg10(ncfg)
    old_layers, new_layers = _stateful(model), _stateful(new)
    if [type(m) for m in old_layers] != [type(m) for m in new_layers]:
        raise ValueError("the model is not the VGG10 its config describes")
    first = True
    for src, dst in zip(old_layers, new_layers):
        state = src.state_dict()
        if first and "weight" in state and state["weight"].dim() == 3:
            state["weight"] = polyphase_taps(state["weight"], phases)
            first = False
        with in_place_loading():
            dst.load_state_dict(state)
        restore_quant_state(dst, quant_state(src))
    return new.eval(), ncfg
