"""Load a trained model for export: a run directory, its model.pt, or a training checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch

from train.checkpoint import FORMAT as CKPT_FORMAT
from train.cost import deployable_copy
from train.masks import init_masks
from train.model import ModelConfig, build_vgg10

MODEL_FORMAT = "amc-vgg10-model/1"


def _model_config(d: dict, where) -> ModelConfig:
    try:
        return ModelConfig(**d)
    except TypeError as e:
        raise ValueError(f"{where}: model config does not fit this toolchain ({e})") from None


def _load_state(model, state: dict, where):
    missing, unexpected = [], []
    try:
        res = model.load_state_dict(state, strict=False)
        missing, unexpected = list(res.missing_keys), list(res.unexpected_keys)
    except RuntimeError as e:
        raise ValueError(f"{where}: weights do not match its config ({str(e).splitlines()[0]})") from None
    if missing or unexpected:
        raise ValueError(f"{where}: weights do not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")


def load_model(src: str | Path) -> tuple[torch.nn.Module, ModelConfig, str]:
    """(eval-mode model with masks burnt in, its ModelConfig, a description) from `src`."""
    p = Path(src)
    if p.is_dir():
        p = p / "model.pt" if (p / "model.pt").exists() else p / "checkpoint.pt"
    if not p.is_file():
        raise ValueError(f"{p}: no such file (pass a run directory, model.pt or checkpoint.pt)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{p}: not a readable PyTorch file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") not in (MODEL_FORMAT, CKPT_FORMAT):
        raise ValueError(f"{p}: not a model or checkpoint of this toolchain")
    cfg = _model_config(obj["config"]["model"], p)
    model = build_vgg10(cfg)
    if obj["format"] == MODEL_FORMAT:
        _load_state(model, obj["model"], p)
        what = "final model"
    else:
        snap = obj["last_good"] or obj["current"]
        init_masks(model)
        _load_state(model, snap["model"], p)
        what = "last model that met the floor" if obj["last_good"] else "current checkpoint model"
    return deployable_copy(model), cfg, f"{p} ({what})"


def fresh_model(bits: int, seed: int = 0) -> tuple[torch.nn.Module, ModelConfig, str]:
    """A freshly initialised model, its activation scales set by a few random batches."""
    torch.manual_seed(seed)
    cfg = ModelConfig(bits, bits, bits)
    m = build_vgg10(cfg).train()
    with torch.no_grad():
        for _ in range(32):
            m(torch.randn(16, 2, 1024) * 0.7)
    return m.eval(), cfg, f"freshly initialised {bits}-bit model (seed {seed})"
