"""The export's own graph edits (export/transforms.py), each on a tiny graph."""
import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

from export.transforms import CompleteMaxPoolDilations, MarkMultiThresholdsNCW, SplitOffInputQuant, input_quant_of


def _model(nodes, inp_shape, out_shape, inits=()):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, inp_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])
    m = ModelWrapper(qonnx_make_model(g))
    for name, value in inits:
        m.set_initializer(name, np.asarray(value, dtype=np.float32))
    return m


def _input_quant_graph(zero_point=0.0):
    q = helper.make_node("Quant", ["x", "s", "z", "b"], ["q"], domain="qonnx.custom_op.general",
                         signed=1, narrow=0, rounding_mode="ROUND")
    relu = helper.make_node("Relu", ["q"], ["y"])
    m = _model([q, relu], [1, 2, 8], [1, 2, 8], [("s", 0.25), ("z", zero_point), ("b", 4.0)])
    m.set_tensor_shape("q", [1, 2, 8])
    return m


def test_split_off_input_quant_takes_the_integers_the_host_makes():
    m = _input_quant_graph()
    iq, _ = input_quant_of(m)
    assert (iq.scale, iq.bits, iq.signed, iq.finn_dtype) == (0.25, 4, True, "INT4")
    x = np.random.default_rng(0).uniform(-2.5, 2.5, (1, 2, 8)).astype(np.float32)
    want = execute_onnx(m, {"x": x})["y"]
    ints = iq.quantize(x)
    t = m.transform(SplitOffInputQuant())
    assert [n.op_type for n in t.graph.node] == ["Mul", "Relu"]
    assert t.get_tensor_datatype("x") == DataType["INT4"]
    assert np.array_equal(execute_onnx(t, {"x": ints.astype(np.float32)})["y"], want)
    assert [n.op_type for n in m.graph.node] == ["Quant", "Relu"]  # transform works on a copy


def test_split_off_input_quant_refuses_a_zero_point():
    with pytest.raises(ValueError, match="zero point"):
        _input_quant_graph(zero_point=1.0).transform(SplitOffInputQuant())


def test_multithresholds_on_3d_tensors_become_ncw_and_4d_ones_stay():
    mt3 = helper.make_node("MultiThreshold", ["x", "t"], ["h"], domain="qonnx.custom_op.general")
    r = helper.make_node("Reshape", ["h", "shape"], ["h4"])
    mt4 = helper.make_node("MultiThreshold", ["h4", "t"], ["y"], domain="qonnx.custom_op.general")
    m = _model([mt3, r, mt4], [1, 2, 8], [1, 2, 8, 1], [("t", [[0.0], [0.0]]), ("shape", [1, 2, 8, 1])])
    m.set_initializer("shape", np.array([1, 2, 8, 1], dtype=np.int64))
    m.set_tensor_shape("h", [1, 2, 8])
    m.set_tensor_shape("h4", [1, 2, 8, 1])
    t = m.transform(MarkMultiThresholdsNCW())
    layouts = [getCustomOp(n).get_nodeattr("data_layout") for n in t.graph.node if n.op_type == "MultiThreshold"]
    assert layouts[0] == "NCW" and layouts[1] == getCustomOp(mt4).get_nodeattr("data_layout")


def test_maxpool_dilations_are_completed_to_two_dims_only_where_short():
    short = helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[1, 2], strides=[1, 2], dilations=[1])
    full = helper.make_node("MaxPool", ["a"], ["y"], kernel_shape=[1, 2], strides=[1, 2], dilations=[1, 1])
    m = _model([short, full], [1, 2, 1, 8], [1, 2, 1, 2])
    m.set_tensor_shape("a", [1, 2, 1, 4])
    t = m.transform(CompleteMaxPoolDilations())
    dil = [list(next(a.ints for a in n.attribute if a.name == "dilations")) for n in t.graph.node]
    assert dil == [[1, 1], [1, 1]]
    x = np.arange(16, dtype=np.float32).reshape(1, 2, 1, 8)
    assert np.array_equal(execute_onnx(t, {"x": x})["y"], x.reshape(1, 2, 1, 2, 4).max(-1))
