"""The FINN build flow from an export directory: a list of (model, ctx) -> model steps.

Starts from `model_finn_streamlined.onnx` (export already ran QONNX->FINN, the 1D
fixes and streamlining, each checked against PyTorch) and runs FINN's own builder
steps: convert to HW layers (+ finn-plus's conv1d.step_convert_final_layers for the
final scale/bias), dataflow partition, specialise layers (FINN's rules, a JSON, or with
--impl search each MVAU/thresholding HLS or RTL as the fit chooses), folding (our max-utilisation
(default) or LUT-minimal search, FINN's target_fps, or a folding JSON, each checked against FINN's
folding rules: build/folding_rules.py), minimise bit widths, then the verification of the
folded graph on the export's check frames (build/verify_folded.py: the graph the
hardware is generated from, node by node), estimate reports, and on request HLS/RTL
code generation. FINN's verify_step checks the streamlined and the HW-layer graphs
against expected_output.npy in Python execution; with --cppsim the HLS layers of the
folded graph also run FINN's C++ simulation where finn-hlslib and Vitis HLS exist, and
the --bitfile flow runs FINN's folded cppsim and stitched-IP rtlsim verification.
Everything needing Xilinx tools (IP generation, synthesis, bitfile) runs in the
Docker image of docker/ and fails here with a message naming the missing tool.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from qonnx.transformation.base import Transformation

from radioml.atomic import write_json
from radioml.publish import KEPT, check_target, keep_failed, output_lock, publish, work_dir

from .boards import Board, board
from .class_output import OUTPUTS
from .config import BuildConfig
from .folding import IMPLS, OBJECTIVES
from export.finn_env import XilinxToolMissing, default_build_dir, prepare, require_vivado
from export.runner import find_step, format_times, run, short_name, step_file, step_name
from export.steps import FINN_STEPS, STREAMLINED_LAYOUT


class StepRefused(ValueError):
    """A build step refused its input (nothing worth keeping for inspection)."""


@dataclass
class Ctx:
    cfg: BuildConfig
    board: Board
    work: Path
    dcfg: object = None  # finn DataflowBuildConfig
    notes: dict = field(default_factory=dict)
    log: Callable = print
    export_io: object = None  # the export's ExportIO, its files verified once per build (check_inputs)
    verify: bool = True  # FINN's verify steps on (a build) or off (a graph made only to be estimated or folded)
    target_fps: float = field(init=False)  # cfg.target_fps, or the rate found by --max-fps

    def __post_init__(self):
        self.target_fps = self.cfg.target_fps

    @property
    def clock_ns(self) -> float:
        return self.cfg.clock_ns or self.board.clock_ns

    @property
    def work_dir(self) -> str:  # what the export's steps (export/steps.py) write beside
        return str(self.work)


def finn_verify_steps(cfg: BuildConfig) -> list:
    """FINN's own verification steps a build turns on: the streamlined graph always; with --bitfile
    (unless --no-finn-verify) the folded graph in cppsim and the stitched IP in rtlsim, which
    run before synthesis, so a mismatch shows before hours of it."""
    from finn.builder.build_dataflow_config import VerificationStepType as V

    steps = [V.STREAMLINED_PYTHON]
    if cfg.bitfile and cfg.finn_verify:
        steps += [V.FOLDED_HLS_CPPSIM, V.STITCHED_IP_RTLSIM]
    return steps


def _dataflow_cfg(ctx: Ctx):
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType

    b = ctx.board
    return DataflowBuildConfig(
        output_dir=str(ctx.work), synth_clk_period_ns=ctx.clock_ns, fpga_part=b.part, board=b.name,
        target_fps=ctx.cfg.target_fps, generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        verify_steps=finn_verify_steps(ctx.cfg),
        verify_input_npy=str(ctx.work / "input.npy"), verify_expected_output_npy=str(ctx.work / "expected_output.npy"),
        save_intermediate_models=True, mvau_wwidth_max=1024, standalone_thresholds=ctx.cfg.standalone_thresholds)


def _check_finn_verification(ctx: Ctx, name: str) -> None:
    """FINN's verify_step logs a failure and carries on: a FAIL result file (or none) fails the build."""
    out = Path(ctx.dcfg.get_verification_output_directory())
    results = sorted(p.name for p in out.glob(f"verify_{name}_*"))
    if not results or any("FAIL" in r for r in results):
        raise RuntimeError(f"FINN verification '{name}' failed against expected_output.npy ({results})")
    ctx.notes.setdefault("verification", {})[name] = "SUCCESS"


def _verify(model, ctx: Ctx, name: str):
    from finn.builder.build_dataflow_steps import verify_step

    if not ctx.verify:
        return model
    verify_step(model, ctx.dcfg, name, need_parent=False)
    _check_finn_verification(ctx, name)
    return model


