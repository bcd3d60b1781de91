"""A trained VGG10 given more samples a clock (model.polyphase 1 -> 2 or 4, 2 -> 4): a front-end move's start.

The polyphase model takes the same frame as 2P channels over 1024/P positions and drops the
pools of its first log2(P) blocks, so every layer keeps its trained state but the first conv,
whose input changes. Its taps are the old taps placed where the math puts them: the new
output at position v is the old conv's output at sample vP (the first of the samples the
dropped pools reduced); from the standard front end W'[f, kC + c, e] = W[f, c, Pe + k] wherever
Pe + k is a tap offset in -1..1 (tests/test_polyphase.py). The pools it drops and, for P = 4, the second block's
changed spacing cost accuracy; the move's fine-tuning recovers it or the move is rolled back.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from radioml.classes import POLYPHASES

from .checkpoint import in_place_loading, quant_state, restore_quant_state
from .model import ModelConfig, Polyphase, build_vgg10


def polyphase_taps(weight: torch.Tensor, phases: int, from_phases: int = 1) -> torch.Tensor:
    """(F, p*C, 3) kernel-3 taps over the p-phase frame (p = from_phases; 1: over samples) -> (F, P*C, 3) taps over
    the P-phase frame whose output at position v is the old output at sample vP: each old tap reads sample offset
    D = p*e + k, which the new layer reads at position offset floor(D / P), phase D mod P."""
    f, pc, k = weight.shape
    if k != 3:
        raise ValueError(f"the first conv has kernel {k}; the front-end move needs kernel 3")
    if phases % from_phases or phases <= from_phases:
        raise ValueError(f"cannot rearrange taps over {from_phases} phases into {phases}")
    c = pc // from_phases
    out = weight.new_zeros(f, phases * c, 3)
    for e in (-1, 0, 1):
        for k_old in range(from_phases):
            d = from_phases * e + k_old  # the sample this tap reads, relative to the output's sample
            e_new, k_new = d // phases, d % phases
            if -1 <= e_new <= 1:
                out[:, k_new * c:(k_new + 1) * c, e_new + 1] = weight[:, k_old * c:(k_old + 1) * c, e + 1]
    return out


def _stateful(model: nn.Sequential) -> list[nn.Module]:
    """The layers that carry trained state, in order (pools and the rearrangement hold none)."""
    return [m for m in model if not isinstance(m, (nn.MaxPool1d, Polyphase))]


@torch.no_grad()
def to_polyphase(model: nn.Sequential, cfg: ModelConfig, phases: int) -> tuple[nn.Sequential, ModelConfig]:
    """(eval-mode model with `phases` samples a clock, its ModelConfig) from one with fewer (the standard front end
    or P = 2); `model` is left as it was."""
    if phases not in POLYPHASES or phases <= cfg.polyphase:
        raise ValueError(f"the model takes {cfg.polyphase} sample(s) a clock; a front-end move goes to more, one of "
                         f"{', '.join(map(str, POLYPHASES))}, not {phases}")
    ncfg = dataclasses.replace(cfg, polyphase=phases)
    new = build_vgg10(ncfg)
    old_layers, new_layers = _stateful(model), _stateful(new)
    if [type(m) for m in old_layers] != [type(m) for m in new_layers]:
        raise ValueError("the model is not the VGG10 its config describes")
    first = True
    for src, dst in zip(old_layers, new_layers):
        state = src.state_dict()
        if first and "weight" in state and state["weight"].dim() == 3:
            state["weight"] = polyphase_taps(state["weight"], phases, cfg.polyphase)
            first = False
        with in_place_loading():
            dst.load_state_dict(state)
        restore_quant_state(dst, quant_state(src))
    return new.eval(), ncfg
