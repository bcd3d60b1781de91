"""The deployable model file of a run (`model.pt`): its format, writer and reader.

`model.pt` holds the final model with pruning masks burnt in, physically narrowed
after filter pruning, and the run's config whose `model` section gives the narrow
widths. It contains only tensors and plain containers: torch.load(weights_only=True).
`load_model` also takes a training checkpoint (the last model that met the floor),
so later stages need nothing else from train/.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from radioml.cli import first_line

from .checkpoint import FORMAT as CHECKPOINT_FORMAT
from .checkpoint import atomic_save
from .masks import deployable_copy, init_masks
from .model import ModelConfig, build_vgg10
from .narrow import narrow

MODEL_FORMAT = "amc-vgg10-model/1"


def save_model(model: nn.Module, model_cfg: ModelConfig, run_config: dict, path: Path) -> None:
    """Write a deployable model (no masks) and its config atomically."""
    config = {**run_config, "model": model_cfg.to_dict()}
    atomic_save({"format": MODEL_FORMAT, "config": config, "model": model.state_dict()}, path)


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


def load_model(src: str | Path) -> tuple[nn.Module, ModelConfig, str]:
    """(eval-mode deployable model, its ModelConfig, a description) from a run directory,
    its model.pt or a training checkpoint.pt; a filter-pruned checkpoint comes back narrowed."""
    p = Path(src)
    if p.is_dir():
        p = p / "model.pt" if (p / "model.pt").exists() else p / "checkpoint.pt"
    if not p.is_file():
        raise ValueError(f"{p}: no such file (pass a run directory, model.pt or checkpoint.pt)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
        raise ValueError(f"{p}: not a readable PyTorch file ({first_line(e)})") from None
    if not isinstance(obj, dict) or obj.get("format") not in (MODEL_FORMAT, CHECKPOINT_FORMAT):
        raise ValueError(f"{p}: not a model or checkpoint of this toolchain")
    if obj["format"] == MODEL_FORMAT:
        cfg = _model_config(obj["config"]["model"], p)
        model = build_vgg10(cfg)
        _load_state(model, obj["model"], p)
        return model.eval(), cfg, f"{p} (final model)"
    snap = obj["last_good"] or obj["current"]
    cfg = _model_config(snap.get("model_cfg", obj["config"]["model"]), p)  # the precision search changes bits
    model = build_vgg10(cfg)
    init_masks(model)
    _load_state(model, snap["model"], p)
    what = "last model that met the floor" if obj["last_good"] else "current checkpoint model"
    model, cfg = narrow(deployable_copy(model), cfg)
    return model, cfg, f"{p} ({what})"