# what a build reads from an export directory, each checked against the digest io.json recorded
EXPORT_FILES = ["model_finn_streamlined.onnx", "input.npy", "expected_output.npy", "golden.npz", "export_report.json",
                "model_qcdq.onnx"]


def check_export_dir(src: Path):
    """The export's io.json (ExportIO), every file the build reads verified against it; one-line errors."""
    from radioml.artifacts import ExportIO

    src = Path(src)
    if not src.is_dir() or not (src / "io.json").is_file():
        raise ValueError(f"{src}: not an export directory (no io.json); run python -m export.to_finn")
    return ExportIO.read(src, verify_files=EXPORT_FILES)


def step_load(_, ctx: Ctx):
    from qonnx.core.modelwrapper import ModelWrapper

    src = Path(ctx.cfg.export_dir)
    verified_export(ctx)
    for n in ("input.npy", "expected_output.npy"):
        shutil.copy(src / n, ctx.work / n)
    ctx.dcfg = _dataflow_cfg(ctx)
    model = ModelWrapper(str(src / "model_finn_streamlined.onnx"))
    return _verify(model, ctx, "streamlined_python")


def step_to_hw(model, ctx: Ctx):
    """FINN's step_convert_to_hw and finn-plus's step_convert_final_layers (with --output class after the
    graph is made to end in a TopK: build/class_output.py); a layer left without HW implementation fails."""
    from finn.builder.build_dataflow_steps import step_convert_to_hw
    from finn.builder.custom_step_library.conv1d import step_convert_final_layers

    if ctx.cfg.output == "class":
        from .class_output import end_in_class_index

        model = end_in_class_index(model)
        if ctx.verify:  # FINN's verification compares with the top-1 class of the expected logits
            logits = np.load(Path(ctx.cfg.export_dir) / "expected_output.npy")
            np.save(ctx.work / "expected_output.npy",
                    logits.reshape(len(logits), -1).argmax(1)[:, None].astype(np.float32))
    model = step_convert_final_layers(step_convert_to_hw(model, ctx.dcfg), ctx.dcfg)
    non_hw = [n.op_type for n in model.graph.node if n.domain != "finn.custom_op.fpgadataflow"]
    if non_hw:
        raise RuntimeError(f"layers left without a HW implementation: {sorted(set(non_hw))}")
    return _verify(model, ctx, "hw_layers_python")


def step_partition(model, ctx: Ctx):
    from finn.builder.build_dataflow_steps import step_create_dataflow_partition

    return step_create_dataflow_partition(model, ctx.dcfg)


def step_specialize(model, ctx: Ctx):
    """FINN's step_specialize_layers; a --specialize-layers JSON naming a node this graph lacks is refused
    (FINN's ApplyConfig only warns and goes on)."""
    from finn.builder.build_dataflow_steps import step_specialize_layers
    from qonnx.transformation.general import GiveUniqueNodeNames

    if ctx.cfg.impl == "search":
        model = model.transform(GiveUniqueNodeNames())
        cfg = _search_impl(model, ctx)
        plain = [n.name for n in model.graph.node]
        model = _specialise_as(model, cfg, ctx, ctx.work / "specialize_layers.json", "the --impl search")
        ctx.notes["impl_search"]["nodes"] = {a: b.name for a, b in zip(plain, model.graph.node) if a in cfg}
        return model
    if ctx.cfg.specialize_layers:
        cfg = read_folding_json(ctx.cfg.specialize_layers, "specialize-layers JSON")
        model = model.transform(GiveUniqueNodeNames())  # the names FINN's step gives before applying the file
        refuse_unknown_nodes(model, cfg, ctx.cfg.specialize_layers, "before specialisation")
        return _specialise_as(model, cfg, ctx, ctx.work / "specialize_layers.json", ctx.cfg.specialize_layers)
    return step_specialize_layers(model, ctx.dcfg)


def _specialise_as(model, cfg: dict, ctx: Ctx, path: Path, source: str, dcfg=None):
    """FINN's step_specialize_layers with a specialize-layers config (written to `path`), refused in the name of
    `source` where FINN could not give a node the style asked for (it only warns; no source: accepted)."""
    from finn.builder.build_dataflow_steps import step_specialize_layers

    write_json(path, cfg)
    dcfg = dcfg or ctx.dcfg
    dcfg.specialize_layers_config_file = str(path)
    before = [n.name for n in model.graph.node]
    model = step_specialize_layers(model, dcfg)
    after = [n.op_type for n in model.graph.node]
    asked = {name: c["preferred_impl_style"] for name, c in cfg.items() if "preferred_impl_style" in c}
    unmet = [f"{name} ({asked[name]} asked, FINN made {op})" for name, op in zip(before, after)
             if name in asked and not op.endswith("_" + asked[name])]
    if unmet and source:
        raise StepRefused(f"{source}: FINN has no such variant of {', '.join(unmet)}")
    return model


