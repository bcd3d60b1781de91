"""A QuantReLU's training forward in fewer passes over the activation, and max-pooling before it.

Brevitas' QuantReLU runs ReLU, divide, add zero point, round, two `where` clamps,
subtract, multiply as separate tensors, and autograd replays each backwards: on a
CPU that is as much time as the convolutions. `relu_fake_quant` computes the same
forward values with the same floating-point operations and the same gradients
(input and scale, the scale's by the same division and sums autograd does), keeping
one mask and two tensors for the backward.

Max-pooling commutes with a non-decreasing function, and ReLU followed by rounding
to a grid is one: pool(quant(x)) == quant(pool(x)) value for value. `block_forward`
pools first, so the quantiser sees half the values; only the gradient among tied
quantised values differs (it goes to the larger raw value instead of the first).
"""
from __future__ import annotations

import torch
from torch import nn


class _ReLUFakeQuant(torch.autograd.Function):
    """relu, then Brevitas' unsigned IntQuant (x / s + zp, round, clamp, (- zp) * s) with zero point 0."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, max_int):
        r = torch.relu(x)
        t = r / scale
        i = (t + zero_point).round_()
        keep = (i <= max_int).logical_and_(r > 0)  # in range (grad to input and scale) and past the ReLU
        c = i.clamp_(max=max_int)
        ctx.save_for_backward(t, c, keep, scale)
        return c * scale

    @staticmethod
    def backward(ctx, g):
        t, c, keep, scale = ctx.saved_tensors
        gt = torch.where(keep, g * scale, 0.0)
        gx = gt / scale
        gs = (g * c).sum() + (-gt * (t / scale)).sum()
        return gx, gs.reshape(scale.shape), None, None


def _tensor_quant(m: nn.Module):
    return m.act_quant.fused_activation_quant_proxy.tensor_quant


def stats_done(m: nn.Module) -> bool:
    """A QuantReLU whose learned scale no longer comes from batch statistics."""
    s = _tensor_quant(m).scaling_impl
    return getattr(s, "counter", 0) > getattr(s, "collect_stats_steps", -1)


def fusable(m: nn.Module) -> bool:
    """A plain QuantReLU of ours: ReLU, unsigned, zero point 0, quantisation on, no QuantTensor out."""
    try:
        tq = _tensor_quant(m)
        iq = tq.int_quant
    except AttributeError:
        return False
    return (isinstance(m.act_quant.fused_activation_quant_proxy.activation_impl, nn.ReLU)
            and not iq.signed and not iq.narrow_range and type(iq.float_to_int_impl).__name__ == "RoundSte"
            and type(tq.zero_point_impl).__name__ == "ZeroZeroPoint" and not m.return_quant_tensor
            and m.act_quant.is_quant_enabled and not getattr(tq, "observer_only", False))


def relu_fake_quant(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What QuantReLU `m` returns for `x` in training (statistics phase included), in fewer passes."""
    tq = _tensor_quant(m)
    bit_width = tq.msb_clamp_bit_width_impl()
    threshold = tq.int_scaling_impl(bit_width)
    stats_input = torch.relu(x) if not stats_done(m) else x  # the statistics see ReLU's output, as in Brevitas
    scale = tq.scaling_impl(stats_input, threshold)
    zero_point = tq.zero_point_impl(x, scale, bit_width)
    max_int = getattr(m, "_max_int", None)
    if max_int is None:  # unmarked module: a host sync (and, under torch.compile, a graph break) every call
        max_int = float(tq.int_quant.max_int(bit_width))
    return _ReLUFakeQuant.apply(x, scale, zero_point, max_int)


def max_int(m: nn.Module) -> float:
    """The largest integer of QuantReLU `m`'s grid: a constant of its bit width, read once before any compiled step."""
    tq = _tensor_quant(m)
    return float(tq.int_quant.max_int(tq.msb_clamp_bit_width_impl()))


def pair_poolable(m: nn.Module) -> bool:
    """A MaxPool1d over non-overlapping pairs (kernel 2, stride 2, no padding)."""
    def one(v):
        return v[0] if isinstance(v, tuple) else v
    return (isinstance(m, nn.MaxPool1d) and one(m.kernel_size) == 2 and one(m.stride) == 2 and one(m.padding) == 0
            and one(m.dilation) == 1 and not m.ceil_mode and not m.return_indices)


def pair_max(x: torch.Tensor) -> torch.Tensor:
    """MaxPool1d(2) of an even-length (B, C, L) tensor, and its gradient (to the first of tied values),
    by a max over a view: 1.6x faster than max_pool2d_with_indices on a CPU."""
    if x.shape[-1] % 2:
        return nn.functional.max_pool1d(x, 2)
    return x.unflatten(-1, (-1, 2)).max(-1).values


def mark(model: nn.Module, pool_first: bool = True) -> nn.Module:
    """Flag the layers `block_forward` may run its own way (the model itself is unchanged)."""
    for m in model.modules():
        if fusable(m):
            m._fast_relu, m._max_int = True, max_int(m)
        if pair_poolable(m):
            m._pair_pool, m._pool_first = True, pool_first
    return model


def block_forward(layers, x: torch.Tensor) -> torch.Tensor:
    """Run a Sequential's marked layers in training: each QuantReLU in fewer passes, each pair
    MaxPool1d by `pair_max`, and one right after a QuantReLU (statistics done) pooled first."""
    i, n = 0, len(layers)
    while i < n:
        m = layers[i]
        if getattr(m, "_fast_relu", False):
            nxt = layers[i + 1] if i + 1 < n else None
            if getattr(nxt, "_pool_first", False) and stats_done(m):
                x = relu_fake_quant(m, pair_max(x))
                i += 2
                continue
            x = relu_fake_quant(m, x)
        elif getattr(m, "_pair_pool", False):
            x = pair_max(x)
        else:
            x = m(x)
        i += 1
    return x
