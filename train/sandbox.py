"""Models of the ITU-ML5G-PS-007 challenge sandbox (Xilinx/brevitas-radioml-challenge-21) in this toolchain.

The sandbox notebook, where challenge participants start, trains the baseline VGG10 in
Brevitas as an `nn.Sequential` and saves its state dict (keys `1.weight` ... `36.bias`):
an 8-bit input QuantHardTanh over the CONST range [-2, 2], 7 x (QuantConv1d k=3 without bias,
BatchNorm1d, 8-bit QuantReLU, MaxPool1d 2), Flatten, two QuantLinear + BatchNorm + QuantReLU
and a QuantLinear with a 32-bit integer bias. That is `train.model.build_vgg10(ModelConfig(8, 8, 8))`
layer for layer, key for key (its activation scales load into this project's quantisers, which
differ only in how they collect the statistics during training), so a sandbox state dict is
loaded into it and checked: a missing or unexpected key, or a shape that differs, is refused.

`python -m train.import_sandbox PTH --out DIR` turns such a state dict into this project's
`model.pt`, at its own 8 bits or requantised to fewer (`--bits 4`: the float weights and the
learned activation ranges kept, Brevitas recomputing the scales for the new widths), so that it
flows through FMP/IMP (`--init_from`), export, build and the driver.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from radioml.cli import first_line

from .model import ModelConfig, build_vgg10

SANDBOX_CONFIG = ModelConfig(8, 8, 8)  # the notebook's baseline: 8-bit input, weights and activations, 64 filters


def _state_dict(path: Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
        raise ValueError(f"{path}: not a readable PyTorch state dict ({first_line(e)})") from None
    if isinstance(obj, dict) and isinstance(obj.get("format"), str):
        raise ValueError(f"{path}: a model file of this toolchain, not a sandbox state dict (use it as it is)")
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of tensor names to tensors)")
    return obj


def load_sandbox(path: str | Path) -> nn.Module:
    """The sandbox notebook's VGG10 (eval mode) with the weights of a state dict saved by it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    state = _state_dict(path)
    model = build_vgg10(SANDBOX_CONFIG)
    try:
        res = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ValueError(f"{path}: not the sandbox's VGG10 ({first_line(e)})") from None
    scales = sum(k.endswith("scaling_impl.value") for k in state)
    if res.missing_keys or res.unexpected_keys or scales != 9:
        raise ValueError(f"{path}: not a trained sandbox VGG10 (missing {sorted(res.missing_keys)[:3]}, "
                         f"unexpected {sorted(res.unexpected_keys)[:3]}, {scales} of 9 activation scales)")
    return model.eval()


@torch.no_grad()
def strongest_filters(model: nn.Module, cfg: ModelConfig, filters: int) -> tuple[nn.Module, ModelConfig]:
    """The model narrowed to the `filters` conv filters of each block with the largest L1 norm (the ranking
    filter pruning uses, train/channel_pruning.py), the next layer's inputs sliced to match."""
    from .channel_pruning import keep_strongest
    from .masks import deployable_copy, init_masks
    from .model import HIDDEN_DENSE, channel_groups
    from .narrow import narrow

    if not 1 <= filters <= min(cfg.convs):
        raise ValueError(f"--conv-filters must be in 1..{min(cfg.convs)}, got {filters}")
    init_masks(model)
    for g in channel_groups(model)[:-HIDDEN_DENSE]:
        keep_strongest(g, filters)
    return narrow(deployable_copy(model), cfg)


def import_sandbox(src: str | Path, out: str | Path, bits: int | None = None,
                   conv_filters: int | None = None) -> tuple[Path, ModelConfig]:
    """Write a sandbox state dict as this project's model.pt (at 8 bits, or requantised to `bits`;
    optionally narrowed to its `conv_filters` strongest filters per conv block)."""
    from .saved_model import save_model

    model, cfg = load_sandbox(src), SANDBOX_CONFIG
    if conv_filters is not None:
        model, cfg = strongest_filters(model, cfg, conv_filters)
        cfg = dataclasses.replace(cfg, conv_filters=conv_filters, conv_widths=None)
    if bits is not None:
        cfg = dataclasses.replace(cfg, input_bits=bits, weight_bits=bits, act_bits=bits)
        requantised = build_vgg10(cfg)
        res = requantised.load_state_dict(model.state_dict(), strict=False)
        if res.missing_keys or res.unexpected_keys:  # the same layers: only bit widths differ
            raise RuntimeError(f"requantising to {bits} bits changed the layers ({res.missing_keys[:3]})")
        model = requantised.eval()
    out = Path(out)
    if out.suffix != ".pt":
        out = out / "model.pt"
    run_config = {"source": f"imported from the challenge sandbox state dict {src}", "init_from": None}
    save_model(model, cfg, run_config, out)
    return out, cfg
