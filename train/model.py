"""The challenge's VGG10 baseline (ITU-ML5G-PS-007) as a Brevitas model.

Bit widths are parameters: the challenge baseline is 8/8/8, the FMP paper's
model is 4/4/4. The layer structure is fixed so that inference-cost figures stay
comparable with the challenge leaderboard.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
import brevitas.nn as qnn
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Int32Bias

from radioml.classes import CLASSES, FRAME_LENGTH


@dataclass(frozen=True)
class ModelConfig:
    """Shape and precision of the VGG10 network."""

    input_bits: int = 8
    weight_bits: int = 8
    act_bits: int = 8
    conv_filters: int = 64
    dense_units: int = 128
    conv_blocks: int = 7
    input_range: float = 2.0  # fixed input quantiser range [-r, r]

    def to_dict(self) -> dict:
        return asdict(self)


def _input_quantizer(bits: int, rng: float):
    """A fixed-range [-rng, rng] signed quantiser, as the challenge's InputQuantizer."""
    return type(
        f"InputQuant{bits}b",
        (Int8ActPerTensorFloatMinMaxInit,),
        {"bit_width": bits, "min_val": -rng, "max_val": rng,
         "scaling_impl_type": ScalingImplType.CONST},
    )


def build_vgg10(cfg: ModelConfig = ModelConfig()) -> nn.Sequential:
    """Build the challenge's VGG10: 7 conv blocks, 3 dense layers, 24 outputs.

    Input is (batch, 2, 1024) float I/Q; output is 24 class logits.
    """
    f, d = cfg.conv_filters, cfg.dense_units
    layers: list[nn.Module] = [
        qnn.QuantHardTanh(act_quant=_input_quantizer(cfg.input_bits, cfg.input_range))
    ]
    in_ch = 2
    for _ in range(cfg.conv_blocks):
        layers += [
            qnn.QuantConv1d(in_ch, f, 3, padding=1, weight_bit_width=cfg.weight_bits, bias=False),
            nn.BatchNorm1d(f),
            qnn.QuantReLU(bit_width=cfg.act_bits),
            nn.MaxPool1d(2),
        ]
        in_ch = f
    flat = f * (FRAME_LENGTH >> cfg.conv_blocks)
    layers += [
        nn.Flatten(),
        qnn.QuantLinear(flat, d, weight_bit_width=cfg.weight_bits, bias=False),
        nn.BatchNorm1d(d),
        qnn.QuantReLU(bit_width=cfg.act_bits),
        qnn.QuantLinear(d, d, weight_bit_width=cfg.weight_bits, bias=False),
        nn.BatchNorm1d(d),
        qnn.QuantReLU(bit_width=cfg.act_bits, return_quant_tensor=True),
        qnn.QuantLinear(d, len(CLASSES), weight_bit_width=cfg.weight_bits,
                        bias=True, bias_quant=Int32Bias),
    ]
    return nn.Sequential(*layers)


def prunable_layers(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight") for every QuantConv1d and QuantLinear: what FMP/IMP prune."""
    return [(m, "weight") for m in model.modules()
            if isinstance(m, (qnn.QuantConv1d, qnn.QuantLinear))]


def example_input(batch: int = 1) -> torch.Tensor:
    """A dummy input of the model's shape, for export and tracing."""
    return torch.zeros(batch, 2, FRAME_LENGTH)
