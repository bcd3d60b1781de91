"""Folding search: for a target frame rate, the folding with the fewest estimated LUTs that meets it.

A FINN dataflow pipeline runs at the pace of its slowest layer, so the frame rate is
clock / max(cycles per layer). The constraint "every layer within C cycles" is
therefore separable: choosing, for each layer alone, its cheapest (PE, SIMD) among
those within C cycles minimises the total LUT estimate exactly. Candidates are all
divisor pairs of each layer's folding dimensions; cycles and LUTs come from FINN's
own per-node estimates (the same numbers as its estimate reports).
The result is written as a FINN folding JSON the user can edit and feed back.

The same separability gives the highest frame rate that fits a part: the total LUT
(and BRAM, DSP) of the cheapest folding within C cycles only grows as C shrinks, so a
bisection over the layers' own cycle counts finds the smallest C whose folding fits
under a utilisation cap (`max_rate`).
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


def _estimate(op, setting: dict, part: str) -> tuple[int, float, float, float]:
    for k, v in setting.items():
        op.set_nodeattr(k, v)
    cycles = int(op.get_exp_cycles())
    lut = float(op.lut_estimation(part))
    bram = float(op.bram_estimation(part))
    dsp = float(op.dsp_estimation(part)) if hasattr(op, "dsp_estimation") else 0.0
    return cycles, lut, bram, dsp


@dataclass
class LayerChoice:
    node: str
    setting: dict
    cycles: int
    lut: float
    bram_18k: float
    dsp: float
    meets: bool


def candidates(model, part: str) -> dict[str, list[tuple]]:
    """Per foldable node: every legal (setting, cycles, LUT, BRAM18, DSP) by FINN's estimates."""
    from qonnx.custom_op.registry import getCustomOp

    out = {}
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
        out[node.name] = cands
    return out


def choose(cands: dict[str, list[tuple]], target_cycles: int) -> list[LayerChoice]:
    """Per layer, the cheapest setting within target_cycles (else the fastest one)."""
    out = []
    for name, layer in cands.items():
        ok = [c for c in layer if c[1] <= target_cycles]
        best = (min(ok, key=lambda c: (c[2], c[3], c[4], c[1])) if ok else min(layer, key=lambda c: (c[1], c[2])))
        out.append(LayerChoice(name, best[0], best[1], best[2], best[3], best[4], bool(ok)))
    return out


def search(model, target_cycles: int, part: str) -> list[LayerChoice]:
    """Per layer, the cheapest setting within target_cycles (else the fastest one)."""
    return choose(candidates(model, part), target_cycles)


def totals(choices: list[LayerChoice]) -> dict[str, float]:
    return {"LUT": sum(c.lut for c in choices), "BRAM_18K": sum(c.bram_18k for c in choices),
            "DSP": sum(c.dsp for c in choices)}


def max_rate(cands: dict[str, list[tuple]], budget: dict[str, float]) -> tuple[int, list[LayerChoice]]:
    """(smallest target cycles whose cheapest folding stays within `budget`, that folding).

    `budget` caps LUT, BRAM_18K and DSP. Raises ValueError when not even the slowest folding fits."""
    levels = sorted({c[1] for layer in cands.values() for c in layer})
    floor_cycles = max(min(c[1] for c in layer) for layer in cands.values())  # no folding is faster
    levels = [c for c in levels if c >= floor_cycles]

    def fits(cycles):
        t = totals(choose(cands, cycles))
        return all(t[k] <= budget[k] for k in budget)

    if not fits(levels[-1]):
        t = totals(choose(cands, levels[-1]))
        raise ValueError("even the slowest folding exceeds the budget: "
                         + ", ".join(f"{k} {t[k]:,.0f} > {budget[k]:,.0f}" for k in budget if t[k] > budget[k]))
    lo, hi = 0, len(levels) - 1  # levels[hi] fits; find the first level that fits
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(levels[mid]):
            hi = mid
        else:
            lo = mid + 1
    return levels[lo], choose(cands, levels[lo])


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