def impl_variants(model, ctx: Ctx) -> dict:
    """The graph (named, not yet specialised) specialised once with every MVAU and thresholding layer asking for
    HLS and once for RTL: {"hls": graph, "rtl": graph}; where FINN cannot give a style it keeps its own choice,
    and the variant's node types say which."""
    from .folding import VARIED_IMPL

    varied = [n.name for n in model.graph.node if n.op_type in VARIED_IMPL]
    out = {style: _specialise_as(model, {n: {"preferred_impl_style": style} for n in varied}, ctx,
                                 ctx.work / f"specialize_all_{style}.json", "", copy.copy(ctx.dcfg))
           for style in ("hls", "rtl")}
    if varied and [n.op_type for n in out["hls"].graph.node] == [n.op_type for n in out["rtl"].graph.node]:
        raise StepRefused(f"--impl search: FINN specialised {', '.join(varied[:3])}{' ...' if len(varied) > 3 else ''} "
                          f"the same way whatever style was asked (nothing to choose between)")
    return out


def _search_impl(model, ctx: Ctx) -> dict:
    """The specialize-layers config of --impl search: every unit's options of both impl_variants fitted together
    (build/fit.py) at the build's rate; step_folding then folds the chosen mix by the same fit, which finds the
    same optimum among fewer options."""
    from .folding import impl_candidates, specialize_config

    variants = impl_variants(model, ctx)
    _, choices = _fold_search(impl_candidates(model, variants, ctx.board.part, memories=True), ctx)
    cfg = specialize_config(choices)
    ctx.notes["impl_search"] = {s: sorted(n for n, c in cfg.items() if c["preferred_impl_style"] == s)
                                for s in ("hls", "rtl")}
    return cfg


def step_folding(model, ctx: Ctx):
    from finn.builder.build_dataflow_steps import step_apply_folding_config, step_target_fps_parallelization

    from .folding import candidates, totals, write_folding

    mode = ctx.cfg.folding
    if ctx.cfg.max_fps and mode != "search":
        raise ValueError(f"--max-fps needs --folding search, not {mode!r}")
    if mode == "finn":
        model = step_target_fps_parallelization(model, ctx.dcfg)
    else:
        if mode == "search":
            memories = ctx.cfg.fit == "max-utilisation"  # LUTRAM weights only ever cost more LUT
            target, choices = _fold_search(candidates(model, ctx.board.part, memories), ctx)
            write_folding(choices, ctx.work / "folding_config.json")
            ctx.notes["folding_search"] = {"objective": ctx.cfg.fit, "target_cycles": target,
                                           "met": all(c.meets for c in choices),
                                           "unmet_layers": [c.node for c in choices if not c.meets],
                                           "totals": totals(choices)}  # FINN's estimates before minimising widths
        else:
            write_json(ctx.work / "folding_config.json", read_folding_json(mode))
        ctx.dcfg.folding_config_file = str(ctx.work / "folding_config.json")
        model = step_apply_folding_config(model, ctx.dcfg)
    refuse_rule_breaking_folding(model, f"the {mode} folding" if mode in ("search", "finn") else mode)
    return model


def _fold_search(cands: dict, ctx: Ctx) -> tuple[int, list]:
    """(target cycles, choice per unit) of the folding search: at --target-fps, or with --max-fps the fastest rate
    whose choice fits --util-cap of the part (setting ctx.target_fps)."""
    from .folding import chooser, max_rate, totals

    avail = ctx.board.resources()
    pick = chooser(ctx.cfg.fit, avail)
    if not ctx.cfg.max_fps:
        target = int(1e9 / ctx.clock_ns / ctx.cfg.target_fps)
        return target, pick(cands, target)
    budget = {k: ctx.cfg.util_cap * avail[k] for k in ("LUT", "BRAM_18K", "DSP")}
    try:
        target, choices = max_rate(cands, budget, pick)
    except ValueError as e:
        raise ValueError(f"{ctx.board.name} at util cap {ctx.cfg.util_cap}: {e}") from None
    ctx.target_fps = 1e9 / ctx.clock_ns / target
    ctx.dcfg.target_fps = int(ctx.target_fps)
    ctx.notes["max_fps"] = {"util_cap": ctx.cfg.util_cap, "target_cycles": target, "fps": ctx.target_fps,
                            "search_totals": totals(choices)}
    return target, choices


