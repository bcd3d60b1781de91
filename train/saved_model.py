"""The deployable model file of a run (`model.pt`): its format, writer and reader.

`model.pt` holds the final model with pruning masks burnt in, physically narrowed
after filter pruning, and the run's config whose `model` section gives the narrow
widths. It contains only tensors and plain containers: torch.load(weights_only=True).
`load_model` also takes a training checkpoint (the last model that met the floor),
so later stages need nothing else from train/.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from radioml.cli import first_line

from .checkpoint import FORMAT as CHECKPOINT_FORMAT
from .checkpoint import atomic_save, held_model
from .masks import deployable_copy, init_masks
from .model import ModelConfig, build_vgg10
from .narrow import narrow

MODEL_FORMAT = "amc-vgg10-model/2"  # /2 records a digest of its tensors
LEGACY_FORMAT = "amc-vgg10-model/1"  # read without a digest to verify


def tensor_digest(state: dict) -> str:
    """sha256 over every tensor of a state dict (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k]
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_model(model: nn.Module, model_cfg: ModelConfig, run_config: dict, path: Path) -> None:
    """Write a deployable model (no masks), its config and the digest of its tensors atomically."""
    config = {**run_config, "model": model_cfg.to_dict()}
    state = model.state_dict()
    atomic_save({"format": MODEL_FORMAT, "config": config, "model": state, "digest": tensor_digest(state)}, path)


def _model_config(d: dict, where) -> ModelConfig:
    try:
        return ModelConfig(**d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: model config does not fit this toolchain ({e})") from None


def _load_state(model: nn.Module, state: dict, where) -> None:
    try:
        res = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ValueError(f"{where}: weights do not match its config ({first_line(e)})") from None
    if res.missing_keys or res.unexpected_keys:
        raise ValueError(f"{where}: weights do not match its config "
                         f"(missing {list(res.missing_keys)[:3]}, unexpected {list(res.unexpected_keys)[:3]})")


def model_from_state(cfg: ModelConfig, state: dict, where="a state dict") -> nn.Module:
    """The eval-mode deployable model of `cfg` holding `state`: a model.pt's tensors, or a model's state sent
    from another process."""
    model = build_vgg10(cfg)
    _load_state(model, state, where)
    return model.eval()


def load_model(src: str | Path) -> tuple[nn.Module, ModelConfig, str]:
    """(eval-mode deployable model, its ModelConfig, a description) from a run directory,
    its model.pt or a training checkpoint.pt; a filter-pruned checkpoint comes back narrowed."""
    p = Path(src)
    if p.is_dir():
        p = p / "model.pt" if (p / "model.pt").exists() else p / "checkpoint.pt"
    if not p.is_file():
        raise ValueError(f"{p}: no such file (pass a run directory, model.pt or checkpoint.pt)")
    if p.suffix == ".onnx":
        raise ValueError(f"{p}: an ONNX file, not a model.pt or checkpoint.pt of this toolchain")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
        raise ValueError(f"{p}: not a readable PyTorch file ({first_line(e)})") from None
    if not isinstance(obj, dict) or obj.get("format") not in (MODEL_FORMAT, LEGACY_FORMAT, CHECKPOINT_FORMAT):
        raise ValueError(f"{p}: not a model or checkpoint of this toolchain")
    if obj["format"] in (MODEL_FORMAT, LEGACY_FORMAT):
        _need_keys(obj, ("config", "model") + (("digest",) if obj["format"] == MODEL_FORMAT else ()), p)
        _need_keys(obj["config"], ("model",), p, "config.")
        if obj["format"] == MODEL_FORMAT and tensor_digest(obj["model"]) != obj["digest"]:
            raise ValueError(f"{p}: its tensors do not match the digest written with them (corrupt or edited)")
        cfg = _model_config(obj["config"]["model"], p)
        return model_from_state(cfg, obj["model"], p), cfg, f"{p} (final model)"
    _need_keys(obj, ("config", "current", "last_good", "state"), p)
    snap, what = held_model(obj)
    cfg = _model_config(snap.get("model_cfg", obj["config"]["model"]), p)  # the precision search changes bits
    model = build_vgg10(cfg)
    init_masks(model)
    _load_state(model, snap["model"], p)
    model, cfg = narrow(deployable_copy(model), cfg)
    return model, cfg, f"{p} ({what})"


def _need_keys(obj: dict, keys, where, prefix: str = "") -> None:
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise ValueError(f"{where}: missing {prefix}{missing[0]} (a truncated or foreign file)")

