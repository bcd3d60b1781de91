"""Magnitude pruning of the VGG10 through torch.nn.utils.prune: the masks and one pruning step.

Every QuantConv1d and QuantLinear weight, and every BatchNorm's weight and bias,
carries a mask from the start (an all-ones identity mask), so the state dict has
the same keys before and after any pruning and a model can always be rolled back
to an earlier snapshot. Biases of the weight layers are never pruned, as in the
FMP authors' code; BatchNorm masks are only used by filter pruning
(train/channel_pruning.py), which must silence a removed channel's BatchNorm too.

Structures:
  unstructured  L1-unstructured: individual weights (global threshold or per layer)
  filters       whole conv filters and hidden dense neurons (train/channel_pruning.py)
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn
from torch.nn.utils import prune

from .channel_pruning import prune_channels
from .model import channel_groups, prunable_layers

STRUCTURES = ("unstructured", "filters", "hybrid")  # hybrid: filters until FMP stops, then unstructured


def init_masks(model: nn.Module) -> nn.Module:
    """Give every prunable tensor an all-ones mask (weight -> weight_orig * weight_mask)."""
    targets = prunable_layers(model)
    for g in channel_groups(model):
        targets += [(g.bn, "weight"), (g.bn, "bias")]
    for module, name in targets:
        if not hasattr(module, name + "_mask"):
            prune.identity(module, name)
    return model


def prune_by(model: nn.Module, amount: float, scope: str = "global") -> None:
    """Prune `amount` of the still-unpruned weights by L1 magnitude.

    global: one threshold over all layers (prune.global_unstructured, the FMP
    authors' choice); layer: `amount` of each layer's remaining weights.
    Masks accumulate: earlier pruned weights stay pruned.
    """
    params = prunable_layers(model)
    if scope == "global":
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    elif scope == "layer":
        for module, name in params:
            prune.l1_unstructured(module, name, amount=amount)
    else:
        raise ValueError(f"unknown pruning scope {scope!r}")


def prune_step(model: nn.Module, amount: float, structure: str, scope: str = "global") -> int:
    """One pruning step of the given structure; returns how many weights it newly masked."""
    before = sparsity(model)["kept"]
    with masks_in_place(model):
        if structure == "unstructured":
            prune_by(model, amount, scope)
        elif structure == "filters":
            prune_channels(model, amount)
        else:
            raise ValueError(f"unknown pruning structure {structure!r}")
    return before - sparsity(model)["kept"]


@contextlib.contextmanager
def masks_in_place(model: nn.Module):
    """torch.nn.utils.prune registers a new mask buffer and a new hook on every step; put the new
    masks into the old buffers and keep the old hooks, so a torch.compile'd model is not recompiled."""
    held = {(mod, name): (getattr(mod, name + "_mask"), dict(mod._forward_pre_hooks))
            for mod in model.modules() for name in _masked(mod)}
    yield
    for (mod, name), (mask, hooks) in held.items():
        new = getattr(mod, name + "_mask")
        if new is mask:
            continue
        with torch.no_grad():
            mask.copy_(new)
        mod._buffers[name + "_mask"] = mask
        mod._forward_pre_hooks.clear()
        mod._forward_pre_hooks.update(hooks)
        setattr(mod, name, getattr(mod, name + "_orig") * mask)


def sparsity(model: nn.Module) -> dict:
    """Weights in total, unpruned (mask = 1) and their fraction, overall and per layer."""
    layers, total, kept = [], 0, 0
    for i, (module, name) in enumerate(prunable_layers(model)):
        mask = getattr(module, name + "_mask", None)
        n = getattr(module, name).numel()
        k = int(mask.sum().item()) if mask is not None else n
        layers.append({"layer": i, "type": type(module).__name__, "weights": n, "kept": k})
        total, kept = total + n, kept + k
    return {"weights": total, "kept": kept, "kept_fraction": kept / total, "layers": layers}


def masked_state(masked: nn.Module, deployable_state: dict) -> dict:
    """The inverse of deployable_copy: a deployable state dict in the keys of a masked model,
    every zero weight of the prunable layers masked (it stays pruned), everything else kept."""
    prunable = {id(m) for m, _ in prunable_layers(masked)}
    out = dict(masked.state_dict())
    for name, mod in masked.named_modules():
        for t in _masked(mod):
            key = f"{name}.{t}" if name else t
            w = deployable_state[key]
            out[key + "_orig"] = w
            out[key + "_mask"] = (w != 0).to(w.dtype) if id(mod) in prunable else torch.ones_like(w)
    masked_keys = {k[:-5] for k in out if k.endswith("_orig")}
    out.update({k: v for k, v in deployable_state.items() if k not in masked_keys})
    return out


def deployable_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy with pruning masks burnt into the weights (prune.remove)."""
    for mod in model.modules():  # the pruning hook's weight = orig * mask is not a leaf: detach to copy
        for name in _masked(mod):
            setattr(mod, name, getattr(mod, name).detach())
    m = copy.deepcopy(model).cpu().eval()
    for mod in m.modules():
        for name in _masked(mod):
            prune.remove(mod, name)
    return m


def _masked(mod: nn.Module) -> list[str]:
    """Names of the pruning-reparametrised tensors of a module."""
    return [k[:-5] for k, _ in mod.named_buffers(recurse=False) if k.endswith("_mask")]
