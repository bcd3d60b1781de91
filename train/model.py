"""The challenge's VGG10 baseline (ITU-ML5G-PS-007) as a Brevitas model.

Bit widths are parameters: the challenge baseline is 8/8/8, the FMP paper's
model is 4/4/4, and every layer may have its own weight and activation bits
(`layer_weight_bits`, `layer_act_bits`: what train/precision.py lowers one layer
at a time; FINN takes per-layer datatypes natively). The layer sequence is fixed so that inference-cost figures stay
comparable with the challenge leaderboard; the widths are parameters too (each
conv's filters, each hidden dense layer's units), so that a filter-pruned model
can be rebuilt physically narrower (train/narrow.py) and FINN builds a smaller
accelerator for it.

`polyphase` P > 1 presents the same 1024 I/Q samples as 2P channels over 1024/P positions
(channel 2k + c at position u holds channel c of sample uP + k) and drops the pools of the first
log2(P) blocks, so the first layer takes P samples a position: in FINN's channels-last stream that
is the same byte order as the plain frame, and the accelerator takes P samples a clock instead of
one (the ceiling of every standard-front-end design). From the second block on the network and its
cost are the standard one's.
"""
from __future__ import annotations

import typing
from dataclasses import asdict, dataclass

import torch
from torch import nn
import brevitas.nn as qnn
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Int32Bias

from radioml.classes import CLASSES, FRAME_LENGTH, POLYPHASES

from .fields import opt
from .percentile import ReLUActQuant


@dataclass(frozen=True)
class ModelConfig:
    """Shape and precision of the VGG10 network."""

    input_bits: int = opt(8, "bits of the input quantiser (fixed range [-input_range, input_range])")
    weight_bits: int = opt(8, "weight bits of every layer (unless layer_weight_bits)")
    act_bits: int = opt(8, "activation bits after every block (unless layer_act_bits)")
    conv_filters: int = opt(64, "filters of every conv block (unless conv_widths); 32 is finn-examples' topology")
    dense_units: int = opt(128, "units of both hidden dense layers (unless dense_widths)")
    conv_blocks: int = opt(7, "conv blocks (each halves the 1024 samples, but the first log2(polyphase); 7 leaves "
                              "8)")
    input_range: float = opt(2.0, "the input quantiser's range [-r, r] (the challenge's: 2)")
    conv_widths: typing.Optional[typing.Tuple[int, ...]] = opt(None, "filters of each conv block, comma-separated "
                                                                     "(e.g. 32,32,24,24,16,16,16)")
    dense_widths: typing.Optional[typing.Tuple[int, ...]] = opt(None, "units of the 2 hidden dense layers, "
                                                                      "comma-separated")
    layer_weight_bits: typing.Optional[typing.Tuple[int, ...]] = opt(None, "weight bits of each weight layer, "
                                                                           "comma-separated: 7 convs, then 3 dense")
    layer_act_bits: typing.Optional[typing.Tuple[int, ...]] = opt(None, "activation bits after each conv block and "
                                                                        "each hidden dense layer (9 values)")
    polyphase: int = opt(1, "input samples per position of the first layer: 1 (the standard front end), or 2 or 4 "
                            "(2P channels over 1024/P positions, the first log2(P) pools dropped: P samples a "
                            "clock in FINN)", POLYPHASES)

    def __post_init__(self):
        if self.polyphase not in POLYPHASES:
            raise ValueError(f"model.polyphase must be one of {', '.join(map(str, POLYPHASES))}, got {self.polyphase}")
        if self.polyphase.bit_length() - 1 > self.conv_blocks:
            raise ValueError(f"model.polyphase {self.polyphase} drops more pools than the {self.conv_blocks} "
                             f"blocks have")
        for name in ("input_bits", "weight_bits", "act_bits"):
            if getattr(self, name) < 2:  # Brevitas' QCDQ export and qonnx's cost take no 1-bit quantiser
                raise ValueError(f"model.{name} must be >= 2, got {getattr(self, name)}")
        for name, n, low in (("conv_widths", self.conv_blocks, 1), ("dense_widths", HIDDEN_DENSE, 1),
                             ("layer_weight_bits", self.conv_blocks + HIDDEN_DENSE + 1, 2),
                             ("layer_act_bits", self.conv_blocks + HIDDEN_DENSE, 2)):
            v = getattr(self, name)
            if v is None:
                continue
            v = tuple(int(w) for w in v)  # JSON gives lists; keep the config hashable
            if len(v) != n or min(v) < low:
                raise ValueError(f"model.{name} must be {n} values >= {low}, got {list(v)}")
            object.__setattr__(self, name, v)

    @property
    def convs(self) -> tuple[int, ...]:
        """Filters of each conv block."""
        return self.conv_widths or (self.conv_filters,) * self.conv_blocks

    @property
    def denses(self) -> tuple[int, ...]:
        """Units of each hidden dense layer."""
        return self.dense_widths or (self.dense_units,) * HIDDEN_DENSE

    @property
    def weight_bits_each(self) -> tuple[int, ...]:
        """Weight bits of each weight layer: the 7 convs, then the 3 dense layers."""
        return self.layer_weight_bits or (self.weight_bits,) * (self.conv_blocks + HIDDEN_DENSE + 1)

    @property
    def act_bits_each(self) -> tuple[int, ...]:
        """Activation bits after each conv block and each hidden dense layer."""
        return self.layer_act_bits or (self.act_bits,) * (self.conv_blocks + HIDDEN_DENSE)

    def same_shape(self, other: "ModelConfig") -> bool:
        """The same layers and widths (bits aside): one's weights load into the other."""
        return (self.convs, self.denses, self.conv_blocks, self.input_range, self.polyphase) == \
            (other.convs, other.denses, other.conv_blocks, other.input_range, other.polyphase)

    @property
    def uniform_bits(self) -> bool:
        return len(set(self.weight_bits_each)) == 1 and len(set(self.act_bits_each)) == 1

    def bits_label(self) -> str:
        """'4/4/4' (input/weight/activation), or 'mixed' with the per-layer lists."""
        if self.uniform_bits:
            return f"{self.input_bits}/{self.weight_bits_each[0]}/{self.act_bits_each[0]}"
        return (f"{self.input_bits}/w{''.join(map(str, self.weight_bits_each))}"
                f"/a{''.join(map(str, self.act_bits_each))}")

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("conv_widths", "dense_widths", "layer_weight_bits", "layer_act_bits"):
            d[k] = None if d[k] is None else list(d[k])
        return d


