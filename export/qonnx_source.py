"""A QONNX file as the export's source: a 1D CNN this project did not build (`--qonnx FILE`).

What the flow needs of it, checked before any work, each refusal one line naming the file:
one input of one RadioML frame, (1, 2, 1024) float I/Q channels first, feeding a Quant node
without zero point (the accelerator takes its integers: the host quantises); one output of
24 class scores; only ops the flow converts to FINN's dataflow layers (OPS). Brevitas'
`export_qonnx(model, torch.zeros(1, 2, 1024), path)` of a QuantConv1d/QuantLinear network
with QuantIdentity (or QuantHardTanh) in front and QuantReLU activations gives such a file.
"""
from __future__ import annotations

import math
from pathlib import Path

from radioml.classes import CLASSES, FRAME_LENGTH
from radioml.cli import first_line

# op types of a QONNX 1D CNN that qonnx_to_finn, streamlining and FINN's convert-to-HW steps turn into
# dataflow layers (thresholds, MVAUs, sliding windows, pools, the final scale and bias)
OPS = frozenset({"Quant", "Conv", "MatMul", "Gemm", "Add", "Mul", "Relu", "BatchNormalization", "MaxPool", "Flatten",
                 "Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze"})
INPUT_SHAPE = [1, 2, FRAME_LENGTH]


def check_qonnx_file(path) -> None:
    """Refuse, in one line naming `path`, a file the flow cannot take; return silently otherwise."""
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        m = ModelWrapper(onnx.load(str(path)))
    except Exception as e:  # onnx raises DecodeError for a file that is not ONNX, ValidationError and others
        reason = first_line(e) if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a loadable ONNX file ({type(e).__name__}: {reason})") from None
    g = m.graph
    cyclic = nodes_on_a_cycle(g)
    if cyclic:
        raise ValueError(f"{path}: the graph has a cycle through {', '.join(cyclic[:3])}; an ONNX graph is acyclic")
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ValueError(f"{path}: {len(inputs)} inputs and {len(g.output)} outputs; the flow takes one frame in "
                         f"and one tensor of class scores out")
    unsupported = sorted({n.op_type for n in g.node if n.op_type not in OPS})
    if unsupported:
        where = {n.op_type: n.name or "unnamed" for n in g.node}
        found = ", ".join(f"{op} ({where[op]})" for op in unsupported)
        raise ValueError(f"{path}: ops this flow does not convert to FINN dataflow layers: {found} (supported: "
                         f"{', '.join(sorted(OPS))}; export the network without them, e.g. no Softmax)")
    shape = m.get_tensor_shape(inputs[0].name)
    if shape != INPUT_SHAPE:
        raise ValueError(f"{path}: input {inputs[0].name} has shape {shape}; the flow feeds one RadioML frame, "
                         f"{tuple(INPUT_SHAPE)} (batch, I/Q, samples): export with torch.zeros(1, 2, {FRAME_LENGTH})")
    out = m.get_tensor_shape(g.output[0].name)
    if out is None or math.prod(int(d) for d in out) != len(CLASSES) or out[0] != 1:
        raise ValueError(f"{path}: output {g.output[0].name} has shape {out}; the flow expects the {len(CLASSES)} "
                         f"class scores of RadioML 2018.01A, (1, {len(CLASSES)})")
    first = m.find_consumer(inputs[0].name)
    if first is None or first.op_type != "Quant":
        raise ValueError(f"{path}: the input feeds {first.op_type if first else 'nothing'}, not a Quant node; the "
                         f"accelerator takes integers, so the model must quantise its input first (e.g. Brevitas "
                         f"QuantIdentity)")
    zp = m.get_initializer(first.input[2])
    if zp is None or float(abs(zp).max()) != 0:
        raise ValueError(f"{path}: the input quantiser {first.name} has a zero point; the flow needs a symmetric one")


def nodes_on_a_cycle(graph) -> list[str]:
    """Names of the nodes that no topological order reaches (Kahn's algorithm): empty for an acyclic graph."""
    producers = {o: k for k, n in enumerate(graph.node) for o in n.output}
    deps = [{producers[i] for i in n.input if i in producers} for n in graph.node]
    done: set[int] = set()
    progress = True
    while progress:
        ready = [k for k in range(len(deps)) if k not in done and deps[k] <= done]
        done.update(ready)
        progress = bool(ready)
    return [graph.node[k].name or graph.node[k].op_type for k in range(len(deps)) if k not in done]
