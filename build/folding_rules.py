"""FINN's folding rules: which PE/SIMD/parallel_window settings a specialised dataflow graph may take.

FINN's own folding (finn/transformation/fpgadataflow/set_folding.py) and the layers'
shape and code-generation checks in finn-plus 1.6.1 impose, and nothing in FINN enforces
for a folding JSON or a search of our own:

  divides          every folding attribute divides its dimension: MVAU MW % SIMD, MH % PE;
                   VVAU Channels % PE, kernel % SIMD; sliding-window generator, FMPadding,
                   Pool, Thresholding, LabelSelect and elementwise channels % SIMD or PE
  depthwise pair   a depthwise sliding-window generator emits its window in C/SIMD groups of
                   K x SIMD values, and the Pool/VVAU after it reads C/PE groups of K x PE
                   (finn-hlslib Pool_batch): SIMD must equal the consumer's PE, else the pool
                   takes maxima across the wrong channels and no FINN step complains; a VVAU
                   takes SIMD > 1 only with PE = Channels (the generator's limitation that
                   SetFolding documents)
  parallel window  the RTL generator's parallel_window mode needs SIMD = IFMChannels unless it
                   is depthwise (select_impl_style); for a depthwise one FINN sets it exactly
                   when the VVAU after it has SIMD > 1, and never before a Pool
  HLS SIMD         an HLS MVAU needs SIMD >= MW / 1024 (its ipgen defines)
  stream width     an HLS layer's widest stream (weights per PE included) at most
                   MAX_ALLOWED_AP_INT_W = 8191 bits (get_ap_int_max_w)
  FINN's checks    the layer's own folded shapes and cycle model evaluate without raising

Data-width converters need no rule here: with every attribute dividing its channel count,
any producer/consumer width pair is a multiple of the element width, which is all
InsertDWC's converters require.
"""
from __future__ import annotations

from dataclasses import dataclass

from radioml.cli import first_line

DEPTHWISE_CONSUMERS = ("Pool", "VVAU")


@dataclass(frozen=True)
class Violation:
    node: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.node}: {self.detail} ({self.rule})"


def base_type(op_type: str) -> str:
    """'MVAU_hls' -> 'MVAU', 'ConvolutionInputGenerator_rtl' -> 'ConvolutionInputGenerator'."""
    return op_type[:-4] if op_type.endswith(("_hls", "_rtl")) else op_type


def folding_dims(op) -> dict[str, int]:
    """Per folding attribute of a node, the dimension it must divide (FINN's divisibility rules)."""
    import numpy as np

    t = base_type(op.onnx_node.op_type)
    if t == "MVAU":
        return {"SIMD": op.get_nodeattr("MW"), "PE": op.get_nodeattr("MH")}
    if t == "VVAU":
        return {"PE": op.get_nodeattr("Channels"), "SIMD": int(np.prod(op.get_nodeattr("Kernel")))}
    if t == "ConvolutionInputGenerator":
        return {"SIMD": op.get_nodeattr("IFMChannels")}
    if t == "LabelSelect":
        return {"PE": op.get_nodeattr("Labels")}
    attrs = op.get_nodeattr_types()
    channels = next((op.get_nodeattr(k) for k in ("NumChannels", "Channels") if k in attrs), None)
    if channels is None:
        channels = int(op.get_normal_output_shape()[-1])
    return {a: int(channels) for a in ("SIMD", "PE") if a in attrs}


def is_hw_node(node) -> bool:
    """A FINN dataflow layer (abstraction, HLS or RTL), the only nodes that fold."""
    return node.domain.startswith("finn.custom_op.fpgadataflow")


def depthwise_consumer(model, node):
    """The Pool/VVAU a depthwise sliding-window generator feeds (None for any other node)."""
    from qonnx.custom_op.registry import getCustomOp

    if base_type(node.op_type) != "ConvolutionInputGenerator" or not getCustomOp(node).get_nodeattr("depthwise"):
        return None
    consumer = model.find_consumer(node.output[0])
    return consumer if consumer is not None and base_type(consumer.op_type) in DEPTHWISE_CONSUMERS else None


