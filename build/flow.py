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
from .finn_env import XilinxToolMissing, prepare, require_vivado


@dataclass
class Ctx:
    cfg: BuildConfig
    board: Board
    work: Path
    dcfg: object = None  # finn DataflowBuildConfig
    notes: dict = field(default_factory=dict)

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

    from .folding import search, write_folding

    mode = ctx.cfg.folding
    if mode == "finn":
        model = step_target_fps_parallelization(model, ctx.dcfg)
    else:
        if mode == "search":
            target = int(1e9 / ctx.clock_ns / ctx.cfg.target_fps)
            choices = search(model, target, ctx.board.part)
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

    Vivado/Vitis only: runs in the Docker image of docker/ (docker/build_bitfile.sh).
    """
    require_vivado("bitfile generation (step_hw_ipgen .. step_synthesize_bitfile)")
    import finn.builder.build_dataflow_steps as S
    from finn.builder.build_dataflow_config import DataflowOutputType, ShellFlowType

    d = ctx.dcfg
    d.shell_flow_type = ShellFlowType.VITIS_ALVEO if ctx.board.shell == "vitis_alveo" else ShellFlowType.VIVADO_ZYNQ
    d.vitis_platform = ctx.board.vitis_platform
    d.generate_outputs = [DataflowOutputType.ESTIMATE_REPORTS, DataflowOutputType.STITCHED_IP,
                          DataflowOutputType.BITFILE, DataflowOutputType.PYNQ_DRIVER,
                          DataflowOutputType.DEPLOYMENT_PACKAGE]
    for step in (S.step_hw_codegen, S.step_hw_ipgen, S.step_set_fifo_depths, S.step_create_stitched_ip,
                 S.step_synthesize_bitfile, S.step_make_driver, S.step_deployment_package):
        model = step(model, d)
    return model


DEFAULT_STEPS = [step_load, step_to_hw, step_partition, step_specialize, step_folding, step_minimize, step_estimates]


def build(cfg: BuildConfig, steps=None, log=print) -> Path:
    """Run the flow into cfg.out (built in a temporary directory, renamed into place)."""
    prepare()
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
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    ctx = Ctx(cfg, b, work)
    (work / "intermediate_models").mkdir()
    try:
        model = None
        for i, step in enumerate(steps, start=1):
            log(f"[{i}/{len(steps)}] {step.__name__}")
            model = step(model, ctx)
            model.save(str(work / "intermediate_models" / f"{i:02d}_{step.__name__}.onnx"))
        model.save(str(work / "model_dataflow.onnx"))
        rep = build_report(model, ctx)
        (work / "build_report.json").write_text(json.dumps(rep, indent=1))
        exp_io = json.loads((Path(cfg.export_dir) / "io.json").read_text())
        bit = None
        if cfg.bitfile:
            bit = "bitfile/finn-accel.xclbin" if b.shell == "vitis_alveo" else "bitfile/finn-accel.bit"
        (work / "driver_io.json").write_text(json.dumps({
            "io_shape_dict": rep["io_shape_dict"], "input_quant": exp_io["input_quant"],
            "classes": exp_io["classes"], "bitfile": bit, "board": b.name,
            "platform": "alveo" if b.shell == "vitis_alveo" else "zynq-iodma",
            "clock_ns": ctx.clock_ns, "export_dir": str(Path(cfg.export_dir).resolve())}, indent=1))
        log(format_report(rep))
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return out
