"""The golden model's onnxruntime session, set up one way everywhere.

The export's QCDQ graph (QuantizeLinear/DequantizeLinear/Clip) run by plain onnxruntime is
the reference every stage is checked against and what the driver's emulated board runs.
It must run at ORT_ENABLE_BASIC: ORT_ENABLE_ALL fuses QDQ pairs into integer kernels,
which round differently. onnxruntime is imported only when a session is made (a board
running the real accelerator has no need of it).
"""
from __future__ import annotations


def golden_session(path):
    """An onnxruntime CPU session of the QCDQ model at `path`, basic optimisations only, quiet."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
