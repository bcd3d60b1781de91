"""L1-unstructured magnitude pruning of the VGG10's weights, through torch.nn.utils.prune.

Every QuantConv1d and QuantLinear weight carries a mask from the start (an
all-ones identity mask), so the state dict has the same keys before and after
any pruning and a model can always be rolled back to an earlier snapshot.
Biases are never pruned, as in the FMP authors' code.
"""
from __future__ import annotations

from torch import nn
from torch.nn.utils import prune

from .model import prunable_layers


def init_masks(model: nn.Module) -> nn.Module:
    """Give every prunable weight an all-ones mask (weight -> weight_orig * weight_mask)."""
    for module, name in prunable_layers(model):
        if not prune.is_pruned(module):
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
