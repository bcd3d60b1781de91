"""Per-layer bit widths: a model with different bits in every layer trains, saves, exports with every
golden check, builds FINN estimates whose per-layer datatypes are those bits, runs in the driver's
emulation, and costs exactly the per-layer sum; ModelConfig refuses bad lists and round-trips them."""
import argparse
import dataclasses
import json

import numpy as np
import pytest
import torch
import brevitas.nn as qnn

from radioml.classes import FRAME_LENGTH
from radioml.dataset import RadioMLFile
from train.cost import model_cost
from train.model import ModelConfig, build_vgg10
from tests.conftest import assert_every_stage_agrees

INPUT_BITS = 5
W = (2, 3, 4, 5, 6, 7, 8, 3, 4, 5)  # 7 convs, then the 3 dense layers
A = (2, 3, 4, 5, 6, 7, 8, 3, 4)  # after each conv block and each hidden dense layer
MIXED = ModelConfig(input_bits=INPUT_BITS, conv_filters=8, dense_units=16, layer_weight_bits=W, layer_act_bits=A)


def _weight_layers(model):
    return [m for m in model.modules() if isinstance(m, (qnn.QuantConv1d, qnn.QuantLinear))]


def _int_weights(layer) -> np.ndarray:
    qw = layer.quant_weight()
    return torch.round(qw.value / qw.scale).detach().numpy()


def _quiet(*_):
    pass


# -- a briefly trained mixed model, its run dir, export and build (module-scoped: built once) -------------
@pytest.fixture(scope="module")
def train_frames(small_file):
    with RadioMLFile(small_file) as ds:
        idx = ds.split().train[::15][:256]
        x = torch.from_numpy(np.ascontiguousarray(ds.read(idx).transpose(0, 2, 1)))
        return x, torch.from_numpy(ds.labels[idx]).long()


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, train_frames):
    """A run directory with model.pt: the mixed model after 20 Adam steps on real synthetic frames."""
    from train.config import TrainConfig
    from train.saved_model import save_model

    torch.manual_seed(0)
    x, y = train_frames
    model = build_vgg10(MIXED).train()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is faster than two on a shared machine
    try:
        for step in range(20):
            b = slice((step * 64) % len(x), (step * 64) % len(x) + 64)
            loss = torch.nn.functional.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    run = tmp_path_factory.mktemp("mixed_run")
    save_model(model, MIXED, TrainConfig(model=MIXED).to_dict(), run / "model.pt")
    return run, model


@pytest.fixture(scope="module")
def exported(tmp_path_factory, small_file, mixed_run):
    from export.config import ExportConfig
    from export.to_finn import export

    run, _ = mixed_run
    out = tmp_path_factory.mktemp("exp") / "mixed"
    return export(ExportConfig(run=str(run), out=str(out), data=str(small_file), check_frames=12), log=_quiet)


@pytest.fixture(scope="module")
def built(tmp_path_factory, exported):
    from build.config import BuildConfig
    from build.flow import build

    out = tmp_path_factory.mktemp("b") / "mixed"
    return build(BuildConfig(export_dir=str(exported), out=str(out), board="ZCU104", target_fps=20_000, fit="lut"),
                 log=_quiet)  # thresholds inside the MVAUs: each layer's datatypes in one node


# -- 1. the model, the export and the FINN build carry every layer's own bits ------------------------------
def test_trained_mixed_model_has_each_layers_bits(mixed_run):
    run, model = mixed_run
    layers = _weight_layers(model)
    assert [int(m.quant_weight().bit_width) for m in layers] == list(W)
    acts = [m for m in model.modules() if isinstance(m, qnn.QuantReLU)]
    assert [int(m.act_quant.bit_width()) for m in acts] == list(A)
    assert int(model[0].act_quant.bit_width()) == INPUT_BITS
    for m, b in zip(layers, W):  # narrow-range signed integers, the per-tensor max on the range's edge
        assert np.abs(_int_weights(m)).max() == 2 ** (b - 1) - 1
    # the training moved BatchNorm and the activation scales away from their initial values
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert all(not torch.allclose(bn.running_var, torch.ones_like(bn.running_var)) for bn in bns)
    assert all(not torch.allclose(bn.weight, torch.ones_like(bn.weight)) for bn in bns)
    scales = [float(m.act_quant.scale()) for m in acts]
    assert len(set(scales)) == len(scales)


