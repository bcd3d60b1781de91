"""The polyphase front end (model.polyphase P): 2P channels over 1024/P positions, P samples a clock in FINN."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from train.model import ModelConfig, Polyphase, build_vgg10


def _trained_like(cfg: ModelConfig, seed: int, batches: int, batch: int):
    """An eval-mode model whose quantisers collected statistics on a few random batches, as after training."""
    torch.manual_seed(seed)
    model = build_vgg10(cfg).train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch, 2, 1024) * 0.7)
    return model.eval()


def test_a_polyphase_conv_built_from_a_standard_convs_taps_gives_its_pre_pool_outputs_reordered():
    """What the front end can represent: the standard first conv (kernel 3, pad 1) over 1024 samples equals a
    kernel-3 conv over the 2-phase frame whose output channel (j, f) is the standard output at samples 2u + j,
    with tap W'[(j, f), (k, c), e] = W[f, c, d] where d = 2e + k - j (the sample offset of position offset e,
    phase k) is in -1..1."""
    torch.manual_seed(0)
    p, f, c = 2, 5, 2
    std = torch.nn.Conv1d(c, f, 3, padding=1, bias=False)
    poly = torch.nn.Conv1d(p * c, p * f, 3, padding=1, bias=False)
    w = torch.zeros_like(poly.weight)
    for j in range(p):
        for k in range(p):
            for e in (-1, 0, 1):
                d = p * e + k - j
                if -1 <= d <= 1:
                    w[j * f:(j + 1) * f, k * c:(k + 1) * c, e + 1] = std.weight[:, :, d + 1]
    poly.weight.data = w
    x = torch.randn(3, c, 1024)
    y = std(x)  # (3, f, 1024)
    got = poly(Polyphase(p)(x))  # (3, p*f, 512): channel j*f + f' at u is sample 2u + j
    assert torch.allclose(got, Polyphase(p)(y), atol=1e-5)


@pytest.mark.parametrize("phases", [2, 4])
def test_the_model_the_host_and_the_accelerator_input_agree_on_the_order(phases):
    """train.model.Polyphase, export.steps.polyphase (what the checks feed) and a reshape of the channels-last
    frame (what the driver streams) are the same rearrangement."""
    from export.steps import polyphase

    x = np.random.default_rng(0).standard_normal((3, 2, 1024)).astype(np.float32)
    ours = Polyphase(phases)(torch.from_numpy(x)).numpy()
    assert np.array_equal(ours, polyphase(x, phases))
    nhwc = x.transpose(0, 2, 1).reshape(3, 1024 // phases, 2 * phases)  # the stream's bytes, regrouped
    assert np.array_equal(ours, nhwc.transpose(0, 2, 1))


def test_the_front_end_keeps_the_networks_length_and_refuses_other_phases():
    for p in (1, 2, 4):
        m = build_vgg10(ModelConfig(4, 4, 4, conv_filters=8, dense_units=16, polyphase=p)).eval()
        assert m(torch.randn(2, 2, 1024)).shape == (2, 24)
        assert sum(isinstance(x, torch.nn.MaxPool1d) for x in m) == 7 - (p.bit_length() - 1)
    with pytest.raises(ValueError, match="model.polyphase must be one of 1, 2, 4, got 3"):
        ModelConfig(polyphase=3)


def test_a_polyphase_model_exports_and_builds_bit_exact_past_one_sample_a_clock(tmp_path, small_file):
    """A P=2 model through every export check and a build: the accelerator takes (1, 512, 1, 4) (the frame's
    bytes), its folded graph is bit-exact, it folds past the one-sample-a-clock ceiling (1024 cycles a frame),
    and its emulated bundle predicts what PyTorch predicts on the test split."""
    import json

    from build.config import BuildConfig
    from build.flow import build
    from driver.validate import validate
    from export.config import ExportConfig
    from export.to_finn import export
    from radioml.dataset import RadioMLFile
    from train.saved_model import save_model

    cfg = ModelConfig(4, 4, 4, conv_filters=8, dense_units=16, polyphase=2)
    model = _trained_like(cfg, seed=3, batches=8, batch=16)
    save_model(model, cfg, {}, tmp_path / "m" / "model.pt")
    exp = export(ExportConfig(run=str(tmp_path / "m" / "model.pt"), out=str(tmp_path / "export"),
                              data=str(small_file), check_frames=2), log=lambda *_: None)
    out = build(BuildConfig(export_dir=str(exp), out=str(tmp_path / "build"), max_fps=True), log=lambda *_: None)
    r = json.loads((out / "build_report.json").read_text())
    assert r["io_shape_dict"]["ishape_normal"] == [[1, 512, 1, 4]] and r["folded_verification"]["ok"]
    assert r["max_cycles"] < 1024 and r["estimated_fps"] > 1e9 / 4.0 / 1024
    m = validate(out, small_file, batch_size=100, emulate=True, export_dir=exp)
    with RadioMLFile(small_file) as ds, torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(ds.read(np.array(m["frame_indices"])).transpose(0, 2, 1)))
        assert np.array_equal(np.array(m["predictions"]), model(x).argmax(1).numpy())


def test_the_precision_search_counts_each_layers_macs_at_the_length_it_runs():
    """train.precision weighs a bit by the MACs of its layer: a P=2 front end computes what the standard one does
    in every layer (its first conv: half the positions, twice the inputs), P=4 halves the second conv's."""
    from train.precision import layer_figures

    macs = {p: [f["dense_macs"] for f in layer_figures(
        build_vgg10(ModelConfig(4, 4, 4, conv_filters=8, dense_units=16, polyphase=p)).eval(), 1024)]
        for p in (1, 2, 4)}
    assert macs[2] == macs[1]
    assert macs[4][1] == macs[1][1] / 2 and macs[4][0] == macs[1][0] and macs[4][2:] == macs[1][2:]


def _first_conv_output(model, x):
    for m in model:
        x = m(x)
        if isinstance(m, torch.nn.Conv1d):
            return x


@pytest.mark.parametrize("before, after", [(1, 2), (1, 4), (2, 4)])
def test_the_front_end_move_keeps_the_first_convs_outputs_at_its_positions_and_every_other_layer(before, after):
    """train.front_end.to_polyphase on a trained-like model: the new first conv's (quantised) output at position v
    is the old one's at the same sample (old position v * after / before), exactly; every other layer carries its
    state over."""
    from train.front_end import to_polyphase

    cfg = ModelConfig(4, 4, 4, conv_filters=8, dense_units=16, polyphase=before)
    old = _trained_like(cfg, seed=0, batches=4, batch=8)
    new, ncfg = to_polyphase(old, cfg, after)
    assert ncfg.polyphase == after and not new.training
    x = torch.randn(3, 2, 1024) * 0.7
    with torch.no_grad():
        want = _first_conv_output(old, x)  # (3, 8, 1024 / before) before BatchNorm
        got = _first_conv_output(new, x)  # (3, 8, 1024 / after)
        assert torch.equal(got, want[:, :, ::after // before])
        assert new(x).shape == (3, 24)
    keep = lambda m: [x for x in m if not isinstance(x, (torch.nn.MaxPool1d, Polyphase))][2:]  # noqa: E731
    for a, b in zip(keep(old), keep(new), strict=True):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert ka == kb and torch.equal(va, vb)
    with pytest.raises(ValueError, match=f"takes {after} sample"):
        to_polyphase(new, ncfg, after)