def step_minimize(model, ctx: Ctx):
    from finn.builder.build_dataflow_config import VerificationStepType
    from finn.builder.build_dataflow_steps import step_minimize_bit_width

    model = step_minimize_bit_width(model, ctx.dcfg)
    if VerificationStepType.FOLDED_HLS_CPPSIM in ctx.dcfg.verify_steps:
        _check_finn_verification(ctx, "folded_hls_cppsim")
    return model


def step_verify_folded(model, ctx: Ctx):
    """The folded, specialised graph on the export's check frames, node by node (build/verify_folded.py);
    with --cppsim its HLS layers also in FINN's C++ simulation, where the tools exist."""
    from .verify_folded import cppsim_missing, prepare_cppsim, verify_folded

    ints, ref_logits, ties, streamlined, reference = _check_frames(ctx)
    res = verify_folded(model, streamlined, ints, ref_logits, ties, progress=_progress(ctx, "python"))
    ctx.notes["folded_verification"] = res.to_dict()
    if not res.ok:
        raise FoldedGraphDiverges(f"the folded dataflow graph diverges from the checked export on {res.frames} "
                                  f"check frames: {res.detail}")
    ctx.log(f"  folded graph bit-exact with the streamlined export graph on {res.frames} check frames "
            f"(every node against FINN's Python reference; top-1 {res.reference['top1_agreement']:.0%} with {reference})")
    if ctx.cfg.cppsim:
        missing = cppsim_missing()
        if missing:
            ctx.notes["cppsim"] = {"ran": False, "missing": missing}
            ctx.log("  cppsim skipped: it needs " + "; ".join(missing))
        else:
            ctx.log("  cppsim: compiling every HLS layer (about half a minute each)")
            res = verify_folded(prepare_cppsim(copy.deepcopy(model)), streamlined, ints, ref_logits, ties,
                                cppsim=True, progress=_progress(ctx, "cppsim"))
            ctx.notes["cppsim"] = {"ran": True, **res.to_dict()}
            if not res.ok:
                raise FoldedGraphDiverges(f"cppsim of the folded graph diverges on {res.frames} check frames: "
                                          f"{res.detail}")
    return model


def _progress(ctx: Ctx, what: str):
    def show(done, total):
        if done == total or done % 8 == 0:
            ctx.log(f"  verifying the folded graph ({what}): {done}/{total} frames")
    return show


def _check_frames(ctx: Ctx):
    """(integer frames in the graph's input layout, reference logits, rounding-tie frames the export excused,
    the streamlined graph (ending in the TopK with --output class), what the reference is) from the export."""
    from qonnx.core.modelwrapper import ModelWrapper

    from export.report_file import ExportReport
    from export.steps import phases_of, to_layout

    src = Path(ctx.cfg.export_dir)
    io = verified_export(ctx)
    g = np.load(src / "golden.npz")
    frames, ref_logits = g["frames"], g["reference_logits"]
    if ctx.cfg.verify_frames:
        frames, ref_logits = frames[:ctx.cfg.verify_frames], ref_logits[:ctx.cfg.verify_frames]
    rep = ExportReport.read(src)
    excused = set(rep.stage(f"finn/{short_name(FINN_STEPS[-1])}")["excused"])
    ties = np.array([k in excused for k in range(len(frames))])
    streamlined = ModelWrapper(str(src / "model_finn_streamlined.onnx"))
    ints = to_layout(io.input_quant.quantize(frames), STREAMLINED_LAYOUT, phases_of(streamlined, STREAMLINED_LAYOUT))
    if ctx.cfg.output == "class":
        from .class_output import end_in_class_index

        streamlined = end_in_class_index(streamlined)
    return ints, ref_logits, ties, streamlined, rep.reference


class FoldedGraphDiverges(RuntimeError):
    """The folded graph the hardware is generated from does not compute what the export checked."""


def read_folding_json(path, what: str = "folding JSON") -> dict:
    """A node-config JSON as FINN's ApplyConfig reads it (node name -> {attribute: value}, optional Defaults):
    a folding JSON, or a specialize-layers JSON."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable {what} ({e})") from None
    if not isinstance(cfg, dict) or not all(isinstance(v, dict) for v in cfg.values()):
        raise StepRefused(f"{path}: a {what} maps node names to attribute dicts")
    for node, attrs in cfg.items():
        for name, v in attrs.items():
            if any(isinstance(x, (bool, float)) or x is None for x in (v if isinstance(v, list) else [v])):
                raise StepRefused(f"{path}: {node}.{name} is {json.dumps(v)}: FINN's node attributes are whole "
                                  f"numbers, strings or lists of them")
    return cfg


def refuse_unknown_nodes(model, cfg: dict, where, when: str, hint: str = "") -> None:
    """FINN's ApplyConfig skips entries naming no node, node by node: a config written for another FINN version
    or topology is refused instead, with every unmatched name and this graph's layer names."""
    names = [n.name for n in model.graph.node]
    unknown = sorted(k for k in cfg if k != "Defaults" and k not in names)
    if unknown:
        entries = sum(k != "Defaults" for k in cfg)
        raise StepRefused(f"{where}: no node named {', '.join(unknown)} {when} ({len(unknown)} of {entries} "
                         f"entries match no node; a config of another FINN version or topology names other "
                         f"nodes: this graph's layers are {', '.join(names)}{hint})")


