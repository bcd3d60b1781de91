"""The challenge's VGG10 baseline (ITU-ML5G-PS-007) as a Brevitas model.

Bit widths are parameters: the challenge baseline is 8/8/8, the FMP paper's
model is 4/4/4. The layer sequence is fixed so that inference-cost figures stay
comparable with the challenge leaderboard; the widths are parameters too (each
conv's filters, each hidden dense layer's units), so that a filter-pruned model
can be rebuilt physically narrower (train/narrow.py) and FINN builds a smaller
accelerator for it.
"""
from __future__ import annotations

import typing
from dataclasses import asdict, dataclass

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
    conv_widths: typing.Optional[typing.Tuple[int, ...]] = None  # per conv block; None: conv_filters each
    dense_widths: typing.Optional[typing.Tuple[int, ...]] = None  # the 2 hidden dense layers; None: dense_units

    def __post_init__(self):
        for name, n in (("conv_widths", self.conv_blocks), ("dense_widths", HIDDEN_DENSE)):
            v = getattr(self, name)
            if v is None:
                continue
            v = tuple(int(w) for w in v)  # JSON gives lists; keep the config hashable
            if len(v) != n or min(v) < 1:
                raise ValueError(f"model.{name} must be {n} positive widths, got {list(v)}")
            object.__setattr__(self, name, v)

    @property
    def convs(self) -> tuple[int, ...]:
        """Filters of each conv block."""
        return self.conv_widths or (self.conv_filters,) * self.conv_blocks

    @property
    def denses(self) -> tuple[int, ...]:
        """Units of each hidden dense layer."""
        return self.dense_widths or (self.dense_units,) * HIDDEN_DENSE

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("conv_widths", "dense_widths"):
            d[k] = None if d[k] is None else list(d[k])
        return d


HIDDEN_DENSE = 2  # hidden dense layers of the VGG10 (the third dense layer gives the 24 logits)


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
    layers: list[nn.Module] = [
        qnn.QuantHardTanh(act_quant=_input_quantizer(cfg.input_bits, cfg.input_range))
    ]
    in_ch = 2
    for f in cfg.convs:
        layers += [
            qnn.QuantConv1d(in_ch, f, 3, padding=1, weight_bit_width=cfg.weight_bits, bias=False),
            nn.BatchNorm1d(f),
            qnn.QuantReLU(bit_width=cfg.act_bits),
            nn.MaxPool1d(2),
        ]
        in_ch = f
    d1, d2 = cfg.denses
    layers += [
        nn.Flatten(),
        qnn.QuantLinear(in_ch * (FRAME_LENGTH >> cfg.conv_blocks), d1, weight_bit_width=cfg.weight_bits, bias=False),
        nn.BatchNorm1d(d1),
        qnn.QuantReLU(bit_width=cfg.act_bits),
        qnn.QuantLinear(d1, d2, weight_bit_width=cfg.weight_bits, bias=False),
        nn.BatchNorm1d(d2),
        qnn.QuantReLU(bit_width=cfg.act_bits, return_quant_tensor=True),
        qnn.QuantLinear(d2, len(CLASSES), weight_bit_width=cfg.weight_bits,
                        bias=True, bias_quant=Int32Bias),
    ]
    return nn.Sequential(*layers)


def prunable_layers(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight") for every QuantConv1d and QuantLinear: what FMP/IMP prune."""
    return [(m, "weight") for m in model.modules()
            if isinstance(m, (qnn.QuantConv1d, qnn.QuantLinear))]


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable width: a layer's output channels, the BatchNorm after it, and the next
    weight layer, whose input columns c*repeat .. c*repeat+repeat-1 read channel c (repeat is
    1 between convs and between dense layers, the conv output length after the Flatten)."""

    layer: nn.Module
    bn: nn.BatchNorm1d
    consumer: nn.Module
    repeat: int


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The VGG10's prunable widths in order: every conv block, then the two hidden dense
    layers (never the 24 outputs)."""
    mods = list(model.modules())
    weighted = [m for m in mods if isinstance(m, (qnn.QuantConv1d, qnn.QuantLinear))]
    groups = []
    for layer, consumer in zip(weighted, weighted[1:]):
        bn = next(m for m in mods[mods.index(layer):] if isinstance(m, nn.BatchNorm1d))
        n_out = layer.weight.shape[0]
        groups.append(ChannelGroup(layer, bn, consumer, consumer.weight.shape[1] // n_out))
    return groups

