"""Inference frames/s of the exported QCDQ model in onnxruntime vs the Brevitas model in PyTorch (CPU).

Batch 1 (latency-bound, as a per-frame host fallback would run) and batch 1024.
onnxruntime runs at ORT_ENABLE_BASIC, the level at which it matches PyTorch bit
for bit (ALL fuses QDQ pairs into integer kernels and changes results).

    python -m benchmarks.ort_vs_torch [--export DIR] [--seconds 5]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _rate(fn, batch: int, seconds: float) -> float:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += batch
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bits", type=int, default=4, help="weight/activation bits of the fresh model (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=5.0, help="time per measurement (default: %(default)s)")
    a = p.parse_args(argv)
    import onnxruntime as ort

    from export.load import fresh_model
    from radioml.classes import FRAME_LENGTH
    from radioml.golden_session import golden_session
    from train.onnx_export import export_qcdq_file

    model, _, _ = fresh_model(a.bits)
    with tempfile.TemporaryDirectory() as d:
        sess = golden_session(export_qcdq_file(model, Path(d) / "model_qcdq.onnx"))
        name = sess.get_inputs()[0].name
        print(f"{a.bits}-bit VGG10, {torch.get_num_threads()} torch threads, onnxruntime {ort.__version__}")
        print(f"{'batch':>6}{'torch frames/s':>16}{'ORT QCDQ frames/s':>19}{'ORT / torch':>13}{'max |diff|':>12}")
        for batch in (1, 1024):
            x = np.random.default_rng(0).standard_normal((batch, 2, FRAME_LENGTH)).astype(np.float32) * 0.7
            xt = torch.from_numpy(x)
            with torch.no_grad():
                ref = model(xt).numpy()
                rt = _rate(lambda: model(xt), batch, a.seconds)
            ro = _rate(lambda: sess.run(None, {name: x}), batch, a.seconds)
            diff = np.abs(sess.run(None, {name: x})[0] - ref).max()
            print(f"{batch:>6}{rt:>16,.0f}{ro:>19,.0f}{ro / rt:>13.2f}{diff:>12.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