def apply_folding_json(model, cfg: dict, where: str):
    """The model with a folding JSON applied by FINN's ApplyConfig; unknown nodes or attributes refused."""
    from finn.transformation.general import ApplyConfig

    refuse_unknown_nodes(model, cfg, where, "in this graph", "; a build's folding_config.json is a template")
    try:
        return copy.deepcopy(model).transform(ApplyConfig(cfg))
    except (AttributeError, AssertionError, ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}") from None


def refuse_rule_breaking_folding(model, where: str) -> None:
    from .folding_rules import violations

    bad = violations(model)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{where}: {bad[0]}{more}")


def check_folding_file(cfg: BuildConfig, log) -> None:
    """A --folding FILE checked against FINN's rules on the graph it will fold, before any build step:
    the export's graph taken through the conversion steps in memory (a few seconds)."""
    from qonnx.core.modelwrapper import ModelWrapper

    fold = read_folding_json(cfg.folding)
    log(f"checking {cfg.folding} against FINN's folding rules")
    model = specialised_graph(ModelWrapper(str(Path(cfg.export_dir) / "model_finn_streamlined.onnx")), cfg)
    folded = apply_folding_json(model, fold, cfg.folding)
    refuse_rule_breaking_folding(folded, cfg.folding)
    refuse_runtime_weights(folded, f"{cfg.folding}: ")


def graph_ctx(cfg: BuildConfig, work: Path) -> Ctx:
    """The context of a graph made only to be folded or estimated: no verification, quiet."""
    ctx = Ctx(cfg, board(cfg.board), Path(work), log=lambda *_: None, verify=False)
    ctx.dcfg = _dataflow_cfg(ctx)
    ctx.dcfg.verify_steps = []
    return ctx


def specialised_graph(streamlined, cfg: BuildConfig):
    """A streamlined graph taken through this build's steps up to specialisation in memory, unverified (a few
    seconds): the graph the folding applies to."""
    with tempfile.TemporaryDirectory(prefix=".specialise-") as tmp:
        return run(streamlined, DEFAULT_STEPS, graph_ctx(cfg, Path(tmp)), start="step_to_hw",
                   stop="step_specialize")


def step_estimates(model, ctx: Ctx):
    from finn.builder.build_dataflow_steps import step_generate_estimate_reports

    return step_generate_estimate_reports(model, ctx.dcfg)


def step_codegen(model, ctx: Ctx):
    from finn.builder.build_dataflow_steps import step_hw_codegen

    return step_hw_codegen(model, ctx.dcfg)


def step_bitfile(model, ctx: Ctx):
    """IP generation, FIFO sizing, stitching, synthesis, FINN's driver and the deployment package.

    The steps and their order are FINN's default flow (build_dataflow_config.default_build_dataflow_steps)
    from step_generate_hardware on, including step_prepare_synthesis, which on Alveo inserts the
    IODMAs and packages the Vitis kernels. Vivado/Vitis only: runs in the Docker image of docker/
    (docker/build_bitfile.sh); Alveo also needs XRT and the Vitis platform (PLATFORM_REPO_PATHS).
    """
    require_vivado("bitfile generation (step_hw_ipgen .. step_synthesize_bitfile)")
    refuse_runtime_weights(model)
    import finn.builder.build_dataflow_steps as S
    from finn.builder.build_dataflow_config import DataflowOutputType, ShellFlowType, VerificationStepType

    alveo = ctx.board.shell == "vitis_alveo"
    if alveo:
        require_alveo_platform(ctx.board.vitis_platform)
    d = ctx.dcfg
    d.shell_flow_type = ShellFlowType.VITIS_ALVEO if alveo else ShellFlowType.VIVADO_ZYNQ
    d.vitis_platform = ctx.board.vitis_platform
    d.generate_outputs = [DataflowOutputType.ESTIMATE_REPORTS, DataflowOutputType.STITCHED_IP,
                          DataflowOutputType.BITFILE, DataflowOutputType.PYNQ_DRIVER,
                          DataflowOutputType.DEPLOYMENT_PACKAGE]
    for step in BITFILE_STEPS:
        model = getattr(S, step)(model, d)
        if step == "step_create_stitched_ip" and VerificationStepType.STITCHED_IP_RTLSIM in d.verify_steps:
            _check_finn_verification(ctx, "stitched_ip_rtlsim")
    return model


