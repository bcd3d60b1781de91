"""The FINN build flow from an export directory: a list of (model, ctx) -> model steps.

Starts from `model_finn_streamlined.onnx` (export already ran QONNX->FINN, the 1D
fixes and streamlining, each checked against PyTorch) and runs FINN's own builder
steps: convert to HW layers (+ finn-plus's conv1d.step_convert_final_layers for the
final scale/bias), dataflow partition, specialise layers, folding (our LUT-minimal
search, FINN's target_fps, or a folding JSON), minimise bit widths, estimate
reports, and on request HLS/RTL code generation. FINN's verify_step checks the
streamlined and the HW-layer graphs against expected_output.npy in Python
execution; specialised layers only simulate with Vivado/Vitis (cppsim/rtlsim).
Everything needing Xilinx tools (IP generation, synthesis, bitfile) runs in the
Docker image of docker/ and fails here with a message naming the missing tool.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .boards import Board, board
from .config import BuildConfig
from export.finn_env import XilinxToolMissing, default_build_dir, prepare, require_vivado


@dataclass
class Ctx:
    cfg: BuildConfig
    board: Board
    work: Path
    dcfg: object = None  # finn DataflowBuildConfig
    notes: dict = field(default_factory=dict)
    target_fps: float = field(init=False)  # cfg.target_fps, or the rate found by --max-fps

    def __post_init__(self):
        self.target_fps = self.cfg.target_fps

    @property
    def clock_ns(self) -> float:
        return self.cfg.clock_ns or self.board.clock_ns


def _dataflow_cfg(ctx: Ctx):
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType, VerificationStepType

    b = ctx.board
    return DataflowBuildConfig(
        output_dir=str(ctx.work), synth_clk_period_ns=ctx.clock_ns, fpga_part=b.part, board=b.name,
        target_fps=ctx.cfg.target_fps, generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        verify_steps=[VerificationStepType.STREAMLINED_PYTHON],
        verify_input_npy=str(ctx.work / "input.npy"), verify_expected_output_npy=str(ctx.work / "expected_output.npy"),
        save_intermediate_models=True, mvau_wwidth_max=1024)


def _verify(model, ctx: Ctx, name: str):
    from finn.builder.build_dataflow_steps import verify_step

    verify_step(model, ctx.dcfg, name, need_parent=False)
    out = Path(ctx.dcfg.get_verification_output_directory())
    results = sorted(p.name for p in out.glob(f"verify_{name}_*"))
    if not results or any("FAIL" in r for r in results):
        raise RuntimeError(f"FINN verification '{name}' failed against expected_output.npy ({results})")
    ctx.notes.setdefault("verification", {})[name] = "SUCCESS"
    return model


def step_load(_, ctx: Ctx):
    from qonnx.core.modelwrapper import ModelWrapper

    src = Path(ctx.cfg.export_dir)
    need = ["model_finn_streamlined.onnx", "input.npy", "expected_output.npy", "io.json"]
    missing = [n for n in need if not (src / n).exists()]
    if missing:
        raise ValueError(f"{src}: not an export directory (missing {', '.join(missing)}); run python -m export.to_finn")
    for n in need[1:]:
        shutil.copy(src / n, ctx.work / n)
    ctx.dcfg = _dataflow_cfg(ctx)
    model = ModelWrapper(str(src / "model_finn_streamlined.onnx"))
    return _verify(model, ctx, "streamlined_python")


def step_to_hw(model, ctx: Ctx):
    from finn.builder.build_dataflow_steps import step_convert_to_hw
    from finn.builder.custom_step_library.conv1d import step_convert_final_layers

    model = step_convert_final_layers(step_convert_to_hw(model, ctx.dcfg), ctx.dcfg)
    non_hw = [n.op_type for n in model.graph.node if n.domain != "finn.custom_op.fpgadataflow"]
    if non_hw:
        raise RuntimeError(f"layers left without a HW implementation: {sorted(set(non_hw))}")
    return _verify(model, ctx, "hw_layers_python")


def step_partition(model, ctx: Ctx):
    from finn.builder.build_dataflow_steps import step_create_dataflow_partition

    return step_create_dataflow_partition(model, ctx.dcfg)


def step_specialize(model, ctx: Ctx):
    from finn.builder.build_dataflow_steps import step_specialize_layers

    return step_specialize_layers(model, ctx.dcfg)


def step_folding(model, ctx: Ctx):
    from finn.builder.build_dataflow_steps import step_apply_folding_config, step_target_fps_parallelization

    from .folding import candidates, choose, max_rate, totals, write_folding

    mode = ctx.cfg.folding
    if ctx.cfg.max_fps and mode != "search":
        raise ValueError(f"--max-fps needs --folding search, not {mode!r}")
    if mode == "finn":
        model = step_target_fps_parallelization(model, ctx.dcfg)
    else:
        if mode == "search":
            cands = candidates(model, ctx.board.part)
            if ctx.cfg.max_fps:
                avail = ctx.board.resources()
                budget = {k: ctx.cfg.util_cap * avail[k] for k in ("LUT", "BRAM_18K", "DSP")}
                try:
                    target, choices = max_rate(cands, budget)
                except ValueError as e:
                    raise ValueError(f"{ctx.board.name} at util cap {ctx.cfg.util_cap}: {e}") from None
                ctx.target_fps = 1e9 / ctx.clock_ns / target
                ctx.dcfg.target_fps = int(ctx.target_fps)
                ctx.notes["max_fps"] = {"util_cap": ctx.cfg.util_cap, "target_cycles": target,
                                        "fps": ctx.target_fps, "search_totals": totals(choices)}
            else:
                target = int(1e9 / ctx.clock_ns / ctx.cfg.target_fps)
                choices = choose(cands, target)
            path = write_folding(choices, ctx.work / "folding_config.json")
            ctx.notes["folding_search"] = {"target_cycles": target, "met": all(c.meets for c in choices),
                                           "unmet_layers": [c.node for c in choices if not c.meets]}
        else:
            path = Path(mode)
            if not path.is_file():
                raise ValueError(f"{path}: no such folding JSON")
            shutil.copy(path, ctx.work / "folding_config.json")
        ctx.dcfg.folding_config_file = str(ctx.work / "folding_config.json")
        model = step_apply_folding_config(model, ctx.dcfg)
    return model


def step_minimize(model, ctx: Ctx):
    from finn.builder.build_dataflow_steps import step_minimize_bit_width

    return step_minimize_bit_width(model, ctx.dcfg)


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
    from finn.builder.build_dataflow_config import DataflowOutputType, ShellFlowType

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
    return model


BITFILE_STEPS = ("step_generate_hardware", "step_create_stitched_ip", "step_prepare_synthesis",
                 "step_synthesize_bitfile", "step_make_driver", "step_deployment_package")


def refuse_runtime_weights(model) -> None:
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
        raise ValueError(f"{', '.join(bad)}: runtime-writable weights (ram_style 'ultra' needs them) are not "
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


DEFAULT_STEPS = [step_load, step_to_hw, step_partition, step_specialize, step_folding, step_minimize, step_estimates]


def build(cfg: BuildConfig, steps=None, log=print) -> Path:
    """Run the flow into cfg.out (built in a temporary directory, renamed into place).

    If a step after the first fails, the temporary directory is kept and BuildFailed names it.
    """
    from .report import build_report, format_report

    b = board(cfg.board)
    out = Path(cfg.out)
    if out.exists() and not cfg.force:
        raise ValueError(f"{out}: already exists (pass --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    steps = list(steps or DEFAULT_STEPS)
    if cfg.codegen:
        steps.append(step_codegen)
    if cfg.bitfile:
        steps.append(step_bitfile)
    if cfg.bitfile:  # fail before hours of work, not after
        require_vivado("bitfile generation (step_hw_ipgen .. step_synthesize_bitfile)")
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    ctx = Ctx(cfg, b, work)
    (work / "intermediate_models").mkdir()
    outer_build_dir = os.environ.get("FINN_BUILD_DIR")
    prepare(work / FINN_BUILD_SUBDIR)  # FINN's generated code and Vivado projects stay with the build
    step = None
    try:
        model = None
        for i, step in enumerate(steps, start=1):
            log(f"[{i}/{len(steps)}] {step.__name__}")
            model = step(model, ctx)
            model.save(str(work / "intermediate_models" / f"{i:02d}_{step.__name__}.onnx"))
        step = None
        model.save(str(work / "model_dataflow.onnx"))
        rep = build_report(model, ctx)
        (work / "build_report.json").write_text(json.dumps(rep, indent=1))
        _write_driver_io(work, out, rep, ctx)
        log(format_report(rep))
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    except BaseException as e:
        if step is steps[0]:  # the inputs were rejected: nothing worth keeping
            shutil.rmtree(work, ignore_errors=True)
            raise
        where = f"{step.__name__}" if step else "writing the build's reports"
        msg = (f"the build failed in {where} ({type(e).__name__}: {e}); its work directory is kept at {work} "
               f"(FINN's generated code and Vivado/Vitis logs under {work / FINN_BUILD_SUBDIR})")
        log(f"error: {msg}")
        if isinstance(e, Exception):
            raise BuildFailed(msg, work) from e
        raise
    finally:  # FINN_BUILD_DIR back to what it was: work/ is renamed or kept, never reused
        prepare(outer_build_dir or default_build_dir())
    return out


FINN_BUILD_SUBDIR = "finn_build"


class BuildFailed(RuntimeError):
    """A build step failed; `work` is the kept work directory."""

    def __init__(self, msg: str, work: Path):
        super().__init__(msg)
        self.work = work


def _write_driver_io(work: Path, out: Path, rep: dict, ctx: Ctx) -> None:
    """driver_io.json: what driver/ needs on the board; paths relative to the bundle, so it can move."""
    b, cfg = ctx.board, ctx.cfg
    exp_io = json.loads((Path(cfg.export_dir) / "io.json").read_text())
    bit = None
    if cfg.bitfile:
        found = sorted((work / "bitfile").glob("*.xclbin" if b.shell == "vitis_alveo" else "*.bit"))
        if len(found) != 1:
            raise RuntimeError(f"{work / 'bitfile'}: expected one bitfile from FINN, found "
                               f"{', '.join(p.name for p in found) or 'none'}")
        bit = found[0].relative_to(work).as_posix()  # bitfile/finn-accel.bit, Alveo bitfile/finn-accel-0.xclbin
    (work / "driver_io.json").write_text(json.dumps({
        "io_shape_dict": rep["io_shape_dict"], "input_quant": exp_io["input_quant"],
        "classes": exp_io["classes"], "bitfile": bit, "board": b.name,
        "platform": "alveo" if b.shell == "vitis_alveo" else "zynq-iodma", "clock_ns": ctx.clock_ns,
        "export_dir": os.path.relpath(Path(cfg.export_dir).resolve(), out.resolve())}, indent=1))
