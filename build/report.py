"""build_report.json: per-layer cycles, fps and latency at the clock, resources and fit, I/O shapes."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from radioml.artifacts import need, read_artifact, write_artifact

from .folding import balance


@dataclass(frozen=True)
class BuildReport:
    """build_report.json, its one writer and reader: `body` is what build_report() computed."""

    body: dict
    FORMAT = "amc-build-report/1"
    REQUIRED = ("board", "clock_ns", "target_fps", "folding", "estimated_fps", "meets_target", "max_cycles",
                "resources", "utilisation", "fits", "layers", "io_shape_dict", "folded_verification", "inputs")

    def __post_init__(self):
        self.check(self.body, "build_report.json")

    @staticmethod
    def check(d: dict, path) -> None:
        for k in BuildReport.REQUIRED:
            need(k in d, path, k, "missing")
        for k in ("clock_ns", "estimated_fps", "target_fps"):
            need(isinstance(d[k], (int, float)) and math.isfinite(d[k]) and d[k] > 0, path, k,
                 f"{d[k]!r} is not a positive number")
        need(isinstance(d["resources"], dict) and {"LUT", "BRAM_18K", "DSP"} <= set(d["resources"]), path, "resources",
             "LUT, BRAM_18K and DSP expected")
        need(isinstance(d["folded_verification"], dict) and "ok" in d["folded_verification"], path,
             "folded_verification", "no verdict")
        BuildReport.check_consistent(d, path)

    @staticmethod
    def check_consistent(d: dict, path) -> None:
        """The figures agree with each other: each total is the sum of its layers, the utilisation and the fit
        follow from the totals, the frame rate from the slowest layer. A digest says a file is as written, not
        that its writer was honest: a re-signed edit of one figure is caught here."""
        layers = d["layers"]
        need(isinstance(layers, list) and all(isinstance(x, dict) for x in layers), path, "layers", "not a list")
        for k, total in d["resources"].items():
            summed = sum(float(x.get(k, 0)) for x in layers)
            need(isinstance(total, (int, float)) and math.isclose(total, summed, rel_tol=1e-9, abs_tol=1e-6), path,
                 f"resources.{k}", f"{total!r}, but its layers sum to {summed:,.0f} (edited?); rebuild")
        board = d["board"] if isinstance(d["board"], dict) else {}
        avail = {k: board.get(k.lower()) for k in d["utilisation"]}  # Board.to_dict: lut, bram_18k, uram, dsp
        for k, u in d["utilisation"].items():
            if avail.get(k):
                need(math.isclose(u, d["resources"][k] / avail[k], rel_tol=1e-9), path, f"utilisation.{k}",
                     f"{u!r} is not resources.{k} over the part's {avail[k]} (edited?); rebuild")
        need(d["fits"] == all(u <= 1.0 for u in d["utilisation"].values()), path, "fits",
             f"{d['fits']!r} disagrees with the utilisation (edited?); rebuild")
        if "within_cap" in d:  # reports before the cap was checked have neither field
            cap = d.get("util_cap")
            need(isinstance(cap, (int, float)) and 0 < cap <= 1, path, "util_cap", f"{cap!r} is not in (0, 1]")
            need(d["within_cap"] == all(u <= cap for u in d["utilisation"].values()), path, "within_cap",
                 f"{d['within_cap']!r} disagrees with the utilisation and util_cap (edited?); rebuild")
        if layers and all("cycles" in x for x in layers):
            slowest = max(x["cycles"] for x in layers)
            need(d["max_cycles"] == slowest, path, "max_cycles",
                 f"{d['max_cycles']!r}, but the slowest layer takes {slowest} (edited?); rebuild")
            need(math.isclose(d["estimated_fps"], 1e9 / d["clock_ns"] / slowest, rel_tol=1e-9), path,
                 "estimated_fps", f"{d['estimated_fps']!r} is not the clock over the slowest layer (edited?); rebuild")
        need(d["meets_target"] == (d["estimated_fps"] >= d["target_fps"]), path, "meets_target",
             f"{d['meets_target']!r} disagrees with estimated_fps and target_fps (edited?); rebuild")

    def __getitem__(self, key):
        return self.body[key]

    def write(self, build_dir) -> Path:
        return write_artifact(Path(build_dir) / "build_report.json", self.FORMAT, self.body)

    @classmethod
    def read(cls, build_dir) -> "BuildReport":
        path = Path(build_dir) / "build_report.json"
        body = read_artifact(path, cls.FORMAT)
        cls.check(body, path)
        return cls(body)


def _dt_name(dt) -> str:
    """FINN writes datatypes as "DataType['INT4']"; the driver reads plain names."""
    s = str(dt)
    return s[s.index("[") + 2:s.rindex("]") - 1] if s.startswith("DataType[") else s


def _packed_shape(dt, folded) -> list:
    """The packed byte shape of a folded tensor, computed as FINN's get_driver_shapes does."""
    from finn.util.data_packing import finnpy_to_packed_bytearray
    from qonnx.util.basic import gen_finn_dt_tensor

    return list(finnpy_to_packed_bytearray(gen_finn_dt_tensor(dt, folded), dt).shape)


