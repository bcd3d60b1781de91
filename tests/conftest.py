"""Shared fixtures: small generated RadioML-layout files (session-scoped, generated once)."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from radioml.synthetic import write_synthetic


@pytest.fixture(scope="session")
def small_file(tmp_path_factory):
    """24 classes x 26 SNRs x 8 frames = 4,992 frames (about 40 MB)."""
    return write_synthetic(tmp_path_factory.mktemp("data") / "small.hdf5", frames_per_snr=8, seed=1, progress=False)


@pytest.fixture(scope="session")
def tiny_file(tmp_path_factory):
    """24 x 26 x 4 frames: enough for training-loop tests."""
    return write_synthetic(tmp_path_factory.mktemp("data") / "tiny.hdf5", frames_per_snr=4, seed=2, progress=False)


def write_layout(path, n_per_block=2, x_dtype="<f4", mutate=None):
    """A RadioML-layout file of random frames; `mutate(arrays)` may break it before writing."""
    import h5py

    from radioml.classes import CLASSES, SNRS_DB

    nc, ns = len(CLASSES), len(SNRS_DB)
    n = nc * ns * n_per_block
    arrays = {
        "X": np.random.default_rng(0).standard_normal((n, 1024, 2)).astype(x_dtype),
        "Y": np.eye(nc, dtype=np.int64)[np.repeat(np.arange(nc), ns * n_per_block)],
        "Z": np.tile(np.repeat(np.array(SNRS_DB), n_per_block), nc)[:, None].astype(np.int64),
    }
    if mutate:
        mutate(arrays)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            if v is not None:
                f.create_dataset(k, data=v)
    return path


MAINS = {"build": "build.__main__", "train": "train.__main__", "compress": "compress.__main__"}  # modules whose main() lives in __main__


def run_cli(module: str, *args, cwd=None):
    """`python -m module args` in this process (its main(argv), stdout and stderr captured): the exit status
    and messages a user sees, without a fresh interpreter's seconds of imports. Returns (CompletedProcess,
    the last line of stderr)."""
    import contextlib
    import importlib
    import io
    import subprocess

    import logging

    import torch

    out, err = io.StringIO(), io.StringIO()
    main = importlib.import_module(MAINS.get(module, module)).main
    threads = torch.get_num_threads()
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
    handlers = {lg: list(lg.handlers) for lg in loggers}
    with contextlib.chdir(cwd or Path.cwd()), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's refusals: as the interpreter maps them
            code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        finally:  # what the command set up for its own process goes with it
            torch.set_num_threads(threads)
            for lg in [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]:
                for h in lg.handlers[:]:
                    if h not in handlers.get(lg, []):
                        lg.removeHandler(h)
                        h.close()
    r = subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())
    return r, (r.stderr.strip().splitlines() or [""])[-1]


STAGES = ["qonnx", "qcdq_ort", "finn/qonnx_to_finn", "finn/to_4d", "finn/streamline", "finn/channels_last"]


def assert_every_stage_agrees(export_dir) -> dict:
    """An export's report: every stage at 100% top-1, logits within 1e-3, FINN integers exact."""
    rep = json.loads((Path(export_dir) / "export_report.json").read_text())
    assert rep["ok"] and [s["stage"] for s in rep["stages"]] == STAGES
    for s in rep["stages"]:
        assert s["top1_agreement"] == 1.0 and s["max_abs_diff"] < 1e-3, s
        if s["stage"].startswith("finn/"):
            assert s["integer_exact"] is True, s
    return rep


def kill_at_epoch(proc, checkpoint: Path, epoch: int, timeout: float = 300) -> None:
    """SIGKILL a training process once its checkpoint has reached `epoch` (a crash mid-run)."""
    from train import checkpoint as ckpt

    deadline = time.time() + timeout
    while time.time() < deadline:
        if checkpoint.exists() and ckpt.load_checkpoint(checkpoint)["state"]["epoch"] >= epoch:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="session")
def fresh_export(tmp_path_factory, small_file):
    """A freshly initialised 4-bit VGG10 exported with every check on 6 test frames of small_file (shared: tests
    that change it work on a copy)."""
    from export.config import ExportConfig
    from export.to_finn import export

    return export(ExportConfig(fresh_bits=4, out=str(tmp_path_factory.mktemp("exp") / "export"), data=str(small_file),
                               check_frames=6), log=lambda *_: None)


@pytest.fixture(scope="session")
def fresh_build(tmp_path_factory, fresh_export):
    """fresh_export's estimate build on ZCU104 at 20,000 frames/s with --fit lut (HLS layers where FINN's rules
    allow, FINN's own specialisation: the comparison build, whose folding JSON a --folding PATH build takes)."""
    from build.config import BuildConfig
    from build.flow import build

    return build(BuildConfig(export_dir=str(fresh_export), out=str(tmp_path_factory.mktemp("b") / "bundle"),
                             board="ZCU104", target_fps=20_000, fit="lut"), log=lambda *_: None)
