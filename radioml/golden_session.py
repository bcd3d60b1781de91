"""The golden model's onnxruntime session, set up one way everywhere.

The export's QCDQ graph (QuantizeLinear/DequantizeLinear/Clip) run by plain onnxruntime is
the reference every stage is checked against and what the driver's emulated board runs.
It runs at ORT_ENABLE_BASIC (constant folding: weights are quantised once) with onnxruntime's
QDQ transformers off (session.disable_quant_qdq): ORT_ENABLE_ALL fuses QDQ pairs into integer
kernels, which round differently, and even at BASIC level onnxruntime propagates Q/DQ pairs
through MaxPool and Reshape and quantises a float Conv/Gemm bias to int32 at the product of
the input and weight scales (BiasQuantization), a change of up to half that step in the
pre-activation, which moves activations across rounding boundaries. onnxruntime is imported only when a session is made (a board
running the real accelerator has no need of it).
"""
from __future__ import annotations


EXTRA_HINT = "pip install 'amc-board[emulate]' (or onnx and onnxruntime)"


class MissingPackage(RuntimeError):
    """An optional package a host-side feature needs is not installed: names it and how to install it."""


def require(module: str, feature: str):
    """Import `module` for `feature`, or fail in one line naming the package and the install extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise MissingPackage(f"{feature} needs the Python package {module}, not installed here: {EXTRA_HINT}") \
            from None


def golden_session(path):
    """An onnxruntime CPU session of the QCDQ model at `path`, basic optimisations only, quiet."""
    ort = require("onnxruntime", "running the golden model (--emulate)")

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def golden_input_scale(path) -> tuple[float, float]:
    """(scale, zero point) of the golden QCDQ model's input QuantizeLinear: what the host quantiser must match."""
    onnx = require("onnx", "checking the golden model's input quantiser (--emulate)")
    numpy_helper = require("onnx.numpy_helper", "checking the golden model's input quantiser (--emulate)")

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    q = next((n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == g.input[0].name), None)
    if q is None or q.input[1] not in consts:
        raise ValueError(f"{path}: its input is not quantised by a QuantizeLinear with a constant scale")
    zp = float(consts[q.input[2]].reshape(-1)[0]) if len(q.input) > 2 and q.input[2] in consts else 0.0
    return float(consts[q.input[1]].reshape(-1)[0]), zp