def test_save_and_load_keep_the_per_layer_bits(mixed_run, train_frames):
    from train.saved_model import load_model

    run, model = mixed_run
    saved = torch.load(run / "model.pt", weights_only=True)
    assert saved["config"]["model"]["layer_weight_bits"] == list(W)
    assert saved["config"]["model"]["layer_act_bits"] == list(A)
    loaded, cfg, _ = load_model(run)
    assert cfg == MIXED and cfg.weight_bits_each == W and cfg.act_bits_each == A
    assert cfg.bits_label() == "5/w2345678345/a234567834"
    assert [int(m.quant_weight().bit_width) for m in _weight_layers(loaded)] == list(W)
    x = train_frames[0][:16]
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_mixed_model_exports_with_every_check(exported, mixed_run):
    from qonnx.core.modelwrapper import ModelWrapper

    rep = assert_every_stage_agrees(exported)
    io = json.loads((exported / "io.json").read_text())
    assert io["input_dtype"] == f"INT{INPUT_BITS}" and io["input_quant"]["bits"] == INPUT_BITS
    assert io["model_config"]["layer_weight_bits"] == list(W) and io["model_config"]["layer_act_bits"] == list(A)
    # the QONNX graph: each Conv/MatMul/Gemm's weight Quant has its layer's bits, the activations theirs
    q = ModelWrapper(str(exported / "model_qonnx.onnx"))
    wq = [q.find_producer(n.input[1]) for n in q.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    assert [int(q.get_initializer(n.input[3])) for n in wq] == list(W)
    aq = [n for n in q.graph.node if n.op_type == "Quant" and q.get_initializer(n.input[0]) is None]
    assert [int(q.get_initializer(n.input[3])) for n in aq] == [INPUT_BITS, *A]
    # the report's cost is the one train computes for the same model
    assert rep["cost"]["cost"] == pytest.approx(model_cost(mixed_run[1]).cost, rel=1e-12)


def _check_mvau_datatypes(path, mixed_model, minimized: bool):
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    m = ModelWrapper(str(path))
    mvaus = [n for n in m.graph.node if n.op_type.startswith("MVAU")]
    assert len(mvaus) == 10, [n.op_type for n in m.graph.node]
    in_bits = [f"INT{INPUT_BITS}"] + [f"UINT{a}" for a in A]
    for i, (node, layer) in enumerate(zip(mvaus, _weight_layers(mixed_model))):
        op = getCustomOp(node)
        where = f"{path.name}: {node.name} (layer {i})"
        assert op.get_nodeattr("weightDataType") == f"INT{W[i]}", where
        assert DataType[op.get_nodeattr("weightDataType")].bitwidth() == W[i], where
        assert op.get_nodeattr("inputDataType") == in_bits[i], where
        assert str(m.get_tensor_datatype(node.input[0])) == in_bits[i], where
        w = m.get_initializer(node.input[1])
        torch_w = _int_weights(layer)
        # the same integers (up to FINN's reordering): count, non-zeros, range
        assert w.size == torch_w.size and np.count_nonzero(w) == np.count_nonzero(torch_w), where
        assert np.abs(w).max() == 2 ** (W[i] - 1) - 1, where
        if i < 9:  # thresholds: 2^a - 1 per channel, output UINTa
            assert op.get_nodeattr("noActivation") == 0, where
            assert m.get_initializer(node.input[2]).shape[1] == 2 ** A[i] - 1, where
            assert op.get_nodeattr("outputDataType") == f"UINT{A[i]}", where
            assert str(m.get_tensor_datatype(node.output[0])) == f"UINT{A[i]}", where
        else:  # the logits layer: no activation, an accumulator-wide output
            assert op.get_nodeattr("noActivation") == 1, where
        if minimized:  # step_minimize sized the accumulator: at most in + w bits + log2(MW) + sign
            acc = DataType[op.get_nodeattr("accDataType")].bitwidth()
            in_b = int(in_bits[i].lstrip("UINT"))
            assert acc <= in_b + W[i] + int(np.ceil(np.log2(op.get_nodeattr("MW")))) + 1, where


def test_mixed_model_builds_with_each_layers_datatypes(built, mixed_run):
    r = json.loads((built / "build_report.json").read_text())
    assert r["verification"] == {"streamlined_python": "SUCCESS", "hw_layers_python": "SUCCESS"}
    assert r["meets_target"] and r["fits"]
    assert r["io_shape_dict"]["idt"] == [f"INT{INPUT_BITS}"]
    assert len([layer for layer in r["layers"] if layer["node"].startswith("MVAU")]) == 10
    model = mixed_run[1]
    _check_mvau_datatypes(built / "intermediate_models" / "02_step_to_hw.onnx", model, minimized=False)
    _check_mvau_datatypes(built / "model_dataflow.onnx", model, minimized=True)


def test_driver_emulation_of_the_mixed_build_matches_pytorch(built, mixed_run, small_file):
    from driver.validate import validate

    m = validate(built, small_file, batch_size=64, emulate=True, limit=128)
    with RadioMLFile(small_file) as ds:
        idx = np.array(m["frame_indices"])
        x = torch.from_numpy(np.ascontiguousarray(ds.read(idx).transpose(0, 2, 1)))
    with torch.no_grad():
        ref = mixed_run[1](x).argmax(1).numpy()
    assert m["frames"] == len(ref) == 128
    assert np.array_equal(np.array(m["predictions"]), ref)


# -- 2. the challenge cost is the per-layer sum --------------------------------------------------------
def _by_hand(model, cfg: ModelConfig):
    """(bops, weight bits, macs, weights) summed layer by layer: dense and sparsity-discounted."""
    in_bits = [cfg.input_bits, *cfg.act_bits_each]
    dense, sparse = np.zeros(4), np.zeros(4)
    for i, (layer, wb) in enumerate(zip(_weight_layers(model), cfg.weight_bits_each)):
        pix = FRAME_LENGTH >> i if i < cfg.conv_blocks else 1  # outputs per weight: conv length, 1 for dense
        w = _int_weights(layer)
        for acc, n in ((dense, w.size), (sparse, np.count_nonzero(w))):
            acc += [n * pix * wb * in_bits[i], n * wb, n * pix, n]
    return dense, sparse


def _figures(c):
    return [c.bops, c.weight_bits, c.macs, c.weights]


def test_mixed_cost_is_the_sum_over_layers(mixed_run):
    model = mixed_run[1]
    dense, sparse = _by_hand(model, MIXED)
    assert _figures(model_cost(model, discount_sparsity=False)) == dense.tolist()
    assert _figures(model_cost(model)) == pytest.approx(sparse.tolist(), rel=1e-12)
    assert dense[2] == 8 * 2 * 3 * 1024 + 8 * 8 * 3 * (1024 - 16) + 64 * 16 + 16 * 16 + 16 * 24  # 244,352 MACs


@pytest.fixture(scope="module")
def mixed_dense_cost(mixed_run):
    return model_cost(mixed_run[1], discount_sparsity=False)


@pytest.mark.parametrize("kind,layer", [("weight", 1), ("weight", 4), ("weight", 7), ("weight", 9),
                                        ("act", 1), ("act", 8)])
def test_one_bit_less_in_one_layer_lowers_the_cost_by_that_layer_alone(mixed_run, mixed_dense_cost, kind, layer):
    """The same trained weights with one layer's bits lowered by one."""
    model = mixed_run[1]
    if kind == "weight":
        bits = list(W)
        bits[layer] -= 1
        cfg = dataclasses.replace(MIXED, layer_weight_bits=tuple(bits))
    else:
        bits = list(A)
        bits[layer] -= 1
        cfg = dataclasses.replace(MIXED, layer_act_bits=tuple(bits))
    low = build_vgg10(cfg)
    low.load_state_dict(model.state_dict())
    low.eval()
    a, b = mixed_dense_cost, model_cost(low, discount_sparsity=False)
    layers = _weight_layers(model)
    macs = [m.weight.numel() * (FRAME_LENGTH >> i if i < 7 else 1) for i, m in enumerate(layers)]
    if kind == "weight":  # weight bits drop by the layer's weight count, bit-ops by its MACs x input bits
        in_bits = [INPUT_BITS, *A][layer]
        assert a.weight_bits - b.weight_bits == layers[layer].weight.numel()
        assert a.bops - b.bops == macs[layer] * in_bits
    else:  # an activation feeds the next weight layer only: its MACs x weight bits
        assert a.weight_bits == b.weight_bits
        assert a.bops - b.bops == macs[layer + 1] * W[layer + 1]
    assert (a.macs, a.weights) == (b.macs, b.weights)
    # sparsity-discounted, the lowered model is still its own per-layer sum (rounding may zero more weights)
    _, sparse = _by_hand(low, cfg)
    assert _figures(model_cost(low)) == pytest.approx(sparse.tolist(), rel=1e-12)


# -- 3. ModelConfig validation and round trips ---------------------------------------------------------
@pytest.mark.parametrize("field,value", [
    ("layer_weight_bits", (4,) * 9), ("layer_weight_bits", (4,) * 11), ("layer_weight_bits", ()),
    ("layer_weight_bits", (4, 4, 4, 1, 4, 4, 4, 4, 4, 4)), ("layer_weight_bits", (4,) * 9 + (0,)),
    ("layer_act_bits", (4,) * 8), ("layer_act_bits", (4,) * 10), ("layer_act_bits", (4,) * 8 + (0,)),
    ("layer_act_bits", (4, -1, 4, 4, 4, 4, 4, 4, 4)),
])
def test_bad_per_layer_bits_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"model\.{field} must be"):
        ModelConfig(4, 4, 4, **{field: value})