BITFILE_STEPS = ("step_generate_hardware", "step_create_stitched_ip", "step_prepare_synthesis",
                 "step_synthesize_bitfile", "step_make_driver", "step_deployment_package")


def refuse_runtime_weights(model, where: str = "") -> None:
    """driver/ loads no runtime-writable weights; FINN forces them for weights in URAM (ram_style 'ultra')."""
    from qonnx.custom_op.registry import getCustomOp

    bad = []
    for node in model.graph.node:
        inst = getCustomOp(node)
        types = inst.get_nodeattr_types()
        if "runtime_writeable_weights" in types and (
                inst.get_nodeattr("runtime_writeable_weights") or
                ("ram_style" in types and inst.get_nodeattr("ram_style") == "ultra")):
            bad.append(node.name)
    if bad:
        raise StepRefused(f"{where}{', '.join(bad)}: runtime-writable weights (ram_style 'ultra' needs them) are not "
                         f"supported by driver/; set ram_style to 'block' or 'distributed' in the folding JSON")


def require_alveo_platform(platform: str) -> None:
    """Vitis links against the platform's .xpfm under PLATFORM_REPO_PATHS and needs XRT (XILINX_XRT)."""
    repos = [p for p in os.environ.get("PLATFORM_REPO_PATHS", "").split(":") if p]
    if not any(Path(r, platform).is_dir() for r in repos):
        raise XilinxToolMissing(f"the Alveo build needs the Vitis platform {platform}: PLATFORM_REPO_PATHS "
                                f"({':'.join(repos) or 'unset'}) has no {platform}/ (install it, e.g. under "
                                f"/opt/xilinx/platforms)")
    if not os.environ.get("XILINX_XRT") or not Path(os.environ["XILINX_XRT"]).is_dir():
        raise XilinxToolMissing("the Alveo build needs XRT: source /opt/xilinx/xrt/setup.sh (XILINX_XRT is "
                                f"{os.environ.get('XILINX_XRT') or 'unset'})")


# FINN's flow after the export's steps (export/steps.py FINN_STEPS): one flow, cut at model_finn_streamlined.onnx
BUILD_STEPS = [step_to_hw, step_partition, step_specialize, step_folding, step_minimize, step_verify_folded,
               step_estimates]
FINN_FLOW = FINN_STEPS + BUILD_STEPS  # from the integer-input QONNX graph (compress/estimates.py runs it so)
DEFAULT_STEPS = [step_load] + BUILD_STEPS  # a build: from an export directory


COMMAND = "build"


def check_inputs(cfg: BuildConfig):
    """Every option and input file, before any step runs (one-line errors naming the flag or file); returns the
    export's ExportIO, its files verified (the steps reuse it: the export is hashed once a build)."""
    board(cfg.board)
    if cfg.clock_ns is not None and not (math.isfinite(cfg.clock_ns) and cfg.clock_ns > 0):
        raise ValueError(f"--clock-ns must be a positive number of ns, got {cfg.clock_ns:g}")
    if not cfg.max_fps and not (isinstance(cfg.target_fps, int) and cfg.target_fps >= 1):
        raise ValueError(f"--target-fps must be a whole number of frames/s >= 1, got {cfg.target_fps}")
    if not 0 < cfg.util_cap <= 1:
        raise ValueError(f"--util-cap must be in (0, 1], got {cfg.util_cap}")
    if cfg.output not in OUTPUTS:
        raise ValueError(f"--output must be one of {', '.join(OUTPUTS)}, got {cfg.output!r}")
    if cfg.verify_frames is not None and cfg.verify_frames < 1:
        raise ValueError(f"--verify-frames must be >= 1, got {cfg.verify_frames}")
    if cfg.fit not in OBJECTIVES:
        raise ValueError(f"--fit must be one of {', '.join(OBJECTIVES)}, got {cfg.fit!r}")
    if cfg.fit != "lut" and cfg.folding != "search":
        raise ValueError(f"--fit {cfg.fit} needs --folding search, not {cfg.folding!r}")
    if cfg.impl not in IMPLS:
        raise ValueError(f"--impl must be one of {', '.join(IMPLS)}, got {cfg.impl!r}")
    if cfg.impl == "search" and cfg.fit != "max-utilisation":  # LUT alone would make every layer RTL
        raise ValueError(f"--impl search needs --fit max-utilisation (and --folding search), not --fit {cfg.fit}")
    if cfg.impl == "search" and cfg.specialize_layers:
        raise ValueError("--impl search chooses every layer's style itself: drop --specialize-layers, or use "
                         "--impl finn")
    export_io = check_export_dir(Path(cfg.export_dir))
    if cfg.output == "class":  # a graph that cannot end in a LabelSelect is refused before any step
        from qonnx.core.modelwrapper import ModelWrapper

        from .class_output import end_in_class_index

        prepare()
        streamlined = Path(cfg.export_dir) / "model_finn_streamlined.onnx"
        try:
            end_in_class_index(ModelWrapper(str(streamlined)))
        except ValueError as e:
            raise ValueError(f"{streamlined}: {e}") from None
    folding_file = None if cfg.folding in ("search", "finn") else Path(cfg.folding)
    if cfg.specialize_layers:
        read_folding_json(cfg.specialize_layers, "specialize-layers JSON")
    check_target(Path(cfg.out), COMMAND, [cfg.export_dir, folding_file, cfg.specialize_layers], cfg.force)
    if cfg.bitfile:  # fail before hours of work, not after
        require_vivado("bitfile generation (step_hw_ipgen .. step_synthesize_bitfile)")
    return export_io