def _dataflow_shapes(model) -> dict:
    """The same dict for a dataflow model before IODMA insertion (an estimate-only build)."""
    from qonnx.custom_op.registry import getCustomOp

    i_name, o_name = model.graph.input[0].name, model.graph.output[0].name
    first, last = getCustomOp(model.find_consumer(i_name)), getCustomOp(model.find_producer(o_name))
    idt, odt = model.get_tensor_datatype(i_name), model.get_tensor_datatype(o_name)
    ifold, ofold = tuple(first.get_folded_input_shape()), tuple(last.get_folded_output_shape())
    return {"idt": [idt], "idma_names": ["idma0"], "ishape_normal": [tuple(model.get_tensor_shape(i_name))],
            "ishape_folded": [ifold], "ishape_packed": [_packed_shape(idt, ifold)],
            "odt": [odt], "odma_names": ["odma0"], "oshape_normal": [tuple(model.get_tensor_shape(o_name))],
            "oshape_folded": [ofold], "oshape_packed": [_packed_shape(odt, ofold)]}


def io_shapes(model, alveo: bool = False) -> dict:
    """FINN's io_shape_dict (finn.util.basic.get_driver_shapes): what the driver packs and unpacks.

    After synthesis the model is FINN's parent graph of StreamingDataflowPartitions with IODMAs,
    read by get_driver_shapes itself; an estimate-only build stops at the dataflow graph, whose
    first and last layers give the same shapes. DMA names: Zynq `idma0`/`odma0` (MakeZYNQProject),
    Alveo the Vitis compute units `idma_0`/`odma_0` (VitisLinkConfiguration), which FINN does not
    record on the partition nodes.
    """
    if model.get_nodes_by_op_type("StreamingDataflowPartition"):
        from finn.util.basic import get_driver_shapes

        d = get_driver_shapes(model)
    else:
        d = _dataflow_shapes(model)
    for key, prefix in (("idma_names", "idma"), ("odma_names", "odma")):
        d[key] = [f"{prefix}_{i}" if alveo else (n or f"{prefix}{i}") for i, n in enumerate(d[key])]
    out = {k: ([_dt_name(x) for x in v] if k in ("idt", "odt") else
               [[int(n) for n in s] for s in v] if k.startswith(("ishape", "oshape")) else list(v))
           for k, v in d.items()}
    out.update(num_inputs=len(out["idt"]), num_outputs=len(out["odt"]), number_of_external_weights=0)
    return out


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
    folding = _folding_by_node(model)
    layers = [{"node": n, "cycles": c, **{k: res.get(n, {}).get(k, 0) for k in total}, "folding": folding.get(n, {})}
              for n, c in cycles.items()]
    return {
        "board": ctx.board.to_dict(), "clock_ns": clock_ns, "target_fps": ctx.target_fps,
        "folding": ctx.cfg.folding, "estimated_fps": fps, "meets_target": fps >= ctx.target_fps,
        "estimated_latency_us": perf["critical_path_cycles"] * clock_ns / 1e3,
        "max_cycles": perf["max_cycles"], "bottleneck": perf["max_cycles_node_name"],
        "balance": balance(cycles), "resources": total, "utilisation": util,
        "fits": all(u <= 1.0 for u in util.values()), "util_cap": ctx.cfg.util_cap,
        "within_cap": all(u <= ctx.cfg.util_cap for u in util.values()), "layers": layers,
        "io_shape_dict": io_shapes(model, alveo=ctx.board.shell == "vitis_alveo"), "inputs": build_inputs(ctx.cfg),
        **ctx.notes,
    }


