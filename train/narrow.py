"""Narrowing: a filter-pruned VGG10 rebuilt with only its live channels, computing the same logits.

A channel is dead when its weight row, its BatchNorm weight and its BatchNorm bias are
all zero: its output is then exactly 0 after BatchNorm, ReLU and pooling, and the next
layer's columns that read it only ever multiply zeros. Filter pruning
(train/channel_pruning.py) leaves exactly such channels. The narrow model takes the
kept slices: the layer's output rows, the BatchNorm's statistics and affine parameters,
the next layer's input columns (after the Flatten, conv channel c owns the inputs
c*L .. c*L+L-1, L = the conv output length, 8), and every per-tensor quantiser state
unchanged (Brevitas' weight scales are max|w| over the tensor, which zeros do not move).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .checkpoint import quant_state, restore_quant_state
from .model import HIDDEN_DENSE, ModelConfig, build_vgg10, channel_groups


def live_channels(group) -> torch.Tensor:
    """Bool per output channel: False where the channel is dead (see the module docstring)."""
    w = group.layer.weight.detach().flatten(1)
    return (w != 0).any(1) | (group.bn.weight.detach() != 0) | (group.bn.bias.detach() != 0)


@torch.no_grad()
def narrow(model: nn.Module, cfg: ModelConfig) -> tuple[nn.Module, ModelConfig]:
    """(narrow eval-mode model, its ModelConfig) from a deployable model (no pruning masks)."""
    groups = channel_groups(model)
    keeps = [live_channels(g).cpu() for g in groups]
    if all(bool(k.all()) for k in keeps):
        return model, cfg
    for k in keeps:  # a layer with no live channel keeps one (its output is 0 either way)
        if not k.any():
            k[0] = True
    counts = tuple(int(k.sum()) for k in keeps)
    n_conv = len(counts) - HIDDEN_DENSE
    ncfg = dataclasses.replace(cfg, conv_widths=counts[:n_conv], dense_widths=counts[n_conv:])
    names = {m: n for n, m in model.named_modules()}
    rows, cols = {}, {}
    for g, keep in zip(groups, keeps):
        idx = keep.nonzero().flatten()
        rows[names[g.layer]] = rows[names[g.bn]] = idx
        cols[names[g.consumer]] = (idx[:, None] * g.repeat + torch.arange(g.repeat)).flatten()
    src = model.state_dict()
    new = build_vgg10(ncfg)
    state = {}
    for key, like in new.state_dict().items():
        if key not in src:  # a Brevitas scale still collecting statistics: restored below
            continue
        mod, _, leaf = key.rpartition(".")
        t = src[key]
        if mod in rows and leaf in ("weight", "bias", "running_mean", "running_var") and t.dim() >= 1:
            t = t.index_select(0, rows[mod].to(t.device))
        if mod in cols and leaf == "weight":
            t = t.index_select(1, cols[mod].to(t.device))
        if t.shape != like.shape:
            raise RuntimeError(f"narrowing: {key} has shape {tuple(t.shape)}, "
                               f"the narrow model wants {tuple(like.shape)}")
        state[key] = t
    new.load_state_dict(state, strict=False)
    restore_quant_state(new, quant_state(model))
    return new.to(next(model.parameters()).device).eval(), ncfg