def verified_export(ctx: Ctx):
    """The export's ExportIO with its files verified: once a build (check_inputs), or now for a bare context."""
    if ctx.export_io is None:
        ctx.export_io = check_export_dir(Path(ctx.cfg.export_dir))
    return ctx.export_io


def build(cfg: BuildConfig, steps=None, log=print) -> Path:
    """Run the flow into cfg.out (built in a work directory beside it, published by rename); one process at a
    time per --out.

    If a step after the first fails, the work directory is kept (while the disk has room) and
    BuildFailed names it; a step that refuses its input (StepRefused) keeps nothing.
    """
    with output_lock(cfg.out):
        return _build(cfg, steps, log)


def build_steps(cfg: BuildConfig, steps=None) -> list:
    """The steps of a build with these options: the default flow (or `steps`), then code generation and the
    bitfile flow when asked for."""
    steps = list(steps or DEFAULT_STEPS)
    if cfg.codegen:
        steps.append(step_codegen)
    if cfg.bitfile:
        steps.append(step_bitfile)
    return steps


def _start(cfg: BuildConfig, steps: list, out: Path, log) -> tuple[Path, object, list, dict]:
    """(work directory, model to start from, steps done, resume state) of a new build, or of one resumed from
    the work directory a failed or stopped build of `out` kept (--start-step)."""
    from qonnx.core.modelwrapper import ModelWrapper

    from . import resume
    from .report import build_inputs

    if not cfg.start_step:
        work = work_dir(out)
        (work / "intermediate_models").mkdir()
        return work, None, [], {}
    first = find_step(steps, cfg.start_step, "--start-step")
    previous = step_name(steps[first - 1]) if first else None
    kept = resume.find_resumable(out, build_inputs(cfg), previous)
    state = resume.read_state(kept)
    work = resume.take_over(kept)
    model = None
    if previous:
        model = ModelWrapper(str(work / "intermediate_models" / step_file(first, steps[first - 1])))
        model = model.transform(RebasePaths(str(kept), str(work)))  # its generated code moved with the directory
    log(f"resuming {kept.name} (steps done: {', '.join(state['done']) or 'none'}) from {step_name(steps[first])}")
    return work, model, state["done"][:first], state