def build_inputs(cfg) -> dict:
    """What a build's numbers depend on: build.compare reuses a build only when these are the same."""
    from radioml.artifacts import ExportIO, file_digest

    folding = cfg.folding if cfg.folding in ("search", "finn") else f"file:{file_digest(cfg.folding)}"
    return {"board": cfg.board, "clock_ns": cfg.clock_ns, "target_fps": None if cfg.max_fps else cfg.target_fps,
            "max_fps": cfg.max_fps, "util_cap": cfg.util_cap if cfg.max_fps else None, "folding": folding,
            **({"fit": cfg.fit} if cfg.fit != "lut" else {}),  # absent for the LUT search, as before --fit
            **({"impl": cfg.impl} if cfg.impl != "finn" else {}),  # absent for FINN's own, as before --impl
            "export": ExportIO.read(cfg.export_dir).files["model_finn_streamlined.onnx"],
            "verify_frames": cfg.verify_frames, "standalone_thresholds": cfg.standalone_thresholds,
            "output": cfg.output,
            "specialize_layers": cfg.specialize_layers and f"file:{file_digest(cfg.specialize_layers)}"}


def _folding_by_node(model) -> dict:
    """PE, SIMD and parallel_window of every dataflow layer (what the folding chose), and its weight memory
    where not FINN's default."""
    from qonnx.custom_op.registry import getCustomOp

    from .folding_rules import base_type, is_hw_node

    out = {}
    for node in model.graph.node:
        if is_hw_node(node):
            types = getCustomOp(node).get_nodeattr_types()
            op = getCustomOp(node)
            out[node.name] = {a: op.get_nodeattr(a) for a in ("PE", "SIMD", "parallel_window") if a in types}
            if base_type(node.op_type) == "MVAU" and op.get_nodeattr("ram_style") != "auto":
                out[node.name]["ram_style"] = op.get_nodeattr("ram_style")
    return out


def _fold_text(f: dict) -> str:
    short = {"parallel_window": "pw", "ram_style": "ram"}
    return " ".join(f"{short.get(k, k)}={v}" for k, v in f.items() if k != "parallel_window" or v)


def format_report(r: dict) -> str:
    b = r["board"]
    w = max([18] + [len(_fold_text(layer.get("folding", {}))) + 2 for layer in r["layers"]])
    lines = [f"{b['name']} ({b['part']}) at {1e3 / r['clock_ns']:.0f} MHz, folding: {r['folding']}",
             f"{'layer':<34}{'folding':<{w}}{'cycles':>9}{'LUT':>9}{'BRAM18':>8}{'URAM':>6}{'DSP':>6}"]
    for layer in r["layers"]:
        lines.append(f"{layer['node']:<34}{_fold_text(layer.get('folding', {})):<{w}}{layer['cycles']:>9}"
                     f"{layer['LUT']:>9.0f}{layer['BRAM_18K']:>8.0f}{layer['URAM']:>6.0f}{layer['DSP']:>6.0f}")
    t, u = r["resources"], r["utilisation"]
    lines += [
        f"estimated {r['estimated_fps']:,.0f} frames/s (target {r['target_fps']:,.0f}: "
        f"{'met' if r['meets_target'] else 'NOT met'}), latency {r['estimated_latency_us']:.1f} us, "
        f"bottleneck {r['bottleneck']} ({r['max_cycles']} cycles), pipeline utilisation "
        f"{r['balance']['mean_utilisation']:.0%}",
        "resources: " + ", ".join(f"{k} {t[k]:,.0f} ({u[k]:.1%})" for k in t)
        + f" -> {'fits' if r['fits'] else 'does NOT fit'} the part"
        + ("" if r.get("within_cap", True) or not r["fits"] else f", but over the {r['util_cap']:.0%} cap"),
    ]
    v = r.get("folded_verification")
    if v:
        lines.append(f"folded graph verified ({v['mode']}) on {v['frames']} check frames: "
                     + ("bit-exact with the streamlined export graph, every node equal to FINN's Python reference"
                        if v["ok"] else f"DIVERGES: {v['detail']}"))
    c = r.get("cppsim")
    if c:
        lines.append("cppsim: " + (("bit-exact" if c["ok"] else f"DIVERGES: {c['detail']}") if c["ran"]
                                   else "skipped, needs " + "; ".join(c["missing"])))
    return "\n".join(lines)
