"""Filter pruning: whole conv filters and hidden dense neurons, ranked by L1 norm.

FINN's matrix-vector units store every weight and spend a cycle on every MAC, zeros
included: only fewer channels (or fewer bits) make the accelerator smaller or faster.
This module removes whole output channels with masks, inside the same FMP/IMP
schedules as unstructured pruning; train/narrow.py then rebuilds the network narrower.

Ranking, per layer: a step removes `p` of each layer's remaining channels, those
whose weight rows have the smallest L1 norm (the criterion of
torch.nn.utils.prune.ln_structured with n=1, dim=0). Per layer rather than one global
ranking, because L1 norms of layers with 6, 192 or 512 inputs per channel, each
followed by its own BatchNorm scale, are not comparable: a global ranking, even over
norms divided by each layer's mean, empties some layers and leaves others whole,
whereas FINN's throughput is set by the slowest layer and its LUTs by the widest
early layers, so every layer has to shrink.

Rounding rule: every layer keeps a multiple of CHANNEL_MULTIPLE = 4 channels (at
least 4), the nearest one to (1 - p) x its remaining channels. FINN folds a layer
with MH % PE == 0 and MW % SIMD == 0; multiples of 4 keep PE and SIMD choices of 1, 2, 4
(and 3, 6, 12 with the conv kernel of 3) in every layer. When rounding would leave
every layer unchanged (small p on narrow layers), the step still removes 4 channels:
from the layer whose 4 weakest channels are weakest relative to its mean channel norm.

A removed channel's weight row, its BatchNorm weight and bias (so the channel's output
is exactly 0 after BatchNorm, ReLU and pooling) and the next layer's input columns
that read it are all masked: the masked model computes exactly what the narrow one will,
and the challenge cost counts exactly the weights the narrow model keeps.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import prune

from .model import ChannelGroup, channel_groups

CHANNEL_MULTIPLE = 4


def kept_count(alive: int, p: float, multiple: int = CHANNEL_MULTIPLE) -> int:
    """Channels a layer keeps after removing `p` of its `alive` ones (the rounding rule)."""
    if alive <= multiple:
        return alive
    k = math.floor(alive * (1 - p) / multiple + 0.5) * multiple
    return min(alive, max(multiple, k))


def alive(group: ChannelGroup) -> torch.Tensor:
    """Boolean mask of the group's channels not removed yet (its BatchNorm mask is the flag)."""
    mask = getattr(group.bn, "weight_mask", None)
    return torch.ones(group.bn.num_features, dtype=torch.bool) if mask is None else mask.detach().cpu().bool()


def channel_norms(group: ChannelGroup) -> torch.Tensor:
    """L1 norm of each output channel's (masked) weight row."""
    return group.layer.weight.detach().abs().flatten(1).sum(1).cpu()


def remove_channels(group: ChannelGroup, drop: torch.Tensor) -> None:
    """Mask channels `drop` (bool per channel) in the layer, its BatchNorm and the next layer's inputs."""
    keep = (~drop).to(group.layer.weight.device)
    rows = keep.float().view(-1, *[1] * (group.layer.weight.dim() - 1)).expand_as(group.layer.weight)
    prune.custom_from_mask(group.layer, "weight", rows.contiguous())
    for name in ("weight", "bias"):
        prune.custom_from_mask(group.bn, name, keep.float())
    cols = keep.repeat_interleave(group.repeat).float()
    w = group.consumer.weight
    cols = cols.view(1, -1, *[1] * (w.dim() - 2)).expand_as(w)
    prune.custom_from_mask(group.consumer, "weight", cols.contiguous())


def _weakest(norms: torch.Tensor, live: torch.Tensor, n: int) -> torch.Tensor:
    """Bool mask of the n smallest-norm live channels (ties broken by index, deterministic)."""
    order = sorted(torch.nonzero(live).flatten().tolist(), key=lambda c: (float(norms[c]), c))
    drop = torch.zeros_like(live)
    drop[order[:n]] = True
    return drop


def keep_strongest(group: ChannelGroup, keep: int) -> None:
    """Mask all but the `keep` live channels of largest L1 norm in `group` (the narrowing of a sandbox import and
    of compress's channel moves)."""
    live = alive(group)
    remove_channels(group, _weakest(channel_norms(group), live, int(live.sum()) - keep))


@torch.no_grad()
def prune_channels(model: nn.Module, amount: float) -> list[int]:
    """Remove `amount` of every group's remaining channels by L1 norm; returns the kept counts."""
    groups = channel_groups(model)
    lives = [alive(g) for g in groups]
    counts = [int(v.sum()) for v in lives]
    kept = [kept_count(n, amount) for n in counts]
    norms = [channel_norms(g) for g in groups]  # all ranked before any mask of this step moves
    if kept == counts:
        cands = [i for i, n in enumerate(counts) if n > CHANNEL_MULTIPLE]
        if cands:
            def relative_weakness(i):
                live = norms[i][lives[i]]
                return float(live.sort().values[:CHANNEL_MULTIPLE].mean() / live.mean().clamp_min(1e-12))
            i = min(cands, key=relative_weakness)
            kept[i] = counts[i] - CHANNEL_MULTIPLE
    for g, norm, live, n, k in zip(groups, norms, lives, counts, kept):
        if k < n:
            remove_channels(g, _weakest(norm, live, n - k))
    return kept


def widths(model: nn.Module) -> list[int]:
    """Channels left in every group (conv blocks, then hidden dense layers)."""
    return [int(alive(g).sum()) for g in channel_groups(model)]
