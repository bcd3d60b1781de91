"""`python -m export.to_finn --run RUN --out DIR`: QONNX, QCDQ and FINN-ready models, checked bit for bit.

The source is a model this project trained (--run), a freshly initialised one (--fresh-bits),
or a QONNX file of any 1D CNN (--qonnx FILE, e.g. Brevitas' export_qonnx of your own model
with input (1, 2, 1024)); then the reference of every check is the QONNX graph executed by
qonnx instead of PyTorch. Writes into DIR (built in a temporary directory, renamed into place only when every
check passed, so DIR is either complete or absent):

  model_qonnx.onnx               QONNX, batch 1 (what qonnx inference_cost scores)
  model_qcdq.onnx                QCDQ, dynamic batch: the golden model for plain onnxruntime
  steps/NN_<step>.onnx           every FINN-side intermediate graph
  model_finn_streamlined.onnx    the graph FINN's builder starts from (integer input, channels last)
  input.npy, expected_output.npy one frame for FINN's verification steps
  io.json                        input quantiser, shapes, layouts, datatypes, class names
  golden.npz                     the check frames and their reference logits (`python -m export.check DIR`)
  export_report.json             per-stage differences and agreement, inference cost
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

from radioml.classes import CLASSES
from radioml.cli import run_main
from radioml.publish import check_target, output_lock, publish, work_dir

from .config import ExportConfig


def _frames(cfg: ExportConfig):
    """Real frames from the test split, evenly spread over classes and SNRs."""
    from radioml.dataset import RadioMLFile

    with RadioMLFile(cfg.data) as ds:
        test = ds.split().test
        pick = test[np.linspace(0, len(test) - 1, cfg.check_frames).round().astype(int)]
        x = np.ascontiguousarray(ds.read(pick).transpose(0, 2, 1))
        return x, pick, ds.labels[pick]


def table(report) -> str:
    rows = [("stage", "max |dlogit|", "top-1 agree", "ints exact", "verdict")]
    for s in report.stages:
        exact = "-" if s.integer_exact is None else ("yes" if s.integer_exact else "NO")
        rows.append((s.stage, f"{s.max_abs_diff:.3g}", f"{s.top1_agreement:.2%}", exact,
                     ("ok" if s.ok else "FAIL: " + s.detail)
                     + (f" ({s.tie_frames} frames differ through a rounding tie)" if s.tie_frames else "")))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w[i]) if i < 4 else c for i, c in enumerate(r)) for r in rows)


COMMAND = "export.to_finn"


def check_inputs(cfg: ExportConfig) -> None:
    """Everything checkable before the model is loaded: the output directory, the options, the data file."""
    from radioml.dataset import RadioMLFile

    out = Path(cfg.out)
    if sum(s is not None for s in (cfg.run, cfg.fresh_bits, cfg.qonnx)) != 1:
        raise ValueError("pass exactly one of --run, --fresh-bits or --qonnx")
    if cfg.fresh_bits is not None and not 2 <= cfg.fresh_bits <= 16:
        raise ValueError(f"--fresh-bits must be in 2..16, got {cfg.fresh_bits}")
    if cfg.check_frames < 1:
        raise ValueError(f"--check-frames must be >= 1, got {cfg.check_frames}")
    if not cfg.tol > 0:
        raise ValueError(f"--tol must be > 0, got {cfg.tol}")
    if cfg.run is not None:
        run = Path(cfg.run)
        if run.suffix == ".onnx":
            raise ValueError(f"{run}: an ONNX file; --run takes a run directory, model.pt or checkpoint.pt "
                             f"(a QONNX file goes in with --qonnx)")
        if not run.exists():
            raise ValueError(f"{run}: no such file or directory")
    if cfg.qonnx is not None:
        from .qonnx_source import check_qonnx_file

        check_qonnx_file(cfg.qonnx)
    check_target(out, COMMAND, [cfg.run, cfg.qonnx, cfg.data], cfg.force)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise ValueError(f"{out.parent}: not writable")
    with RadioMLFile(cfg.data) as ds:
        if cfg.check_frames > len(ds.split().test):
            raise ValueError(f"--check-frames {cfg.check_frames}: {cfg.data} has only {len(ds.split().test)} test frames")


def _source_model(cfg: ExportConfig):
    """(model, ModelConfig, description) of --run or --fresh-bits."""
    from .load import fresh_model, load_model

    return fresh_model(cfg.fresh_bits) if cfg.fresh_bits else load_model(cfg.run)


def _write_reference_models(cfg: ExportConfig, frames: np.ndarray, log=print):
    """model_qonnx.onnx and model_qcdq.onnx into cfg.work_dir; (QONNX model, reference logits of `frames` (None for
    a QONNX source: the checks execute its graph once and give them), what the reference is, source description,
    ModelConfig dict, digest of the source)."""
    from . import steps

    if cfg.qonnx:
        from radioml.artifacts import file_digest

        log(f"  QONNX file {cfg.qonnx}: qonnx cleanup and QCDQ (qonnx's QuantToQCDQ)")
        qonnx_model = steps.step_load_qonnx(cfg.qonnx, cfg)
        steps.step_qcdq_from_qonnx(qonnx_model, cfg)
        # the digest of the cleaned model, one file: a dynamo export keeps its weights in a .data file beside it
        digest = file_digest(Path(cfg.work_dir) / "model_qonnx.onnx")
        return qonnx_model, None, "qonnx", f"QONNX file {cfg.qonnx}", {}, digest  # logits: the checks' pass
    import torch

    from train.saved_model import tensor_digest

    model, mcfg, what = _source_model(cfg)
    with torch.no_grad():
        logits = model(torch.from_numpy(frames)).numpy()
    log("  QONNX and QCDQ export (Brevitas)")
    qonnx_model = steps.step_export_qonnx(model, cfg)
    steps.step_export_qcdq(model, cfg)
    return qonnx_model, logits, "pytorch", what, mcfg.to_dict(), tensor_digest(model.state_dict())


def _write_finn_steps(qonnx_model, cfg: ExportConfig, log=print, times=None):
    """Every FINN step into cfg.work_dir (each step's seconds into `times`); (streamlined FINN model, input
    quantiser)."""
    from .runner import run

    from . import steps
    from .transforms import input_quant_of

    iq, _ = input_quant_of(qonnx_model)
    m = steps.step_integer_input(qonnx_model, cfg)
    m = run(m, steps.FINN_STEPS, cfg, save_dir=Path(cfg.work_dir) / "steps", log=lambda s: log(f"  FINN {s}"),
            times=times)
    m.save(str(Path(cfg.work_dir) / "model_finn_streamlined.onnx"))
    return m, iq


# what io.json records the digest of: what the build and the driver read from an export
DIGESTED = ("model_qonnx.onnx", "model_qcdq.onnx", "model_finn_streamlined.onnx", "input.npy", "expected_output.npy",
            "golden.npz", "export_report.json")


def _write_io(work: Path, m, iq, model_config: dict, what: str, model_digest: str, cfg: ExportConfig) -> None:
    """io.json (what build and driver read), last: it records the digests of the files before it."""
    from radioml.artifacts import ExportIO, file_digest

    out_name = m.graph.output[0].name
    ExportIO(input_quant=iq, input_dtype=iq.finn_dtype, input_shape=list(m.get_tensor_shape(m.graph.input[0].name)),
             output_shape=list(m.get_tensor_shape(out_name)), output_dtype=str(m.get_tensor_datatype(out_name)),
             classes=list(CLASSES), model_config=model_config, source=what, model_digest=model_digest,
             files={n: file_digest(work / n) for n in DIGESTED}, data=str(cfg.data),
             check_frames=cfg.check_frames).write(work)


def _write_verification_pair(work: Path, iq, frames, ref_logits, k: int, phases: int = 1) -> None:
    """FINN's verification pair: check frame k (one every stage agrees on, rounding ties aside)."""
    from .steps import STREAMLINED_LAYOUT, to_layout

    np.save(work / "input.npy", to_layout(iq.quantize(frames[k:k + 1]), STREAMLINED_LAYOUT, phases))
    np.save(work / "expected_output.npy", ref_logits[k:k + 1])


