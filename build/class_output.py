"""`--output class`: the accelerator ends in FINN's LabelSelect and streams out one class index a frame.

finn-examples' RadioML accelerator does this (1 byte a frame out instead of 24 logits); the
graph edit is FINN's and qonnx's own: InsertTopK (k=1) after the scores, FINN's
MoveMulPastAdd (s*x + b -> s*(x + b/s)) so the positive scalar scale meets the TopK, and
AbsorbScalarMulAddIntoTopK removes it (the order of the scores does not change). What is left
before the TopK is the integer accumulator plus b/s, integer when the bias was quantised at
the accumulator's scale (Brevitas' Int32Bias, as train/model.py's last layer): then the scores
are integers and FINN's InferLabelSelectLayer (in the build's step_convert_final_layers) makes
the TopK a LabelSelect. A model whose last bias is a float (no bias_quant) cannot end so; the
build refuses it.
"""
from __future__ import annotations

import numpy as np
from qonnx.transformation.base import Transformation

from radioml.artifacts import OUTPUTS  # noqa: F401 - the choices of --output


class AnnotateIntegerBiasBeforeTopK(Transformation):
    """The constant of an Add feeding the TopK, if integer-valued (to float32 noise), becomes exactly integer and is
    annotated with the smallest integer datatype: qonnx's InferDataTypes then makes the scores integer."""

    def apply(self, model):
        from qonnx.core.datatype import DataType
        from qonnx.transformation.infer_datatypes import InferDataTypes

        for topk in model.get_nodes_by_op_type("TopK"):
            add = model.find_producer(topk.input[0])
            if add is None or add.op_type != "Add":
                continue
            c = model.get_initializer(add.input[1])
            if c is None or np.abs(c - np.round(c)).max() > 1e-3:
                continue
            c = np.round(c).astype(np.float32)
            model.set_initializer(add.input[1], c)
            lo, hi = int(c.min()), int(c.max())
            model.set_tensor_datatype(add.input[1], DataType.get_smallest_possible(hi) if lo >= 0
                                      else DataType.get_smallest_possible(min(lo, -hi - 1)))
        return model.transform(InferDataTypes()), False


def end_in_class_index(model):
    """The streamlined graph ending in a TopK (k=1) over integer scores: its output is the top-1 class index."""
    from finn.transformation.streamline.absorb import AbsorbScalarMulAddIntoTopK
    from finn.transformation.streamline.reorder import MoveMulPastAdd
    from qonnx.transformation.insert_topk import InsertTopK

    model = model.transform(MoveMulPastAdd()).transform(InsertTopK(k=1)).transform(AbsorbScalarMulAddIntoTopK())
    model = model.transform(AnnotateIntegerBiasBeforeTopK())
    topk = model.get_nodes_by_op_type("TopK")[0]
    scores = model.get_tensor_datatype(topk.input[0])
    if not scores.is_integer():
        before = model.find_producer(topk.input[0])
        raise ValueError(f"--output class: the scores before the TopK are {scores.name} ({before.op_type} "
                         f"{before.name}: a float bias or a per-class scale), and FINN's LabelSelect takes integers; "
                         f"quantise the last layer's bias at the accumulator's scale (Brevitas bias_quant=Int32Bias) "
                         f"or build with --output logits")
    return model