def test_one_bit_activations_are_refused_by_the_config():
    """Brevitas' QCDQ export and qonnx's cost take no 1-bit (bipolar) activation."""
    with pytest.raises(ValueError, match=r"model\.layer_act_bits"):
        ModelConfig(4, 4, 4, layer_act_bits=(4, 1, 4, 4, 4, 4, 4, 4, 4))
    for field in ("input_bits", "weight_bits", "act_bits"):
        with pytest.raises(ValueError, match=f"model.{field}"):
            ModelConfig(**{"input_bits": 4, "weight_bits": 4, "act_bits": 4, field: 1})


def test_per_layer_bits_override_the_scalars_and_label_the_model():
    cfg = ModelConfig(8, 8, 8, layer_weight_bits=W)
    assert cfg.weight_bits_each == W and cfg.act_bits_each == (8,) * 9 and not cfg.uniform_bits
    assert cfg.bits_label() == "8/w2345678345/a888888888"
    same = ModelConfig(4, 8, 8, layer_weight_bits=[4] * 10, layer_act_bits=[4] * 9)
    assert same.uniform_bits and same.bits_label() == "4/4/4"
    assert ModelConfig(4, 4, 4).bits_label() == "4/4/4" and ModelConfig(4, 4, 4).weight_bits_each == (4,) * 10
    assert MIXED.layer_weight_bits == W and isinstance(ModelConfig(layer_weight_bits=list(W)).layer_weight_bits, tuple)