def export(cfg: ExportConfig, log=print) -> Path:
    """Run the export flow and the checks; return the output directory. One process at a time per --out."""
    with output_lock(cfg.out):
        return _export(cfg, log)


def _export(cfg: ExportConfig, log=print) -> Path:
    from train.cost import onnx_cost

    from .golden import ExportCheckFailed, run_checks
    from .report_file import ExportReport
    from .runner import format_times

    out = Path(cfg.out)
    check_inputs(cfg)
    frames, idx, labels = _frames(cfg)
    work = work_dir(out)
    cfg.work_dir = str(work)
    try:
        qonnx_model, ref_logits, reference, what, model_config, digest = _write_reference_models(cfg, frames, log)
        log(f"exporting {what}; checks on {len(frames)} test frames of {cfg.data} against {reference}")
        times: dict = {}
        m, iq = _write_finn_steps(qonnx_model, cfg, log, times)
        from .steps import STREAMLINED_LAYOUT, phases_of
        log(f"  checking every stage against {reference}")
        report = run_checks(work, ref_logits, frames, idx, iq, cfg.tol, reference)
        ref_logits = report.reference_logits
        np.savez(work / "golden.npz", frames=frames, indices=idx, labels=labels, reference_logits=ref_logits)
        cost = onnx_cost(work / "model_qonnx.onnx")
        ExportReport(what, report.frames, report.frame_indices, [s.to_dict() for s in report.stages], report.ok,
                     cost.to_dict(), float((ref_logits.argmax(1) == labels).mean()), reference, times).write(work)
        log(table(report))
        log("  " + format_times(times))
        log(f"cost {cost.cost:.4f} (bit-ops {cost.bops:,.0f}, weight bits {cost.weight_bits:,.0f}, "
            f"non-zero weights {cost.weights:,.0f})")
        if not report.ok:
            bad = report.first_failure()
            raise ExportCheckFailed(f"export check failed at stage {bad.stage}: {bad.detail}")
        _write_verification_pair(work, iq, frames, ref_logits, report.agreeing_frame(ref_logits),
                                 phases_of(m, STREAMLINED_LAYOUT))
        _write_io(work, m, iq, model_config, what, digest, cfg)
        publish(work, out, COMMAND)
    finally:
        if work.exists():
            shutil.rmtree(work)
    log(f"-> {out}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.to_finn", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    d = ExportConfig()
    p.add_argument("--run", help="run directory, model.pt or checkpoint.pt to export")
    p.add_argument("--fresh-bits", type=int, help="export a freshly initialised model of this bit width instead")
    p.add_argument("--qonnx", metavar="FILE", help="export this QONNX file instead: any 1D CNN with input (1, 2, 1024) "
                   "and 24 outputs, e.g. Brevitas' export_qonnx of your own model; checked against qonnx's execution")
    p.add_argument("--out", default=d.out, help="output directory (default: %(default)s)")
    p.add_argument("--data", default=d.data, help="RadioML-layout file whose test frames drive the checks (default: %(default)s)")
    p.add_argument("--check-frames", type=int, default=d.check_frames, help="frames checked per stage (default: %(default)s)")
    p.add_argument("--tol", type=float, default=d.tol, help="max |logit diff| relative to max(1, |logit|) (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    a = p.parse_args(argv)
    names = {f.name for f in fields(ExportConfig)}
    cfg = ExportConfig(**{k: v for k, v in vars(a).items() if k in names})
    from .golden import ExportCheckFailed

    return run_main(lambda: export(cfg) and None, (ValueError, OSError, ExportCheckFailed))


if __name__ == "__main__":
    sys.exit(main())