def _build(cfg: BuildConfig, steps, log) -> Path:
    from . import resume
    from .report import BuildReport, build_inputs, build_report, format_report

    steps = build_steps(cfg, steps)
    for flag, name in (("--start-step", cfg.start_step), ("--stop-step", cfg.stop_step)):
        if name:
            find_step(steps, name, flag)
    export_io = check_inputs(cfg)
    b = board(cfg.board)
    out = Path(cfg.out)
    if cfg.folding not in ("search", "finn"):
        prepare()
        check_folding_file(cfg, log)
    work, model, done, state = _start(cfg, steps, out, log)
    ctx = Ctx(cfg, b, work, log=log, export_io=export_io)
    ctx.notes.update(state.get("notes", {}))
    if state:
        ctx.target_fps = state["target_fps"]
    outer_build_dir = os.environ.get("FINN_BUILD_DIR")
    prepare(work / FINN_BUILD_SUBDIR)  # FINN's generated code and Vivado projects stay with the build
    if state:  # step_load, which sets FINN's config, ran in the build being resumed
        ctx.dcfg = _dataflow_cfg(ctx)
        ctx.dcfg.target_fps = int(ctx.target_fps)
        if (work / "folding_config.json").is_file():
            ctx.dcfg.folding_config_file = str(work / "folding_config.json")
    inputs = build_inputs(cfg)
    times: dict = dict(ctx.notes.pop("time_per_step", {}))
    current = [cfg.start_step and steps[find_step(steps, cfg.start_step)] or steps[0]]

    def record(i, step, _model):
        done.append(step_name(step))
        current[0] = steps[i + 1] if i + 1 < len(steps) else None
        resume.write_state(work, inputs, done, {**ctx.notes, "time_per_step": times}, ctx.target_fps)

    try:
        model = run(model, steps, ctx, start=cfg.start_step, stop=cfg.stop_step,
                    save_dir=work / "intermediate_models", log=log, times=times, after_step=record)
        if cfg.stop_step and current[0] is not None:
            (work / KEPT).write_text(f"stopped after {cfg.stop_step}; resume with --start-step\n")
            log(f"stopped after {step_name(steps[find_step(steps, cfg.stop_step)])}; the work directory is kept at "
                f"{work}; finish with: {resume.resume_command(cfg, step_name(current[0]))}")
            return work
        current[0] = None
        model = model.transform(RebasePaths(str(work), str(out.resolve())))  # where its code lives once published
        model.save(str(work / "model_dataflow.onnx"))
        rep = build_report(model, ctx)
        rep["time_per_step"] = times
        BuildReport(rep).write(work)
        _write_driver_io(work, out, rep, ctx)
        (work / resume.FILE).unlink()
        log(format_report(rep))
        log(format_times(times))
        publish(work, out, COMMAND, log)
    except BaseException as e:
        step = current[0]
        if (step is steps[0] and not done) or isinstance(e, StepRefused):  # inputs rejected: nothing to keep
            shutil.rmtree(work, ignore_errors=True)
            raise
        where = step_name(step) if step else "writing the build's reports"
        kept = keep_failed(work)
        again = f"; resume with: {resume.resume_command(cfg, step_name(step))}" if step and KEPT in kept_text(work) \
            else ""
        msg = (f"the build failed in {where} ({type(e).__name__}: {e}); {kept} "
               f"(FINN's generated code and Vivado/Vitis logs under its {FINN_BUILD_SUBDIR}/){again}")
        log(f"error: {msg}")
        if isinstance(e, Exception):
            raise BuildFailed(msg, work) from e
        raise
    finally:  # FINN_BUILD_DIR back to what it was: work/ is renamed or kept, never reused by another build
        prepare(outer_build_dir or default_build_dir())
    return out


def kept_text(work: Path) -> str:
    """KEPT when keep_failed kept `work` (the disk had room), else ''."""
    return KEPT if (Path(work) / KEPT).exists() else ""


FINN_BUILD_SUBDIR = "finn_build"


class RebasePaths(Transformation):
    """Node attributes naming files under `old` (code_gen_dir_*, ip_path, ...) renamed to under `new`:
    the work directory is renamed into place when the build ends."""

    def __init__(self, old: str, new: str):
        super().__init__()
        self.old, self.new = old.rstrip("/") + "/", new.rstrip("/") + "/"

    def apply(self, model):
        from onnx import AttributeProto

        for node in model.graph.node:
            for a in node.attribute:
                if a.type == AttributeProto.STRING and a.s.decode().startswith(self.old):
                    a.s = (self.new + a.s.decode()[len(self.old):]).encode()
        return model, False


class BuildFailed(RuntimeError):
    """A build step failed; `work` is the kept work directory."""

    def __init__(self, msg: str, work: Path):
        super().__init__(msg)
        self.work = work


def _write_driver_io(work: Path, out: Path, rep: dict, ctx: Ctx) -> None:
    """driver_io.json: what driver/ needs on the board; paths relative to the bundle, so it can move. Beside it
    FINN's driver/settings.json, what finn-plus-driver reads (radioml/finn_settings.py)."""
    from radioml.artifacts import DriverIO
    from radioml.finn_settings import write_finn_settings

    b, cfg = ctx.board, ctx.cfg
    exp_io = verified_export(ctx)
    bit = None
    if cfg.bitfile:
        found = sorted((work / "bitfile").glob("*.xclbin" if b.shell == "vitis_alveo" else "*.bit"))
        if len(found) != 1:
            raise RuntimeError(f"{work / 'bitfile'}: expected one bitfile from FINN, found "
                               f"{', '.join(p.name for p in found) or 'none'}")
        bit = found[0].relative_to(work).as_posix()  # bitfile/finn-accel.bit, Alveo bitfile/finn-accel-0.xclbin
    platform = "alveo" if b.shell == "vitis_alveo" else "zynq-iodma"
    dio = DriverIO(io_shape_dict=rep["io_shape_dict"], input_quant=exp_io.input_quant, classes=exp_io.classes,
                   bitfile=bit, board=b.name, platform=platform, clock_ns=ctx.clock_ns, output=cfg.output,
                   export_dir=os.path.relpath(Path(cfg.export_dir).resolve(), out.resolve()),
                   export_files=exp_io.files)
    dio.write(work)
    write_finn_settings(work, dio)
