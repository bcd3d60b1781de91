"""Brevitas ONNX export of a trained model, the one place that calls it.

QONNX (Quant nodes; what qonnx's inference cost scores and FINN converts) and QCDQ
(QuantizeLinear/DequantizeLinear/Clip; what plain onnxruntime runs as the golden model)
are both exported here, from a deployable copy (pruning masks burnt in), quietly: the
TorchScript exporter prints progress to stdout and warns about things this model
does not do. The export stage (export/) builds on these files.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from radioml.classes import FRAME_LENGTH

from .masks import deployable_copy

INPUT_SHAPE = (1, 2, FRAME_LENGTH)  # one frame, channels first, as the model takes it


@contextlib.contextmanager
def quiet_export():
    """Silence the ONNX exporters' progress prints and warnings (they go to stdout)."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def export_qonnx_file(model: nn.Module, path, **kwargs) -> Path:
    """QONNX of a deployable copy of `model`, batch 1 (kwargs go to brevitas' export_qonnx)."""
    from brevitas.export import export_qonnx

    with quiet_export():
        export_qonnx(deployable_copy(model), torch.zeros(*INPUT_SHAPE), str(path), dynamo=False, **kwargs)
    return Path(path)


def export_qcdq_file(model: nn.Module, path) -> Path:
    """QCDQ ONNX of a deployable copy of `model`, dynamic batch, input "input", output "logits"."""
    from brevitas.export import export_onnx_qcdq

    with quiet_export():
        export_onnx_qcdq(deployable_copy(model), torch.zeros(*INPUT_SHAPE), str(path), dynamo=False,
                         input_names=["input"], output_names=["logits"],
                         dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                         keep_initializers_as_inputs=False)
    return Path(path)
