"""FastAbsPercentile (train/percentile.py) against Brevitas' own AbsPercentile.

The fast percentile must return exactly Brevitas' value (the same element of |x|)
on every input, and a model trained with it during Brevitas' statistics phase
must be bit-identical to one trained with Brevitas' AbsPercentile.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import brevitas.nn as qnn
from brevitas.core.stats.stats_op import AbsPercentile

from radioml.classes import CLASSES, FRAME_LENGTH
from train.masks import init_masks
from train.model import ModelConfig, build_vgg10
from train.percentile import CHUNK, FastAbsPercentile

Q = 99.999  # Uint8ActPerTensorFloat's high_percentile_q


def takes_fast_path(n: int, q: float = Q) -> bool:
    """Whether FastAbsPercentile selects through chunk maxima (not torch.kthvalue) for n values."""
    k = int(math.floor(.01 * q * n + 0.5))
    return n // CHUNK >= 4 * (n - k + 1)


def _inputs():
    g = torch.Generator().manual_seed(0)
    big = torch.randn(64, 64, 1024, generator=g)
    spiky = torch.randn(8, 8, 1024, generator=g)
    spiky.view(-1)[5000:5040] = 50 + torch.arange(40.)  # all the top values inside one chunk
    tail = torch.randn(3 * CHUNK * 40 + 517, generator=g)  # not a multiple of CHUNK ...
    tail[-3:] = torch.tensor([90., -95., 99.])  # ... with the largest values in the ragged tail
    return {
        "gaussian 64x64x1024": big,
        "relu (half zeros) 64x64x1024": F.relu(big),
        "4-bit quantised, many ties 32x64x1024": torch.randint(0, 16, (32, 64, 1024), generator=g).float() * 0.25,
        "signed ties 16x64x1024": torch.randint(-3, 4, (16, 64, 1024), generator=g).float(),
        "all zeros 16x64x1024": torch.zeros(16, 64, 1024),
        "top values in one chunk 8x8x1024": spiky,
        "ragged tail": tail,
        "small 4x16x16 (kthvalue path)": torch.randn(4, 16, 16, generator=g),
        "small relu 32x64 (kthvalue path)": F.relu(torch.randn(32, 64, generator=g)),
        "single value": torch.tensor([-2.5]),
    }


@pytest.mark.parametrize("name", list(_inputs()))
def test_equals_brevitas_abs_percentile(name):
    x = _inputs()[name]
    fast, ref = FastAbsPercentile(Q), AbsPercentile(Q, None)
    got, want = fast(x), ref(x)
    assert torch.equal(got, want), (name, got, want)
    assert got.shape == want.shape and got.dtype == want.dtype


def test_paths_are_the_ones_named():
    """The large inputs above really exercise the chunk-maxima path, the small ones kthvalue."""
    for name, x in _inputs().items():
        assert takes_fast_path(x.numel()) == ("kthvalue path" not in name and x.numel() > 1000), name


@pytest.mark.parametrize("q", [50.0, 99.0, 99.9, 99.99, 100.0])
def test_other_percentiles(q):
    x = torch.randn(16, 64, 1024, generator=torch.Generator().manual_seed(1))
    assert torch.equal(FastAbsPercentile(q)(x), AbsPercentile(q, None)(x))


def test_rejects_per_channel():
    with pytest.raises(ValueError):
        FastAbsPercentile(Q, stats_reduce_dim=1)


def _stats_impls(model):
    """The ParameterFromRuntimeStatsScaling of every QuantReLU, in order."""
    return [m.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl
            for m in model.modules() if isinstance(m, qnn.QuantReLU)]


def test_training_bit_identical_to_brevitas_percentile(monkeypatch):
    cfg, batch, steps = ModelConfig(4, 4, 4, conv_filters=8, dense_units=32), 16, 5

    def build():
        torch.manual_seed(0)
        return init_masks(build_vgg10(cfg)).train()

    fast_model, ref_model = build(), build()
    fast_scalings, ref_scalings = _stats_impls(fast_model), _stats_impls(ref_model)
    assert all(isinstance(s.stats.stats_impl, FastAbsPercentile) for s in fast_scalings)
    for s in ref_scalings:
        s.stats.stats_impl = AbsPercentile(Q, None)

    # Record, per QuantReLU and call, how many values it saw and whether torch.kthvalue ran.
    kth_calls = [0]
    real_kthvalue = torch.kthvalue

    def counting_kthvalue(*args, **kw):
        kth_calls[0] += 1
        return real_kthvalue(*args, **kw)

    monkeypatch.setattr(torch, "kthvalue", counting_kthvalue)
    seen = {i: [] for i in range(len(fast_scalings))}
    for i, s in enumerate(fast_scalings):
        impl = s.stats.stats_impl
        impl.register_forward_pre_hook(lambda mod, args: kth_calls.__setitem__(0, 0))
        impl.register_forward_hook(
            lambda mod, args, out, i=i: seen[i].append((args[0].numel(), kth_calls[0])))

    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(batch, 2, FRAME_LENGTH, generator=g),
                torch.randint(0, len(CLASSES), (batch,), generator=g)) for _ in range(steps)]
    for model in (fast_model, ref_model):
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        for x, y in batches:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

    # Every QuantReLU is still collecting statistics, and they moved off their initial 1.0.
    for s in fast_scalings + ref_scalings:
        assert s.counter == steps < s.collect_stats_steps
        assert not torch.equal(s.buffer, torch.ones_like(s.buffer))
    # The first conv block's statistic took the chunk-maxima path at every step (no kthvalue);
    # at least one small layer took the kthvalue path, so both are covered.
    assert len(seen[0]) == steps
    assert all(takes_fast_path(n) and calls == 0 for n, calls in seen[0])
    assert any(calls == 1 and not takes_fast_path(n) for v in seen.values() for n, calls in v)

    fast_state = dict(list(fast_model.named_parameters()) + list(fast_model.named_buffers()))
    ref_state = dict(list(ref_model.named_parameters()) + list(ref_model.named_buffers()))
    assert fast_state.keys() == ref_state.keys()
    different = [k for k in fast_state if not torch.equal(fast_state[k], ref_state[k])]
    assert not different, different
    # Sanity: training changed the weights at all.
    assert not torch.equal(fast_state["1.weight_orig"], build().state_dict()["1.weight_orig"])