def node_violations(op) -> list[Violation]:
    """The rules one node's own attributes must meet (everything but the depthwise pairing)."""
    from finn.util.basic import MAX_ALLOWED_AP_INT_W

    node = op.onnx_node
    name, t = node.name, base_type(node.op_type)
    out = []
    for attr, dim in folding_dims(op).items():
        v = op.get_nodeattr(attr)
        if v < 1 or dim % v:
            out.append(Violation(name, "divides", f"{attr} {v} does not divide {dim}"))
    if out:
        return out  # the checks below assume divisibility
    if t == "ConvolutionInputGenerator" and node.op_type.endswith("_rtl") and op.get_nodeattr("parallel_window"):
        simd, ch = op.get_nodeattr("SIMD"), op.get_nodeattr("IFMChannels")
        if not op.get_nodeattr("depthwise") and simd != ch:
            out.append(Violation(name, "parallel window", f"parallel_window 1 needs SIMD = IFMChannels {ch}, "
                                                          f"not {simd}"))
    if t == "MVAU" and node.op_type.endswith("_hls") and op.get_nodeattr("SIMD") < op.get_nodeattr("MW") / 1024:
        out.append(Violation(name, "HLS SIMD", f"SIMD {op.get_nodeattr('SIMD')} < MW / 1024 = "
                                               f"{op.get_nodeattr('MW') / 1024:g}"))
    if node.op_type.endswith("_hls"):
        try:
            width = op.get_ap_int_max_w()
        except Exception as e:  # noqa: BLE001 - FINN raises when a stream is wider than it allows
            out.append(Violation(name, "stream width", first_line(e)))
        else:
            if width > MAX_ALLOWED_AP_INT_W:
                out.append(Violation(name, "stream width", f"a {width}-bit stream > {MAX_ALLOWED_AP_INT_W}"))
    if out:
        return out
    try:
        op.get_folded_input_shape()
        op.get_folded_output_shape()
        op.get_exp_cycles()
        if node.op_type.endswith("_rtl") and hasattr(op, "select_impl_style"):
            op.select_impl_style()
    except Exception as e:  # noqa: BLE001 - FINN raises AssertionError, FINNUserError, FINNInternalError, ...
        out.append(Violation(name, "FINN's checks", first_line(e)))
    return out


def pair_violations(swg_op, consumer_op) -> list[Violation]:
    """The depthwise generator/consumer rules (SIMD = PE; parallel_window as FINN's SetFolding sets it)."""
    swg, cons = swg_op.onnx_node, consumer_op.onnx_node
    simd, pe = swg_op.get_nodeattr("SIMD"), consumer_op.get_nodeattr("PE")
    out = []
    if simd != pe:
        out.append(Violation(swg.name, "depthwise pair", f"SIMD {simd} differs from {cons.name}'s PE {pe}: the "
                                                         f"generator groups its window by {simd} channels, the "
                                                         f"{base_type(cons.op_type)} reads groups of {pe}"))
    if base_type(cons.op_type) == "VVAU" and consumer_op.get_nodeattr("SIMD") > 1 and \
            pe != consumer_op.get_nodeattr("Channels"):
        out.append(Violation(cons.name, "depthwise pair", f"SIMD > 1 needs PE = Channels "
                                                          f"{consumer_op.get_nodeattr('Channels')}, not {pe}"))
    if swg.op_type.endswith("_rtl"):
        want = int(base_type(cons.op_type) == "VVAU" and consumer_op.get_nodeattr("SIMD") > 1)
        if swg_op.get_nodeattr("parallel_window") != want:
            out.append(Violation(swg.name, "parallel window",
                                 f"parallel_window {swg_op.get_nodeattr('parallel_window')} before {cons.name}; "
                                 f"FINN uses {want} there"))
    return out


def violations(model) -> list[Violation]:
    """Every rule a folded, specialised dataflow graph breaks, in graph order."""
    from qonnx.custom_op.registry import getCustomOp

    out = []
    for node in model.graph.node:
        if not is_hw_node(node):
            continue
        op = getCustomOp(node)
        out += node_violations(op)
        consumer = depthwise_consumer(model, node)
        if consumer is not None:
            out += pair_violations(op, getCustomOp(consumer))
    return out
