"""Models to export: a trained run (through train's public reader) or a freshly initialised one."""
from __future__ import annotations

import torch

from train.model import ModelConfig, build_vgg10
from train.saved_model import MODEL_FORMAT, load_model  # noqa: F401 - the export stage's model sources

from radioml.classes import FRAME_LENGTH


def fresh_model(bits: int, seed: int = 0, **widths) -> tuple[torch.nn.Module, ModelConfig, str]:
    """A freshly initialised model, its activation scales set by a few random batches.

    `widths` (conv_filters, conv_widths, dense_units, dense_widths) shape it like ModelConfig."""
    torch.manual_seed(seed)
    cfg = ModelConfig(bits, bits, bits, **widths)
    m = build_vgg10(cfg).train()
    with torch.no_grad():
        for _ in range(32):
            m(torch.randn(16, 2, FRAME_LENGTH) * 0.7)
    return m.eval(), cfg, f"freshly initialised {bits}-bit model (seed {seed})"
