"""Export stages, each a plain function (artifact, ExportConfig) -> artifact, as FINN's builder steps.

The FINN-side flow is a list (`FINN_STEPS`), run by export/runner.py, which saves every step's
model as `<out>/steps/NN_<name>.onnx` so the checks can run (and a user can open) every
intermediate graph; the build continues the same flow (build/flow.py). Order and why:

  export_qonnx        Brevitas -> QONNX (batch 1: FINN's dataflow is per frame), qonnx cleanup
  export_qcdq         Brevitas -> QCDQ ONNX, dynamic batch: the golden model plain onnxruntime runs
    or, for a QONNX file (a model this project did not build):
  load_qonnx          the file, qonnx cleanup
  qcdq_from_qonnx     qonnx's QuantToQCDQ, batch made dynamic: the same golden model
  integer_input       split the input quantiser off: the accelerator takes integers, the host
                      quantises (radioml.quant), as finn-examples' VGG10 does
  qonnx_to_finn       FINN's step_qonnx_to_finn (Quant -> MultiThreshold) and step_tidy_up
  to_4d               finn-plus's conv1d.step_pre_streamline (Change3DTo4DTensors only works once
                      no Quant node is left, hence after the conversion), plus two 1D fixes:
                      MaxPool `dilations` left 1-long, and MultiThreshold layouts that the
                      conversion guessed as channels-last (NWC) for per-tensor scales
  streamline          FINN's step_streamline (streamline, lower convs, NHWC max-pools)
  channels_last       MakeInputChannelsLast + absorb the transposes: input (1, 1024, 1, 2), or
                      (1, 1024/P, 1, 2P) for a polyphase front end (the same bytes)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from train.onnx_export import export_qcdq_file, export_qonnx_file

from .transforms import AbsorbPolyphaseIntoInput, CompleteMaxPoolDilations, MarkMultiThresholdsNCW, \
    SplitOffInputQuant


def finn_settings():
    """finn-plus needs its global settings even for pure graph transformations."""
    from .finn_env import prepare

    prepare()


def step_export_qonnx(model, cfg):
    """Brevitas model -> cleaned QONNX ModelWrapper (also saved as model_qonnx.onnx)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    path = export_qonnx_file(model, Path(cfg.work_dir) / "model_qonnx.onnx",
                             input_names=["input"], output_names=["logits"])
    m = cleanup_model(ModelWrapper(str(path)))
    m.save(str(path))
    return m


def step_export_qcdq(model, cfg) -> Path:
    """Brevitas model -> QCDQ ONNX with a dynamic batch dimension (onnxruntime golden model)."""
    return export_qcdq_file(model, Path(cfg.work_dir) / "model_qcdq.onnx")


def step_load_qonnx(path, cfg):
    """A QONNX file -> cleaned QONNX ModelWrapper (saved as model_qonnx.onnx)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    m = cleanup_model(ModelWrapper(str(path)))
    m.save(str(Path(cfg.work_dir) / "model_qonnx.onnx"))
    return m


def step_qcdq_from_qonnx(model, cfg) -> Path:
    """QONNX -> QCDQ by qonnx's QuantToQCDQ, any batch: the golden model onnxruntime runs. A Quant that has no
    QCDQ form (over 8 bits, a zero point, per-channel scales of a 3D tensor...) is refused by name."""
    import copy

    from qonnx.transformation.qonnx_to_qcdq import QuantToQCDQ

    from .transforms import MakeBatchDynamic

    m = copy.deepcopy(model).transform(QuantToQCDQ()).transform(MakeBatchDynamic())
    left = [n.name or n.op_type for n in m.graph.node if n.op_type in ("Quant", "BipolarQuant")]
    if left:
        raise ValueError(f"{cfg.qonnx}: no QCDQ form (QuantizeLinear/Clip/DequantizeLinear) for {', '.join(left)}: "
                         f"qonnx's QuantToQCDQ takes 2..8 bits, zero point 0, one scale or one per channel")
    path = Path(cfg.work_dir) / "model_qcdq.onnx"
    m.save(str(path))
    return path


def step_integer_input(model, cfg):
    """The input quantiser split off: the graph takes integers, a polyphase front end's in its 2P-channel
    order (export/transforms.py)."""
    return model.transform(SplitOffInputQuant()).transform(AbsorbPolyphaseIntoInput())


def _finn_cfg(cfg):
    """The DataflowBuildConfig FINN's own steps read here: no outputs, no verification hooks."""
    from finn.builder.build_dataflow_config import DataflowBuildConfig

    return DataflowBuildConfig(output_dir=cfg.work_dir, generate_outputs=[], verify_steps=[])


def step_qonnx_to_finn(model, cfg):
    """FINN's step_qonnx_to_finn (qonnx cleanup, Quant -> MultiThreshold) and step_tidy_up."""
    finn_settings()
    from finn.builder.build_dataflow_steps import step_qonnx_to_finn, step_tidy_up

    return step_tidy_up(step_qonnx_to_finn(model, _finn_cfg(cfg)), _finn_cfg(cfg))


def step_to_4d(model, cfg):
    """finn-plus's conv1d.step_pre_streamline (3D -> 4D; only possible once no Quant is left),
    with the two 1D fixes of export/transforms.py around it."""
    finn_settings()
    from finn.builder.custom_step_library.conv1d import step_pre_streamline

    model = model.transform(MarkMultiThresholdsNCW())
    model = step_pre_streamline(model, _finn_cfg(cfg))
    return model.transform(CompleteMaxPoolDilations())


def step_streamline(model, cfg):
    """FINN's step_streamline."""
    finn_settings()
    from finn.builder.build_dataflow_steps import step_streamline

    return step_streamline(model, _finn_cfg(cfg))


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


# the export's FINN-side steps, from the integer-input QONNX graph to model_finn_streamlined.onnx
FINN_STEPS = [step_qonnx_to_finn, step_to_4d, step_streamline, step_channels_last]
# the input layout of each step's output graph (what the checks feed it)
INPUT_LAYOUT = {step_qonnx_to_finn: "NCW", step_to_4d: "NCW1", step_streamline: "NCW1", step_channels_last: "NW1C"}
STREAMLINED_LAYOUT = INPUT_LAYOUT[FINN_STEPS[-1]]  # model_finn_streamlined.onnx's


def polyphase(x_ncw: np.ndarray, phases: int) -> np.ndarray:
    """(N, C, L) -> (N, P*C, L/P), as train.model.Polyphase: channel k*C + c at position u is sample u*P + k."""
    n, c, length = x_ncw.shape
    return x_ncw.reshape(n, c, length // phases, phases).transpose(0, 3, 1, 2).reshape(n, phases * c,
                                                                                        length // phases)


def phases_of(model, layout: str) -> int:
    """The polyphase P of a graph's input in `layout`: its channels over the frame's 2 (1: the standard one)."""
    shape = model.get_tensor_shape(model.graph.input[0].name)
    return shape[3 if layout == "NW1C" else 1] // 2


def to_layout(x_ncw: np.ndarray, layout: str, phases: int = 1) -> np.ndarray:
    """(N, 2, 1024) frames in the input layout a step's graph takes (`phases`: its polyphase P)."""
    if phases > 1:
        x_ncw = polyphase(x_ncw, phases)
    if layout == "NCW":
        return x_ncw
    if layout == "NCW1":
        return x_ncw[..., None]
    if layout == "NW1C":
        return np.ascontiguousarray(np.transpose(x_ncw, (0, 2, 1))[:, :, None, :])
    raise ValueError(f"unknown layout {layout}")
