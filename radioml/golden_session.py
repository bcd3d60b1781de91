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


def golden_session(path):
    """An onnxruntime CPU session of the QCDQ model at `path`, basic optimisations only, quiet."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
