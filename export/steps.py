"""Export stages, each a plain function (artifact, ExportConfig) -> artifact, as FINN's builder steps.

The flow is a list (`DEFAULT_STEPS`); every FINN-side step saves its model under
`<out>/steps/NN_<name>.onnx` so the checks can run (and a user can open) every
intermediate graph. Order and why:

  export_qonnx        Brevitas -> QONNX (batch 1: FINN's dataflow is per frame), qonnx cleanup
  export_qcdq         Brevitas -> QCDQ ONNX, dynamic batch: the golden model plain onnxruntime runs
  integer_input       split the input quantiser off: the accelerator takes integers, the host
                      quantises (radioml.quant), as finn-examples' VGG10 does
  qonnx_to_finn       ConvertQONNXtoFINN (Quant -> MultiThreshold), then FINN's tidy-up
  to_4d               finn-plus's conv1d.step_pre_streamline (Change3DTo4DTensors only works once
                      no Quant node is left, hence after the conversion), plus two 1D fixes:
                      MaxPool `dilations` left 1-long, and MultiThreshold layouts that the
                      conversion guessed as channels-last (NWC) for per-tensor scales
  streamline          FINN's step_streamline sequence (streamline, lower convs, NHWC max-pools)
  channels_last       MakeInputChannelsLast + absorb the transposes: input (1, 1024, 1, 2)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from radioml.quant import InputQuant
from train.cost import quiet_export


def finn_settings():
    """finn-plus needs its global settings even for pure graph transformations."""
    from build.finn_env import prepare

    prepare()


def save_step(model, cfg, index: int, name: str):
    path = Path(cfg.work_dir) / "steps" / f"{index:02d}_{name}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    return model


def step_export_qonnx(model, cfg):
    """Brevitas model -> cleaned QONNX ModelWrapper (also saved as model_qonnx.onnx)."""
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model
    import torch

    path = Path(cfg.work_dir) / "model_qonnx.onnx"
    with quiet_export():
        export_qonnx(model, torch.zeros(1, 2, 1024), str(path), dynamo=False,
                     input_names=["input"], output_names=["logits"])
        m = cleanup_model(ModelWrapper(str(path)))
    m.save(str(path))
    return m


def step_export_qcdq(model, cfg) -> Path:
    """Brevitas model -> QCDQ ONNX with a dynamic batch dimension (onnxruntime golden model)."""
    from brevitas.export import export_onnx_qcdq
    import torch

    path = Path(cfg.work_dir) / "model_qcdq.onnx"
    with quiet_export():
        export_onnx_qcdq(model, torch.zeros(1, 2, 1024), str(path), dynamo=False,
                         input_names=["input"], output_names=["logits"],
                         dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                         keep_initializers_as_inputs=False)
    return path


def input_quant_of(model) -> tuple[InputQuant, object]:
    """The QONNX graph's input quantiser parameters and node (the Quant fed by the graph input)."""
    from qonnx.custom_op.registry import getCustomOp

    inp = model.graph.input[0].name
    node = model.find_consumer(inp)
    if node is None or node.op_type != "Quant":
        raise ValueError(f"expected the input to feed a Quant node, found {node.op_type if node else 'nothing'}")
    op = getCustomOp(node)
    scale = model.get_initializer(node.input[1])
    zp = model.get_initializer(node.input[2])
    bits = model.get_initializer(node.input[3])
    if scale is None or np.asarray(scale).size != 1:
        raise ValueError("the input quantiser must have one constant scale")
    iq = InputQuant(float(np.asarray(scale).item()), float(np.asarray(zp).item()), int(np.asarray(bits).item()),
                    bool(op.get_nodeattr("signed")), bool(op.get_nodeattr("narrow")),
                    op.get_nodeattr("rounding_mode"))
    return iq, node


