"""`python -m export.to_finn --run RUN --out DIR`: QONNX, QCDQ and FINN-ready models, checked bit for bit.

Writes into DIR (built in a temporary directory, renamed into place only when every
check passed, so DIR is either complete or absent):

  model_qonnx.onnx               QONNX, batch 1 (what qonnx inference_cost scores)
  model_qcdq.onnx                QCDQ, dynamic batch: the golden model for plain onnxruntime
  steps/NN_<step>.onnx           every FINN-side intermediate graph
  model_finn_streamlined.onnx    the graph FINN's builder starts from (integer input, channels last)
  input.npy, expected_output.npy one frame for FINN's verification steps
  io.json                        input quantiser, shapes, layouts, datatypes, class names
  golden.npz                     the check frames and their PyTorch logits (`python -m export.check DIR`)
  export_report.json             per-stage differences and agreement, inference cost
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np

from radioml.atomic import write_json
from radioml.classes import CLASSES, FRAME_LENGTH
from radioml.cli import run_main

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


def _check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise ValueError(f"{out}: already exists (pass --force to replace it)")
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise ValueError(f"{out.parent}: not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise ValueError(f"{out.parent}: not writable")


def _source_model(cfg: ExportConfig):
    """(model, ModelConfig, description) of --run or --fresh-bits."""
    from .load import fresh_model, load_model

    if (cfg.run is None) == (cfg.fresh_bits is None):
        raise ValueError("pass exactly one of --run or --fresh-bits")
    return fresh_model(cfg.fresh_bits) if cfg.fresh_bits else load_model(cfg.run)


def _write_models(model, cfg: ExportConfig):
    """QONNX, QCDQ and every FINN step into cfg.work_dir; (streamlined FINN model, input quantiser)."""
    from . import steps
    from .transforms import input_quant_of

    qonnx_model = steps.step_export_qonnx(model, cfg)
    steps.step_export_qcdq(model, cfg)
    iq, _ = input_quant_of(qonnx_model)
    m = steps.step_integer_input(qonnx_model, cfg)
    for i, (name, fn, _) in enumerate(steps.FINN_STEPS, start=1):
        m = steps.save_step(fn(m, cfg), cfg, i, name)
    m.save(str(Path(cfg.work_dir) / "model_finn_streamlined.onnx"))
    return m, iq


def _write_io(work: Path, m, iq, mcfg, what: str, frames, idx, labels, torch_logits) -> None:
    """The golden frames and io.json (what build and driver read)."""
    np.savez(work / "golden.npz", frames=frames, indices=idx, labels=labels, torch_logits=torch_logits)
    out_name = m.graph.output[0].name
    write_json(work / "io.json", {
        "input_quant": iq.to_dict(), "input_dtype": iq.finn_dtype,
        "input_shape_float": [1, 2, FRAME_LENGTH], "input_layout_float": "NCW",
        "input_shape": list(m.get_tensor_shape(m.graph.input[0].name)), "input_layout": "NW1C",
        "output_shape": list(m.get_tensor_shape(out_name)), "output_dtype": str(m.get_tensor_datatype(out_name)),
        "classes": list(CLASSES), "model_config": mcfg.to_dict(), "source": what,
    })


def _publish(work: Path, out: Path) -> None:
    """Rename the finished work directory onto `out` (replacing an old one only now)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        os.replace(out, old)
        os.replace(work, out)
        shutil.rmtree(old)
    else:
        os.replace(work, out)


def _write_verification_pair(work: Path, iq, frames, torch_logits, k: int) -> None:
    """FINN's verification pair: check frame k (one every stage agrees on, rounding ties aside)."""
    from .steps import FINN_STEPS, to_layout

    np.save(work / "input.npy", to_layout(iq.quantize(frames[k:k + 1]), FINN_STEPS[-1][2]))
    np.save(work / "expected_output.npy", torch_logits[k:k + 1])


def export(cfg: ExportConfig, log=print) -> Path:
    """Run the export flow and the checks; return the output directory."""
    import torch

    from train.cost import onnx_cost

    from .golden import ExportCheckFailed, run_checks

    out = Path(cfg.out)
    _check_out_dir(out, cfg.force)
    model, mcfg, what = _source_model(cfg)
    frames, idx, labels = _frames(cfg)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(frames)).numpy()
    log(f"exporting {what}; checks on {len(frames)} test frames of {cfg.data}")
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    cfg.work_dir = str(work)
    try:
        m, iq = _write_models(model, cfg)
        _write_io(work, m, iq, mcfg, what, frames, idx, labels, torch_logits)
        report = run_checks(work, torch_logits, frames, idx, iq, cfg.tol)
        cost = onnx_cost(work / "model_qonnx.onnx")
        write_json(work / "export_report.json", {
            "source": what, "frames": report.frames, "frame_indices": report.frame_indices,
            "stages": [s.to_dict() for s in report.stages], "ok": report.ok, "cost": cost.to_dict(),
            "torch_top1_accuracy_on_check_frames": float((torch_logits.argmax(1) == labels).mean())})
        log(table(report))
        log(f"cost {cost.cost:.4f} (bit-ops {cost.bops:,.0f}, weight bits {cost.weight_bits:,.0f}, "
            f"non-zero weights {cost.weights:,.0f})")
        if not report.ok:
            bad = report.first_failure()
            raise ExportCheckFailed(f"export check failed at stage {bad.stage}: {bad.detail}")
        _write_verification_pair(work, iq, frames, torch_logits, report.agreeing_frame())
        _publish(work, out)
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
