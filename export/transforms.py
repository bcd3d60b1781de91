"""The export's own graph edits, as qonnx Transformations named for their effect.

Everything else in the export is FINN's or qonnx's own steps; these fill the gaps
between a 1D Brevitas model and FINN's 2D dataflow flow, and between a QONNX file and
the golden model:

  SplitOffInputQuant       the accelerator takes integers: the Quant fed by the graph input
                           becomes Mul(scale) on an INTn input (the host quantises, radioml.quant)
  AbsorbPolyphaseIntoInput a polyphase front end's Reshape/Transpose/Reshape after the input scale is a
                           reshape of the channels-last frame: the graph takes the 2P-channel frame
  MarkMultiThresholdsNCW   ConvertQONNXtoFINN guesses channels-last (NWC) for per-tensor
                           thresholds on 3D tensors; these tensors are (N, C, W)
  CompleteMaxPoolDilations Change3DTo4DTensors leaves MaxPool's `dilations` 1-long on 4D tensors
  MakeBatchDynamic         a batch-1 QONNX file's QCDQ model takes any batch in onnxruntime
"""
from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.transformation.base import Transformation

from radioml.quant import InputQuant


def input_quant_of(model) -> tuple[InputQuant, object]:
    """The QONNX graph's input quantiser parameters and node (the Quant fed by the graph input)."""
    from qonnx.custom_op.registry import getCustomOp

    node = model.find_consumer(model.graph.input[0].name)
    if node is None or node.op_type != "Quant":
        raise ValueError(f"expected the input to feed a Quant node, found {node.op_type if node else 'nothing'}")
    op = getCustomOp(node)
    scale, zp, bits = (model.get_initializer(node.input[i]) for i in (1, 2, 3))
    if scale is None or np.asarray(scale).size != 1:
        raise ValueError("the input quantiser must have one constant scale")
    iq = InputQuant(float(np.asarray(scale).item()), float(np.asarray(zp).item()), int(np.asarray(bits).item()),
                    bool(op.get_nodeattr("signed")), bool(op.get_nodeattr("narrow")), op.get_nodeattr("rounding_mode"))
    return iq, node


class SplitOffInputQuant(Transformation):
    """Replace the input Quant by Mul(scale) and declare the graph input INTn: the graph then
    takes the integers the host quantiser produces."""

    def apply(self, model):
        from qonnx.core.datatype import DataType

        iq, node = input_quant_of(model)
        if iq.zero_point != 0:
            raise ValueError("input quantiser with a zero point is not supported")
        scale_name = model.make_new_valueinfo_name()
        model.set_initializer(scale_name, np.array(iq.scale, dtype=np.float32))
        mul = helper.make_node("Mul", [node.input[0], scale_name], [node.output[0]], name="InputScale")
        g = model.graph
        idx = list(g.node).index(node)
        g.node.remove(node)
        g.node.insert(idx, mul)
        model.set_tensor_datatype(g.input[0].name, DataType[iq.finn_dtype])
        return model, False


class AbsorbPolyphaseIntoInput(Transformation):
    """Input -> Mul(scale) -> Reshape (1, C, L/P, P) -> Transpose (0, 3, 1, 2) -> Reshape (1, PC, L/P), the
    polyphase front end (train/model.py), becomes a (1, PC, L/P) input -> Mul(scale): in channels-last order
    the two inputs are the same bytes, so the host and the accelerator's input stream are unchanged and FINN
    sees a plain 1D CNN with PC input channels. Any other graph is left as it is."""

    def apply(self, model):
        g = model.graph
        mul = model.find_consumer(g.input[0].name)
        chain = [mul]
        for op in ("Reshape", "Transpose", "Reshape"):
            nxt = model.find_consumer(chain[-1].output[0]) if chain[-1] is not None else None
            chain.append(nxt if nxt is not None and nxt.op_type == op else None)
        if mul is None or mul.op_type != "Mul" or None in chain:
            return model, False
        _, r1, tr, r2 = chain
        shape, scale = model.get_tensor_shape(g.input[0].name), model.get_initializer(mul.input[1])
        if len(shape) != 3 or scale is None or np.asarray(scale).size != 1 or \
                len(model.find_consumers(mul.output[0])) != 1:
            return model, False
        c, n = shape[1:]
        mid, out = model.get_tensor_shape(r1.output[0]), model.get_tensor_shape(r2.output[0])
        perm = next((list(a.ints) for a in tr.attribute if a.name == "perm"), None)
        if len(mid) != 4 or mid[:2] != [1, c] or mid[2] * mid[3] != n or perm != [0, 3, 1, 2] or \
                out != [1, mid[3] * c, mid[2]]:
            return model, False
        for node in (r1, tr, r2):
            g.node.remove(node)
        for consumer in model.find_consumers(r2.output[0]):
            for i, name in enumerate(consumer.input):
                if name == r2.output[0]:
                    consumer.input[i] = mul.output[0]
        model.set_tensor_shape(g.input[0].name, out)
        model.set_tensor_shape(mul.output[0], out)
        return model, False


class MarkMultiThresholdsNCW(Transformation):
    """Set data_layout NCW on MultiThresholds over 3D tensors (our 1D convs are channels-first)."""

    def apply(self, model):
        from qonnx.custom_op.registry import getCustomOp

        for n in model.graph.node:
            if n.op_type == "MultiThreshold" and len(model.get_tensor_shape(n.input[0])) == 3:
                getCustomOp(n).set_nodeattr("data_layout", "NCW")
        return model, False


class CompleteMaxPoolDilations(Transformation):
    """Give 4D MaxPools a 2-long `dilations` (Change3DTo4DTensors extends kernel and strides only)."""

    def apply(self, model):
        for n in model.graph.node:
            if n.op_type != "MaxPool":
                continue
            for a in n.attribute:
                if a.name == "dilations" and len(a.ints) == 1:
                    a.ints.append(1)
        return model, False


class MakeBatchDynamic(Transformation):
    """Graph input and output take any batch (dim_param "batch"), as the golden model in onnxruntime
    is run on many frames at once: shape annotations inside are dropped (they fix batch 1), and a
    Reshape to a constant shape that fixes batch 1 gets -1 there instead (a QONNX file is batch 1)."""

    def apply(self, model):
        g = model.graph
        for n in g.node:
            if n.op_type == "Reshape":
                shape, out = model.get_initializer(n.input[1]), model.get_tensor_shape(n.output[0])
                if shape is not None and shape.size > 1 and shape[0] == 1 and out is not None and -1 not in out:
                    model.set_initializer(n.input[1], np.array([-1] + list(out[1:]), dtype=shape.dtype))
        for t in list(g.input) + list(g.output):
            dims = t.type.tensor_type.shape.dim
            if dims:
                dims[0].Clear()
                dims[0].dim_param = "batch"
        del g.value_info[:]
        return model, False
