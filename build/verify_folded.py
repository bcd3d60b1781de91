"""Verification after folding: the folded, specialised dataflow graph against the graphs the export checked.

Every build executes the graph it will turn into hardware (PE, SIMD and parallel_window
set, layers specialised to HLS/RTL) on the export's check frames and compares it

  * node by node with FINN's own Python reference of the same graph (finn.util.verification:
    every layer despecialised to its hardware-abstraction op), bit for bit; the first
    diverging node is named with its folding and its producer's;
  * at the output, bit for bit with the streamlined graph the export checked, and with the
    export's reference logits (PyTorch's, or a QONNX source's) under the export's own rule (export.golden.judge, its excused rounding-tie
    frames excused again).

The folded graph runs "in stream order", as the hardware moves data, with FINN's own layer
models wherever they have one: RTL layers through FINN's Python path (exec_mode cppsim, which
for a depthwise sliding-window generator emits the window grouped by SIMD, as the RTL does),
HLS layers as their abstraction op, and a Pool reading its input as C/PE groups of K x PE
values, as finn-hlslib's Pool_batch does (FINN's Python Pool ignores PE; its VVAU model
already reads by PE). A folding whose generator and pool disagree on that grouping computes
maxima across the wrong channels here exactly as on the board. With `cppsim=True` the HLS
layers run FINN's C++ simulation instead (needs finn-hlslib and Vitis HLS' headers).

What this cannot see: HLS compile errors, FIFO depths and deadlocks, timing; those need
cppsim, rtlsim and synthesis (the --bitfile flow turns on FINN's own verification steps).
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from onnx import helper
from qonnx.transformation.base import Transformation

from .folding_rules import base_type, depthwise_consumer

HLS_DOMAIN = "finn.custom_op.fpgadataflow.hls"
RTL_DOMAIN = "finn.custom_op.fpgadataflow.rtl"
HW_DOMAIN = "finn.custom_op.fpgadataflow"
FOLDING_ATTRS = ("PE", "SIMD", "parallel_window")


class ExecuteHLSLayersAsAbstraction(Transformation):
    """Every HLS layer becomes its hardware-abstraction op, which FINN executes in Python."""

    def apply(self, model):
        for node in model.graph.node:
            if node.domain == HLS_DOMAIN:
                node.op_type, node.domain = base_type(node.op_type), HW_DOMAIN
        return model, False


class ExecuteLayersInCppSim(Transformation):
    """exec_mode cppsim on every specialised layer: FINN's Python path for RTL layers, the compiled
    C++ simulation for HLS layers (which PrepareCppSim and CompileCppSim must have built)."""

    def apply(self, model):
        from qonnx.custom_op.registry import getCustomOp

        for node in model.graph.node:
            if node.domain in (HLS_DOMAIN, RTL_DOMAIN):
                getCustomOp(node).set_nodeattr("exec_mode", "cppsim")
        return model, False


class ReadPoolInputsInStreamOrder(Transformation):
    """Before every Pool, reorder its input from stream order (C/PE groups of K x PE values, what a
    depthwise generator with SIMD = PE emits and finn-hlslib's Pool_batch reads) to the (K, C) order
    FINN's Python Pool takes."""

    def apply(self, model):
        from qonnx.custom_op.registry import getCustomOp

        g = model.graph
        for i, node in enumerate(g.node):
            if base_type(node.op_type) != "Pool" or node.input[0].endswith("_stream_order"):
                continue
            op = getCustomOp(node)
            pe, ch = op.get_nodeattr("PE"), op.get_nodeattr("Channels")
            k2 = int(np.prod(op.get_nodeattr("KernelSize")))
            shape = list(model.get_tensor_shape(node.input[0]))
            lead = shape[:-1]
            grouped, swapped, out = (f"{node.input[0]}_{s}" for s in ("grouped", "swapped", "stream_order"))
            s1, s2 = model.make_new_valueinfo_name(), model.make_new_valueinfo_name()
            model.set_initializer(s1, np.array(lead + [ch // pe, k2, pe], np.int64))
            model.set_initializer(s2, np.array(shape, np.int64))
            n = len(lead)
            new = [helper.make_node("Reshape", [node.input[0], s1], [grouped]),
                   helper.make_node("Transpose", [grouped], [swapped], perm=list(range(n)) + [n + 1, n, n + 2]),
                   helper.make_node("Reshape", [swapped, s2], [out])]
            for t, shp in ((grouped, lead + [ch // pe, k2, pe]), (swapped, lead + [k2, ch // pe, pe]), (out, shape)):
                model.set_tensor_shape(t, shp)
            node.input[0] = out
            for j, x in enumerate(new):
                g.node.insert(i + j, x)
            return model, True
        return model, False


def stream_order_model(model, cppsim: bool = False):
    """The folded graph as FINN executes it in stream order (see the module docstring)."""
    m = copy.deepcopy(model)
    m.set_metadata_prop("exec_mode", "")
    m = m.transform(ExecuteLayersInCppSim())
    if not cppsim:
        m = m.transform(ExecuteHLSLayersAsAbstraction())
        m = m.transform(ReadPoolInputsInStreamOrder())
    return m


def canonical(model, ctx: dict) -> dict:
    """An execution context with every depthwise generator's output back in (K, C) order (its
    stream order groups the window by SIMD), so it compares with the reference element by element."""
    from qonnx.custom_op.registry import getCustomOp

    out = dict(ctx)
    for node in model.graph.node:
        if depthwise_consumer(model, node) is None or node.output[0] not in ctx:
            continue
        op = getCustomOp(node)
        simd, ch = op.get_nodeattr("SIMD"), op.get_nodeattr("IFMChannels")
        k2 = int(np.prod(op.get_nodeattr("ConvKernelDim")))
        a = ctx[node.output[0]]
        out[node.output[0]] = a.reshape(*a.shape[:-1], ch // simd, k2, simd).swapaxes(-3, -2).reshape(a.shape)
    return out


def folding_of(model, name: str) -> dict:
    """A node's folding attributes, and its producer's for a depthwise consumer (what to look at)."""
    from qonnx.custom_op.registry import getCustomOp

    node = model.get_node_from_name(name)
    op = getCustomOp(node)
    attrs = {a: op.get_nodeattr(a) for a in FOLDING_ATTRS if a in op.get_nodeattr_types()}
    prod = model.find_producer(node.input[0])
    if prod is not None and depthwise_consumer(model, prod) is node:
        p = getCustomOp(prod)
        attrs["producer"] = {prod.name: {a: p.get_nodeattr(a) for a in FOLDING_ATTRS if a in p.get_nodeattr_types()}}
    return attrs


@dataclass
class NodeVerdict:
    node: str
    op_type: str
    elements: int = 0  # over all frames
    mismatches: int = 0
    frames_differing: int = 0
    max_abs_err: float = 0.0

    @property
    def ok(self) -> bool:
        return self.mismatches == 0


@dataclass
class FoldedVerification:
    """What a build records: frames, result, per-node verdicts, output comparisons."""

    mode: str  # python (stream-order Python execution) | cppsim
    frames: int
    ok: bool = True
    nodes: list = field(default_factory=list)  # NodeVerdict per node output, in graph order
    first_diverging: dict | None = None  # node, op_type, mismatches, folding
    output_vs_streamlined_max_abs: float = 0.0
    output_bit_exact: bool = True
    reference: dict = field(default_factory=dict)  # export.golden.judge against the export's reference logits
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _execute(model, x):
    from finn.core.onnx_exec import execute_onnx

    return execute_onnx(model, {model.graph.input[0].name: x}, return_full_exec_context=True)


def verify_folded(folded, streamlined, ints: np.ndarray, ref_logits: np.ndarray, tie_frames=None,
                  cppsim: bool = False, tol: float = 1e-4, progress=None) -> FoldedVerification:
    """Compare the folded graph with its Python reference node by node, and its output with the
    streamlined graph's (bit for bit) and the export's reference logits (PyTorch's, or a QONNX source's), on
    `ints` (N, ...) input frames."""
    from finn.util.verification import compare_execution_contexts, despecialize_model

    from export.golden import judge, judge_classes

    ref_model = despecialize_model(folded)
    run_model = stream_order_model(folded, cppsim)
    out_name = folded.graph.output[0].name
    verdicts: dict[str, NodeVerdict] = {}
    outs, s_outs = [], []
    for k in range(len(ints)):
        x = ints[k:k + 1]
        ref, run = _execute(ref_model, x), canonical(folded, _execute(run_model, x))
        for row in compare_execution_contexts(folded, run, ref, atol=0.0, rtol=0.0):
            v = verdicts.setdefault(row["tensor"], NodeVerdict(row["node"], row["op_type"]))
            v.elements += row["num_elements"]
            bad = row["num_mismatch"] if row["status"] in ("ok", "deviates") else max(row["num_elements"], 1)
            v.mismatches += bad
            v.frames_differing += int(bad > 0)
            v.max_abs_err = max(v.max_abs_err, row["max_abs_err"])
        outs.append(run[out_name])
        s = _execute(streamlined, x.reshape(streamlined.get_tensor_shape(streamlined.graph.input[0].name)))
        s_outs.append(s[streamlined.graph.output[0].name])
        if progress:
            progress(k + 1, len(ints))
    logits = np.concatenate([o.reshape(1, -1) for o in outs])
    s_logits = np.concatenate([o.reshape(1, -1) for o in s_outs])
    res = FoldedVerification("cppsim" if cppsim else "python", len(ints), nodes=[asdict(v) for v in verdicts.values()])
    res.output_vs_streamlined_max_abs = float(np.abs(logits - s_logits).max())
    res.output_bit_exact = bool(np.array_equal(logits, s_logits))
    class_index = logits.shape[1] == 1 and ref_logits.shape[1] > 1  # --output class: FINN's LabelSelect
    t = (judge_classes if class_index else judge)("folded", logits, ref_logits, tol, tie_frames)
    res.reference = {"max_abs_diff": t.max_abs_diff, "top1_agreement": t.top1_agreement, "tie_frames": t.tie_frames,
                 "ok": t.ok, "detail": t.detail}
    bad = next((v for v in verdicts.values() if not v.ok), None)
    problems = []
    if bad is not None:
        res.first_diverging = {"node": bad.node, "op_type": bad.op_type, "mismatches": bad.mismatches,
                               "elements": bad.elements, "frames": bad.frames_differing,
                               "folding": folding_of(folded, bad.node)}
        problems.append(f"first diverging node {bad.node} ({bad.mismatches:,} of {bad.elements:,} values differ "
                        f"on {bad.frames_differing} of {len(ints)} frames; folding {res.first_diverging['folding']})")
    if not res.output_bit_exact:
        problems.append(f"output differs from the streamlined graph's by up to {res.output_vs_streamlined_max_abs:.3g}")
    if not t.ok:
        problems.append(f"against the export's reference logits: {t.detail}")
    res.ok = not problems
    res.detail = "; ".join(problems)
    return res


def cppsim_missing() -> list[str]:
    """What FINN's C++ simulation of HLS layers needs and this machine lacks (empty: it can run)."""
    import shutil

    from finn.util.settings import get_settings

    missing = []
    hls = os.environ.get("XILINX_HLS")
    if not hls or not Path(hls, "include", "ap_int.h").is_file():
        missing.append(f"Vitis HLS headers (XILINX_HLS is {hls or 'unset'}; cppsim needs $XILINX_HLS/include/ap_int.h "
                       f"and its lnx64 simulation libraries)")
    hlslib = Path(get_settings().finn_deps) / "finn-hlslib"
    if not (hlslib / "mvau.hpp").is_file():
        missing.append(f"finn-hlslib at {hlslib} (python -m export.finn_env fetch-deps; finn-plus 1.6.1 pins commit "
                       f"8d979e2)")
    if shutil.which("g++") is None:
        missing.append("g++")
    return missing


def prepare_cppsim(model):
    """FINN's PrepareCppSim and CompileCppSim on every HLS layer (minutes: one g++ run per layer)."""
    from finn.transformation.fpgadataflow.compile_cppsim import CompileCppSim
    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim

    return model.transform(PrepareCppSim()).transform(CompileCppSim())