HIDDEN_DENSE = 2  # hidden dense layers of the VGG10 (the third dense layer gives the 24 logits)


class Polyphase(nn.Module):
    """(B, C, L) -> (B, P*C, L/P): channel k*C + c at position u is channel c of sample u*P + k (a reshape of
    the channels-last frame (B, L, C) to (B, L/P, P*C): no data moves on the accelerator's input)."""

    def __init__(self, phases: int):
        super().__init__()
        self.phases = phases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        return x.reshape(b, c, n // self.phases, self.phases).permute(0, 3, 1, 2).reshape(b, self.phases * c,
                                                                                           n // self.phases)

    def extra_repr(self) -> str:
        return f"phases={self.phases}"


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

    Input is (batch, 2, 1024) float I/Q; output is 24 class logits. With cfg.polyphase P > 1 the quantised
    input is rearranged to 2P channels (Polyphase) and the first log2(P) blocks keep their length.
    """
    layers: list[nn.Module] = [
        qnn.QuantHardTanh(act_quant=_input_quantizer(cfg.input_bits, cfg.input_range))
    ]
    if cfg.polyphase > 1:
        layers.append(Polyphase(cfg.polyphase))
    wb, ab = cfg.weight_bits_each, cfg.act_bits_each
    in_ch = 2 * cfg.polyphase
    unpooled = cfg.polyphase.bit_length() - 1
    for i, f in enumerate(cfg.convs):
        layers += [
            qnn.QuantConv1d(in_ch, f, 3, padding=1, weight_bit_width=wb[i], bias=False),
            nn.BatchNorm1d(f),
            qnn.QuantReLU(act_quant=ReLUActQuant, bit_width=ab[i]),
        ] + ([] if i < unpooled else [nn.MaxPool1d(2)])
        in_ch = f
    d1, d2 = cfg.denses
    c = cfg.conv_blocks
    layers += [
        nn.Flatten(),
        qnn.QuantLinear(in_ch * (FRAME_LENGTH >> cfg.conv_blocks), d1, weight_bit_width=wb[c], bias=False),
        nn.BatchNorm1d(d1),
        qnn.QuantReLU(act_quant=ReLUActQuant, bit_width=ab[c]),
        qnn.QuantLinear(d1, d2, weight_bit_width=wb[c + 1], bias=False),
        nn.BatchNorm1d(d2),
        qnn.QuantReLU(act_quant=ReLUActQuant, bit_width=ab[c + 1], return_quant_tensor=True),
        qnn.QuantLinear(d2, len(CLASSES), weight_bit_width=wb[c + 2],
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

