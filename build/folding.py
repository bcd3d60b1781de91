"""Folding search: for a target frame rate, the folding with the fewest estimated LUTs that meets it.

A FINN dataflow pipeline runs at the pace of its slowest layer, so the frame rate is
clock / max(cycles per layer). The constraint "every layer within C cycles" is
therefore separable: choosing, for each layer alone, its cheapest (PE, SIMD) among
those within C cycles minimises the total LUT estimate exactly. Candidates are all
divisor pairs of each layer's folding dimensions; cycles and LUTs come from FINN's
own per-node estimates (the same numbers as its estimate reports).
The result is written as a FINN folding JSON the user can edit and feed back.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _space(op) -> list[dict]:
    """Folding settings a node may take (FINN's own constraints: divisors)."""
    t = op.onnx_node.op_type
    if t.startswith("MVAU") or t.startswith("VVAU"):
        mh, mw = op.get_nodeattr("MH"), op.get_nodeattr("MW")
        return [{"PE": pe, "SIMD": simd} for pe, simd in itertools.product(_divisors(mh), _divisors(mw))]
    if t.startswith("ConvolutionInputGenerator"):
        c = op.get_nodeattr("IFMChannels")
        return [{"SIMD": s, "parallel_window": 0} for s in _divisors(c)] + [{"SIMD": c, "parallel_window": 1}]
    attrs = op.get_nodeattr_types()
    channels = next((op.get_nodeattr(k) for k in ("NumChannels", "Channels") if k in attrs), None)
    if channels is None:
        channels = int(op.get_normal_output_shape()[-1])
    for attr in ("SIMD", "PE"):
        if attr in attrs:
            return [{attr: d} for d in _divisors(channels)]
    return [{}]


def _estimate(op, setting: dict, part: str) -> tuple[int, float, float]:
    for k, v in setting.items():
        op.set_nodeattr(k, v)
    cycles = int(op.get_exp_cycles())
    lut = float(op.lut_estimation(part))
    bram = float(op.bram_estimation(part))
    return cycles, lut, bram


@dataclass
class LayerChoice:
    node: str
    setting: dict
    cycles: int
    lut: float
    bram_18k: float
    meets: bool


def search(model, target_cycles: int, part: str) -> list[LayerChoice]:
    """Per layer, the cheapest setting within target_cycles (else the fastest one)."""
    from qonnx.custom_op.registry import getCustomOp

    out = []
    for node in model.graph.node:
        op = getCustomOp(node)
        if not hasattr(op, "get_exp_cycles"):
            continue
        original = {k: op.get_nodeattr(k) for k in _space(op)[0]}
        cands = []
        for s in _space(op):
            try:
                cands.append((s, *_estimate(op, s, part)))
            except Exception:  # noqa: BLE001 - an illegal combination for this node type
                continue
        for k, v in original.items():
            op.set_nodeattr(k, v)
        ok = [c for c in cands if c[1] <= target_cycles]
        best = (min(ok, key=lambda c: (c[2], c[3], c[1])) if ok else min(cands, key=lambda c: (c[1], c[2])))
        out.append(LayerChoice(node.name, best[0], best[1], best[2], best[3], bool(ok)))
    return out


def write_folding(choices: list[LayerChoice], path: Path) -> Path:
    cfg = {"Defaults": {}}
    for c in choices:
        if c.setting:
            cfg[c.node] = dict(c.setting)
    Path(path).write_text(json.dumps(cfg, indent=2))
    return Path(path)


def balance(cycles: dict[str, int]) -> dict:
    """How far from balanced a pipeline is: mean/max utilisation of the layers' time."""
    vals = [v for v in cycles.values() if v > 0]
    mx = max(vals)
    return {"max_cycles": mx, "min_cycles": min(vals), "mean_utilisation": sum(vals) / (len(vals) * mx),
            "bottleneck": max(cycles, key=cycles.get)}