def step_integer_input(model, cfg):
    """Replace the input Quant node by a Mul(scale) on an integer graph input."""
    from onnx import helper
    from qonnx.core.datatype import DataType

    iq, node = input_quant_of(model)
    if iq.zero_point != 0:
        raise ValueError("input quantiser with a zero point is not supported")
    g = model.graph
    scale_name = model.make_new_valueinfo_name()
    model.set_initializer(scale_name, np.array(iq.scale, dtype=np.float32))
    mul = helper.make_node("Mul", [node.input[0], scale_name], [node.output[0]], name="InputScale")
    idx = list(g.node).index(node)
    g.node.remove(node)
    g.node.insert(idx, mul)
    model.set_tensor_datatype(g.input[0].name, DataType[iq.finn_dtype])
    cfg.input_quant = iq
    return model


def step_qonnx_to_finn(model, cfg):
    finn_settings()
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (GiveReadableTensorNames, GiveUniqueNodeNames,
                                              RemoveStaticGraphInputs)
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    model = model.transform(ConvertQONNXtoFINN())
    for t in (InferShapes(), FoldConstants(), GiveUniqueNodeNames(), GiveReadableTensorNames(),
              InferDataTypes(), RemoveStaticGraphInputs()):
        model = model.transform(t)
    return model


def step_to_4d(model, cfg):
    finn_settings()
    from finn.builder.custom_step_library.conv1d import step_pre_streamline
    from qonnx.custom_op.registry import getCustomOp

    for n in model.graph.node:  # conversion guessed NWC for per-tensor scales on (N, C, W) tensors
        if n.op_type == "MultiThreshold" and len(model.get_tensor_shape(n.input[0])) == 3:
            getCustomOp(n).set_nodeattr("data_layout", "NCW")
    model = step_pre_streamline(model, None)  # Change3DTo4DTensors + AbsorbScalarMulAddIntoTopK
    for n in model.graph.node:
        if n.op_type == "MaxPool":
            for a in n.attribute:
                if a.name == "dilations" and len(a.ints) == 1:  # left 1-long by Change3DTo4DTensors
                    a.ints.append(1)
    return model


def step_streamline(model, cfg):
    """The sequence of FINN's builder step_streamline (its verification hook needs a build dir)."""
    finn_settings()
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC
    from qonnx.transformation.general import RemoveUnusedTensors
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    model = model.transform(absorb.AbsorbScalarBiasIntoMultiThreshold())
    model = model.transform(Streamline())
    model = model.transform(LowerConvsToMatMul())
    model = model.transform(MakeMaxPoolNHWC())
    model = model.transform(absorb.AbsorbTransposeIntoMultiThreshold())
    model = model.transform(MakeMaxPoolNHWC())
    model = model.transform(absorb.AbsorbConsecutiveTransposes())
    model = model.transform(Streamline())
    model = model.transform(absorb.AbsorbScalarMulAddIntoTopK())
    model = model.transform(InferDataLayouts())
    model = model.transform(RemoveUnusedTensors())
    return model


def step_channels_last(model, cfg):
    finn_settings()
    import finn.transformation.streamline.absorb as absorb
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.make_input_chanlast import MakeInputChannelsLast

    model = model.transform(MakeInputChannelsLast())
    model = model.transform(absorb.AbsorbConsecutiveTransposes())
    for t in (InferShapes(), InferDataTypes(), InferDataLayouts(), GiveUniqueNodeNames(), GiveReadableTensorNames()):
        model = model.transform(t)
    return model


# (name, function, input layout of the saved graph) for the FINN-side steps
FINN_STEPS = [
    ("qonnx_to_finn", step_qonnx_to_finn, "NCW"),
    ("to_4d", step_to_4d, "NCW1"),
    ("streamline", step_streamline, "NCW1"),
    ("channels_last", step_channels_last, "NW1C"),
]


def to_layout(x_ncw: np.ndarray, layout: str) -> np.ndarray:
    """(N, 2, 1024) frames in the input layout a step's graph takes."""
    if layout == "NCW":
        return x_ncw
    if layout == "NCW1":
        return x_ncw[..., None]
    if layout == "NW1C":
        return np.ascontiguousarray(np.transpose(x_ncw, (0, 2, 1))[:, :, None, :])
    raise ValueError(f"unknown layout {layout}")