def test_to_dict_round_trip_through_json_keeps_the_bits():
    d = json.loads(json.dumps(MIXED.to_dict()))
    assert d["layer_weight_bits"] == list(W) and d["layer_act_bits"] == list(A)
    back = ModelConfig(**d)
    assert back == MIXED and hash(back) == hash(MIXED) and back.bits_label() == MIXED.bits_label()
    plain = ModelConfig(4, 4, 4).to_dict()
    assert plain["layer_weight_bits"] is None and ModelConfig(**plain) == ModelConfig(4, 4, 4)


def test_train_config_takes_per_layer_bits_from_flags_and_json(tmp_path):
    from train.config import add_config_flags, config_from_args, load_config

    p = argparse.ArgumentParser()
    add_config_flags(p)
    a = p.parse_args(["--model.input_bits", "5", "--model.layer_weight_bits", ",".join(map(str, W)),
                      "--model.layer_act_bits", ",".join(map(str, A))])
    cfg = config_from_args(a)
    assert cfg.model.weight_bits_each == W and cfg.model.act_bits_each == A and cfg.model.input_bits == 5
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": MIXED.to_dict()}))
    assert load_config(path).model == MIXED
    with pytest.raises(ValueError, match=r"model\.layer_weight_bits"):
        config_from_args(p.parse_args(["--model.layer_weight_bits", "4,4,4"]))
