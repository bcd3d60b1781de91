"""Folding search: for a target frame rate, the legal folding with the fewest estimated LUTs that meets it.

A FINN dataflow pipeline runs at the pace of its slowest layer, so the frame rate is
clock / max(cycles per layer). The constraint "every layer within C cycles" is
therefore separable into folding units: a unit is one layer, or a depthwise
sliding-window generator together with the Pool/VVAU it feeds, which must share one
parallelism (build/folding_rules.py has every rule). Choosing, for each unit alone, its
cheapest legal setting within C cycles minimises the total LUT estimate exactly.
Candidates are the divisor settings FINN's own SetFolding explores, each kept only if
it breaks none of FINN's rules; cycles and LUTs come from FINN's own per-node estimates
(the same numbers as its estimate reports).
The result is written as a FINN folding JSON the user can edit and feed back.

That is the LUT objective. The max-utilisation objective (build/fit.py) couples the units and also
weighs an HLS MVAU's weights in block RAM against LUTRAM; with --impl search its options are those of
two specialisations of the graph (every MVAU and thresholding layer HLS, every one RTL), so each layer
takes HLS or RTL, whichever fits the part best together with the others (`impl_candidates`).

The same separability gives the highest frame rate that fits a part: the total LUT
(and BRAM, DSP) of the cheapest folding within C cycles only grows as C shrinks, so a
bisection over the units' own cycle counts finds the smallest C whose folding fits
under a utilisation cap (`max_rate`).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from .folding_rules import base_type, depthwise_consumer, folding_dims, is_hw_node, node_violations, pair_violations


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# Weight memories an HLS MVAU may take besides FINN's default ("auto": block RAM in the estimates): LUTRAM, which
# FINN's HLS estimate charges in LUTs. Not offered: "distributed" for RTL MVAUs (FINN's RTL estimate counts no LUT
# for it, so it would look free) and "ultra" (FINN makes URAM weights runtime-writable, which driver/ refuses).
WEIGHT_MEMORIES = ("auto", "distributed")


def _node_space(op, memories: bool = False) -> list[dict]:
    """Folding settings one layer may take on its own (the divisors SetFolding explores; with `memories`, an HLS
    MVAU's weight memory too)."""
    t = base_type(op.onnx_node.op_type)
    dims = folding_dims(op)
    if t == "MVAU":
        styles = WEIGHT_MEMORIES if memories and op.onnx_node.op_type.endswith("_hls") else (None,)
        return [{"PE": pe, "SIMD": simd, **({"ram_style": r} if r else {})}
                for pe, simd, r in itertools.product(_divisors(dims["PE"]), _divisors(dims["SIMD"]), styles)]
    if t == "ConvolutionInputGenerator":
        c = dims["SIMD"]
        space = [{"SIMD": s} for s in _divisors(c)]
        if op.onnx_node.op_type.endswith("_rtl"):
            space = [dict(s, parallel_window=0) for s in space] + [{"SIMD": c, "parallel_window": 1}]
        return space
    return [dict(zip(dims, values)) for values in itertools.product(*(_divisors(d) for d in dims.values()))] or [{}]


def _pair_space(swg_op, cons_op) -> list[dict]:
    """Joint settings of a depthwise generator and its consumer: SIMD = PE, parallel_window as FINN sets it."""
    swg, cons = swg_op.onnx_node, cons_op.onnx_node
    rtl = swg.op_type.endswith("_rtl")
    out = []
    for pe in _divisors(folding_dims(cons_op)["PE"]):
        simds = _divisors(folding_dims(cons_op)["SIMD"]) if base_type(cons.op_type) == "VVAU" else [None]
        for simd in simds:
            c = {"PE": pe} if simd is None else {"PE": pe, "SIMD": simd}
            s = {"SIMD": pe}
            if rtl:
                s["parallel_window"] = int(simd is not None and simd > 1)
            out.append({swg.name: s, cons.name: c})
    return out


def _apply(ops: dict, setting: dict) -> None:
    for name, attrs in setting.items():
        for k, v in attrs.items():
            ops[name].set_nodeattr(k, v)


def _estimate(ops: dict, part: str) -> tuple[int, float, float, float]:
    """(cycles, LUT, BRAM18, DSP) of a unit: its slowest node's cycles, the sums of the rest."""
    cycles = max(int(op.get_exp_cycles()) for op in ops.values())
    lut = sum(float(op.lut_estimation(part)) for op in ops.values())
    bram = sum(float(op.bram_estimation(part)) for op in ops.values())
    dsp = sum(float(op.dsp_estimation(part)) if hasattr(op, "dsp_estimation") else 0.0 for op in ops.values())
    return cycles, lut, bram, dsp


def units(model, memories: bool = False) -> list[tuple[dict, list[dict]]]:
    """The graph's folding units in order: ({node name: op}, legal-or-not candidate settings)."""
    from qonnx.custom_op.registry import getCustomOp

    out, paired = [], set()
    for node in model.graph.node:
        if not is_hw_node(node) or node.name in paired:
            continue
        op = getCustomOp(node)
        if not hasattr(op, "get_exp_cycles"):
            continue
        consumer = depthwise_consumer(model, node)
        if consumer is not None:
            cons = getCustomOp(consumer)
            paired.add(consumer.name)
            out.append(({node.name: op, consumer.name: cons}, _pair_space(op, cons)))
        else:
            out.append(({node.name: op}, [{node.name: s} for s in _node_space(op, memories)]))
    return out


def _legal(ops: dict) -> bool:
    if any(node_violations(op) for op in ops.values()):
        return False
    if len(ops) == 2:
        return not pair_violations(*ops.values())
    return True


def candidates(model, part: str, memories: bool = False) -> dict[str, list[tuple]]:
    """Per folding unit ('A' or 'A+B'): every legal (setting by node, cycles, LUT, BRAM18, DSP); with `memories`
    also over the weight memories of WEIGHT_MEMORIES (for an objective that weighs BRAM against LUT)."""
    out = {}
    for ops, space in units(model, memories):
        original = {name: {k: op.get_nodeattr(k) for k in space[0][name]} for name, op in ops.items()}
        cands = []
        for s in space:
            _apply(ops, s)
            if _legal(ops):
                cands.append((s, *_estimate(ops, part)))
        _apply(ops, original)
        if not cands:
            raise ValueError(f"{'+'.join(ops)}: no folding of this layer meets FINN's rules")
        out["+".join(ops)] = cands
    return out


@dataclass
class LayerChoice:
    node: str  # the folding unit: a layer, or 'generator+pool'
    setting: dict  # {node name: {attribute: value}}
    cycles: int
    lut: float
    bram_18k: float
    dsp: float
    meets: bool
    impl: dict = field(default_factory=dict)  # {node of the unspecialised graph: "hls" | "rtl"} (--impl search)


def _impl(c: tuple) -> dict:
    return c[5] if len(c) > 5 else {}


def choose(cands: dict[str, list[tuple]], target_cycles: int) -> list[LayerChoice]:
    """Per unit, the cheapest setting within target_cycles (else the fastest one)."""
    out = []
    for name, unit in cands.items():
        ok = [c for c in unit if c[1] <= target_cycles]
        best = (min(ok, key=lambda c: (c[2], c[3], c[4], c[1])) if ok else min(unit, key=lambda c: (c[1], c[2])))
        out.append(LayerChoice(name, best[0], best[1], best[2], best[3], best[4], bool(ok), _impl(best)))
    return out


def search(model, target_cycles: int, part: str) -> list[LayerChoice]:
    """Per unit, the cheapest legal setting within target_cycles (else the fastest one)."""
    return choose(candidates(model, part), target_cycles)


def totals(choices: list[LayerChoice]) -> dict[str, float]:
    return {"LUT": sum(c.lut for c in choices), "BRAM_18K": sum(c.bram_18k for c in choices),
            "DSP": sum(c.dsp for c in choices)}


OBJECTIVES = ("lut", "max-utilisation")
AUTO = "auto"  # the default of --fit and --impl: resolved by BuildConfig


def fit_choose(cands: dict[str, list[tuple]], target_cycles: int, capacity: dict) -> list[LayerChoice]:
    """Per unit, the setting within target_cycles such that the largest utilisation of `capacity` over LUT,
    BRAM18 and DSP is minimal (ties: fewest LUT; build/fit.py); a unit that cannot meet it takes its fastest."""
    from .fit import Option, fit

    units = {name: [Option(i, c[1], {"LUT": c[2], "BRAM_18K": c[3], "DSP": c[4]}) for i, c in enumerate(unit)]
             for name, unit in cands.items()}
    chosen = fit(units, target_cycles, capacity, unmet="fastest").choice
    out = []
    for name, unit in cands.items():
        c = unit[chosen[name].label]
        out.append(LayerChoice(name, c[0], c[1], c[2], c[3], c[4], c[1] <= target_cycles, _impl(c)))
    return out


def chooser(objective: str, capacity: dict):
    """choose(cands, target_cycles) for a folding objective: fewest LUT, or smallest largest utilisation."""
    if objective == "lut":
        return choose
    if objective == "max-utilisation":
        return lambda cands, cycles: fit_choose(cands, cycles, capacity)
    raise ValueError(f"unknown folding objective {objective!r}; known: {', '.join(OBJECTIVES)}")


def max_rate(cands: dict[str, list[tuple]], budget: dict[str, float], pick=choose) -> tuple[int, list[LayerChoice]]:
    """(smallest target cycles whose cheapest folding stays within `budget`, that folding).

    `budget` caps LUT, BRAM_18K and DSP. Raises ValueError when not even the slowest folding fits."""
    levels = sorted({c[1] for unit in cands.values() for c in unit})
    floor_cycles = max(min(c[1] for c in unit) for unit in cands.values())  # no folding is faster
    levels = [c for c in levels if c >= floor_cycles]

    def fits(cycles):
        t = totals(pick(cands, cycles))
        return all(t[k] <= budget[k] for k in budget)

    if not fits(levels[-1]):
        t = totals(pick(cands, levels[-1]))
        raise ValueError("even the slowest folding exceeds the budget: "
                         + ", ".join(f"{k} {t[k]:,.0f} > {budget[k]:,.0f}" for k in budget if t[k] > budget[k]))
    lo, hi = 0, len(levels) - 1  # levels[hi] fits; find the first level that fits
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(levels[mid]):
            hi = mid
        else:
            lo = mid + 1
    return levels[lo], pick(cands, levels[lo])


IMPLS = ("finn", "search")  # FINN's own specialisation, or each varied layer's style chosen with its folding
VARIED_IMPL = ("MVAU", "Thresholding")  # the layers --impl search builds either way (both have HLS and RTL)


def impl_candidates(plain, variants: dict, part: str, memories: bool = False) -> dict[str, list[tuple]]:
    """Per folding unit of `plain` (a graph before specialisation, named), the legal options of every specialised
    variant of it, each tagged with the implementation its nodes got: (setting, cycles, LUT, BRAM18, DSP,
    {node: style}), nodes named as in `plain`. Specialisation replaces each node in place, so a variant's i-th node
    is plain's i-th; a style FINN could not give (e.g. an RTL MVAU whose widths its DSPs cannot hold) shows as
    the style FINN gave."""
    names = [n.name for n in plain.graph.node]
    out: dict[str, list[tuple]] = {}
    seen = set()
    for key, variant in variants.items():
        nodes = variant.graph.node
        if [n.op_type for n in plain.graph.node] != [base_type(n.op_type) for n in nodes]:
            raise RuntimeError(f"the {key} specialisation does not map node for node onto the graph it came from")
        rename = {n.name: p for n, p in zip(nodes, names)}
        style = {n.name: n.op_type.rsplit("_", 1)[1] for n in nodes
                 if base_type(n.op_type) in VARIED_IMPL and n.op_type.endswith(("_hls", "_rtl"))}
        for unit, cands in candidates(variant, part, memories).items():
            members = unit.split("+")
            impl = {rename[m]: style[m] for m in members if m in style}
            tag = ("+".join(rename[m] for m in members), tuple(sorted(impl.items())))
            if tag in seen:  # a layer not varied (or given the same style): the same options again
                continue
            seen.add(tag)
            out.setdefault(tag[0], []).extend(({rename[m]: a for m, a in c[0].items()}, *c[1:5], impl) for c in cands)
    return out


def specialize_config(choices: list[LayerChoice]) -> dict:
    """FINN's specialize-layers config of an --impl search result: the style of every varied layer."""
    return {node: {"preferred_impl_style": style} for c in choices for node, style in c.impl.items()}


def folding_config(choices: list[LayerChoice]) -> dict:
    """FINN's folding-config dict of a search result (node name -> attributes)."""
    cfg = {"Defaults": {}}
    for c in choices:
        for node, attrs in c.setting.items():
            if attrs:
                cfg[node] = dict(attrs)
    return cfg


def write_folding(choices: list[LayerChoice], path: Path) -> Path:
    Path(path).write_text(json.dumps(folding_config(choices), indent=2))
    return Path(path)


def balance(cycles: dict[str, int]) -> dict:
    """How far from balanced a pipeline is: mean/max utilisation of the layers' time."""
    vals = [v for v in cycles.values() if v > 0]
    mx = max(vals)
    return {"max_cycles": mx, "min_cycles": min(vals), "mean_utilisation": sum(vals) / (len(vals) * mx),
            "bottleneck": max(cycles, key=cycles.get)}
