"""build_report.json: per-layer cycles, fps and latency at the clock, resources and fit, I/O shapes."""
from __future__ import annotations

import json
import math
from pathlib import Path

from .folding import balance


def io_shapes(model) -> dict:
    """FINN's io_shape_dict for the dataflow model: what the driver packs and unpacks."""
    from qonnx.custom_op.registry import getCustomOp

    first, last = getCustomOp(model.graph.node[0]), getCustomOp(model.graph.node[-1])
    idt, odt = first.get_input_datatype(), last.get_output_datatype()

    def packed(folded, dt):
        return list(folded[:-1]) + [math.ceil(folded[-1] * dt.bitwidth() / 8)]

    ifold, ofold = list(first.get_folded_input_shape()), list(last.get_folded_output_shape())
    return {
        "idt": [str(idt)], "odt": [str(odt)],
        "ishape_normal": [list(first.get_normal_input_shape())], "ishape_folded": [ifold],
        "ishape_packed": [packed(ifold, idt)],
        "oshape_normal": [list(last.get_normal_output_shape())], "oshape_folded": [ofold],
        "oshape_packed": [packed(ofold, odt)],
        "input_dma_name": ["idma0"], "output_dma_name": ["odma0"], "number_of_external_weights": 0,
        "num_inputs": 1, "num_outputs": 1,
    }


def build_report(model, ctx) -> dict:
    rep_dir = Path(ctx.work) / "report"
    cycles = json.loads((rep_dir / "estimate_layer_cycles.json").read_text())
    res = json.loads((rep_dir / "estimate_layer_resources.json").read_text())
    perf = json.loads((rep_dir / "estimate_network_performance.json").read_text())
    clock_ns = ctx.clock_ns
    total = {k: 0.0 for k in ("LUT", "BRAM_18K", "URAM", "DSP")}
    for name, r in res.items():
        if name == "total":
            continue
        for k in total:
            total[k] += float(r.get(k, 0))
    avail = ctx.board.resources()
    util = {k: total[k] / avail[k] if avail[k] else (0.0 if total[k] == 0 else math.inf) for k in total}
    fps = 1e9 / clock_ns / perf["max_cycles"]
    layers = [{"node": n, "cycles": c, **{k: res.get(n, {}).get(k, 0) for k in total}} for n, c in cycles.items()]
    return {
        "board": ctx.board.to_dict(), "clock_ns": clock_ns, "target_fps": ctx.cfg.target_fps,
        "folding": ctx.cfg.folding, "estimated_fps": fps, "meets_target": fps >= ctx.cfg.target_fps,
        "estimated_latency_us": perf["critical_path_cycles"] * clock_ns / 1e3,
        "max_cycles": perf["max_cycles"], "bottleneck": perf["max_cycles_node_name"],
        "balance": balance(cycles), "resources": total, "utilisation": util,
        "fits": all(u <= 1.0 for u in util.values()), "layers": layers,
        "io_shape_dict": io_shapes(model), **ctx.notes,
    }


def format_report(r: dict) -> str:
    b = r["board"]
    lines = [f"{b['name']} ({b['part']}) at {1e3 / r['clock_ns']:.0f} MHz, folding: {r['folding']}",
             f"{'layer':<34}{'cycles':>9}{'LUT':>9}{'BRAM18':>8}{'URAM':>6}{'DSP':>6}"]
    for layer in r["layers"]:
        lines.append(f"{layer['node']:<34}{layer['cycles']:>9}{layer['LUT']:>9.0f}{layer['BRAM_18K']:>8.0f}"
                     f"{layer['URAM']:>6.0f}{layer['DSP']:>6.0f}")
    t, u = r["resources"], r["utilisation"]
    lines += [
        f"estimated {r['estimated_fps']:,.0f} frames/s (target {r['target_fps']:,}: "
        f"{'met' if r['meets_target'] else 'NOT met'}), latency {r['estimated_latency_us']:.1f} us, "
        f"bottleneck {r['bottleneck']} ({r['max_cycles']} cycles), pipeline utilisation "
        f"{r['balance']['mean_utilisation']:.0%}",
        "resources: " + ", ".join(f"{k} {t[k]:,.0f} ({u[k]:.1%})" for k in t)
        + f" -> {'fits' if r['fits'] else 'does NOT fit'} the part",
    ]
    return "\n".join(lines)
