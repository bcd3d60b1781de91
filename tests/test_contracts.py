"""Stage contracts: typed, digested artifact files, outputs safe to replace, run locks, inputs checked first."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from export.config import ExportConfig
from export.to_finn import export
from radioml.artifacts import ArtifactError, DriverIO, read_artifact, write_artifact
from radioml.publish import KEPT, MARKER, keep_failed, sweep

from .conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
QUIET = dict(log=lambda *_: None)


def _run(*args, cwd=None):
    """A command in a fresh interpreter: where the process itself matters (locks held by another process)."""
    r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=900)
    return r, (r.stderr.strip().splitlines() or [""])[-1]


def test_force_replaces_only_the_same_commands_outputs(tmp_path, fresh_export, small_file):
    runs = tmp_path / "runs"
    (runs / "fmp").mkdir(parents=True)
    (runs / "fmp" / "model.pt").write_bytes(b"a training run")
    for cmd in (("build", "--export", str(fresh_export)), ("export.to_finn", "--fresh-bits", "4", "--data",
                                                          str(small_file))):
        r, err = run_cli(*cmd, "--out", str(runs), "--force")
        assert r.returncode == 2 and err == f"error: {runs}: not an output of this toolchain (no marker file), not " \
                                           f"of {cmd[0]}; --force replaces only {cmd[0]}'s own outputs"
    assert (runs / "fmp" / "model.pt").read_bytes() == b"a training run" and os.listdir(runs) == ["fmp"]
    r, err = run_cli("build", "--export", str(fresh_export), "--out", str(fresh_export), "--force")  # export's output
    assert r.returncode == 2 and "holds the input" in err and (fresh_export / "io.json").is_file()
    r, err = run_cli("build", "--export", str(fresh_export), "--out", ".", "--force", cwd=tmp_path)
    assert r.returncode == 2 and err == "error: .: is the working directory or one of its parents; refusing to write there"
    r, err = run_cli("build", "--export", str(fresh_export), "--out", str(fresh_export.parent), "--force")
    assert r.returncode == 2 and "holds the input" in err


def test_a_kill_between_the_renames_leaves_the_old_or_the_new_output_whole(tmp_path):
    """publish swaps the directories in one rename (renameat2 RENAME_EXCHANGE); where the system has no such
    rename the old output is moved aside first, and a kill between the two renames is undone on the next start."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        import radioml.publish as P
        out, work = Path("{tmp_path}/out"), Path("{tmp_path}/work")
        if sys.argv[1] == "fallback":
            P._exchange = lambda a, b: False
        real = os.replace
        def replace(a, b):
            real(a, b)
            if sys.argv[1] == "fallback" or Path(b) != out:
                os.kill(os.getpid(), signal.SIGKILL)
        P.os.replace = replace
        real_rmtree = P.shutil.rmtree
        P.shutil.rmtree = lambda p, **k: os.kill(os.getpid(), signal.SIGKILL)
        P.publish(work, out, "build")
    """)
    for mode in ("exchange", "fallback"):
        out, work = tmp_path / "out", tmp_path / "work"
        for d, tag in ((out, "old"), (work, "new")):
            d.mkdir(exist_ok=True)
            for i in range(3):
                (d / f"f{i}").write_text(tag)
        (out / MARKER).write_text(json.dumps({"command": "build"}))
        r = subprocess.run([sys.executable, "-c", script, mode], env=ENV, capture_output=True, text=True)
        assert r.returncode == -9, r.stderr
        if mode == "exchange":  # killed after the swap, before the old one was deleted: the new output is whole
            assert {(out / f"f{i}").read_text() for i in range(3)} == {"new"}
        else:  # killed with the old output aside: the next start puts it back
            assert not out.exists()
            sweep(tmp_path, "out")
            assert {(out / f"f{i}").read_text() for i in range(3)} == {"old"}
        for p in tmp_path.iterdir():
            if p.name != "out":
                import shutil
                shutil.rmtree(p)


def test_temporaries_of_dead_processes_are_swept_and_kept_failures_are_not(tmp_path):
    from radioml.synthetic import write_synthetic

    stale = tmp_path / ".x.tmp999999.hdf5"
    stale.write_bytes(b"half a file")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = tmp_path / f".x.tmp{live.pid}.hdf5"
        alive.write_bytes(b"being written")
        write_synthetic(tmp_path / "x.hdf5", 1, progress=False)
        assert not stale.exists() and alive.exists() and (tmp_path / "x.hdf5").is_file()
    finally:
        live.kill()
    (tmp_path / ".b.tmp999999-abc").mkdir()
    kept = tmp_path / ".b.tmp999998-def"
    kept.mkdir()
    (kept / "log").write_text("x" * 1000)
    assert keep_failed(kept).startswith(f"its work directory is kept at {kept} (0.0 MB)") and (kept / KEPT).exists()
    sweep(tmp_path, "b")
    assert not (tmp_path / ".b.tmp999999-abc").exists() and kept.exists()
    assert "was deleted: the disk has less than" in keep_failed(kept, min_free=2 ** 62) and not kept.exists()


# -- one run per run directory ----------------------------------------------------------------------------------
def test_a_second_run_on_a_locked_run_directory_stops_at_once(tmp_path, tiny_file):
    from radioml.publish import dir_lock as run_lock

    args = ("train", "--data.path", str(tiny_file), "--run_dir", str(tmp_path / "run"), "--optim.epochs_per_round", "1",
            "--prune.strategy", "none", "--model.conv_filters", "8", "--model.dense_units", "16", "--threads", "1",
            "--optim.batch_size", "128", "--prune.cost_every_round", "false")
    with run_lock(tmp_path / "run"):
        r, err = _run(*args)
    assert r.returncode == 2 and err == f"error: {tmp_path / 'run'}: in use by process {os.getpid()} (another run on " \
                                       f"this --run_dir); wait for it to end or choose another --run_dir"
    assert sorted(os.listdir(tmp_path / "run")) == []  # the lock file goes with the run that held it
    r, _ = run_cli(*args)  # the lock gone with its process, a run in this one goes ahead
    assert r.returncode == 0, r.stderr[-2000:]
    r, err = run_cli(*args[:2], str(ROOT / "tests" / "data-not-here.hdf5"), *args[3:])
    assert r.returncode == 2 and "no such file" in err
    other = tmp_path / "other.hdf5"
    from radioml.synthetic import write_synthetic

    write_synthetic(other, 4, seed=9, progress=False)
    r, err = run_cli(*args[:2], str(other), *args[3:])
    assert r.returncode == 2 and err.startswith(f"error: {tmp_path / 'run' / 'checkpoint.pt'}: trained on ") and \
        "pass --allow_other_data true" in err
    r, _ = run_cli(*args[:2], str(other), *args[3:], "--allow_other_data", "true")
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_loader_and_init_from_agree_on_the_model_a_run_holds():
    from train.checkpoint import held_model

    ck = lambda done, final, good: {"state": {"done": done, "final": final}, "last_good": good, "current": "cur"}  # noqa
    assert held_model(ck(True, "last_good", "good"))[0] == "good"
    assert held_model(ck(True, "current", "good"))[0] == "cur"  # a dense run's final model is its last epoch's
    assert held_model(ck(True, "last_good", None))[0] == "cur"
    assert held_model(ck(False, "last_good", "good"))[0] == "good"
    assert held_model(ck(False, "last_good", None))[0] == "cur"


# -- files that cannot lie --------------------------------------------------------------------------------------
def test_artifacts_refuse_edits_truncation_and_foreign_formats(tmp_path):
    write_artifact(tmp_path / "a.json", "amc-x/1", {"n": 3})
    assert read_artifact(tmp_path / "a.json", "amc-x/1") == {"n": 3}
    d = json.loads((tmp_path / "a.json").read_text())
    d["n"] = 4
    (tmp_path / "a.json").write_text(json.dumps(d))
    with pytest.raises(ArtifactError, match=r"a.json: its contents do not match its digest \(edited or corrupt\)"):
        read_artifact(tmp_path / "a.json", "amc-x/1")
    (tmp_path / "a.json").write_text(json.dumps(d)[:20])
    with pytest.raises(ArtifactError, match="a.json: not readable JSON"):
        read_artifact(tmp_path / "a.json", "amc-x/1")
    write_artifact(tmp_path / "a.json", "amc-y/1", {"n": 3})
    with pytest.raises(ArtifactError, match="a.json: format 'amc-y/1', expected 'amc-x/1'"):
        read_artifact(tmp_path / "a.json", "amc-x/1")


def _edited_bundle(fresh_build, tmp_path, edit, resign=True):
    import shutil

    b = tmp_path / "fresh_build"
    shutil.copytree(fresh_build, b, symlinks=True)
    body = read_artifact(b / "driver_io.json", DriverIO.FORMAT)
    edit(body)
    if resign:  # a careful editor recomputes the digest: the fields are checked too
        write_artifact(b / "driver_io.json", DriverIO.FORMAT, body)
    else:
        d = json.loads((b / "driver_io.json").read_text())
        edit(d)
        (b / "driver_io.json").write_text(json.dumps(d))
    b_io = body  # noqa: F841
    return b


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["io_shape_dict"]["idt"].__setitem__(0, "UINT4"), "io_shape_dict.idt: UINT4 is not the input "
                                                                  "quantiser's INT4"),
    (lambda d: d["io_shape_dict"]["odt"].__setitem__(0, "INT99"), "io_shape_dict.odt: 'INT99' is not a FINN datatype"),
    (lambda d: d.__setitem__("classes", d["classes"][:20]), "classes: 20 entries"),
    (lambda d: d.__setitem__("clock_ns", -4.0), "clock_ns: -4.0 is not a positive number"),
])
def test_driver_refuses_an_edited_driver_io(tmp_path, fresh_build, small_file, edit, message):
    for resign, expect in ((False, "its contents do not match its digest"), (True, message)):
        b = _edited_bundle(fresh_build, tmp_path / str(resign), edit, resign)
        r, err = run_cli("driver.validate", "--bundle", str(b), "--data", str(small_file), "--emulate",
                      "--export", str(Path(fresh_build) / json.loads((Path(fresh_build) / "driver_io.json").read_text())[
                          "export_dir"]))
        assert r.returncode == 2 and expect in err, err
        assert err.startswith(f"error: {b / 'driver_io.json'}: ")


def test_emulation_refuses_another_exports_golden_model(tmp_path, fresh_build, small_file):
    other = export(ExportConfig(fresh_bits=5, out=str(tmp_path / "other"), data=str(small_file), check_frames=2),
                   **QUIET)
    r, err = run_cli("driver.validate", "--bundle", str(fresh_build), "--data", str(small_file), "--emulate",
                  "--export", str(other))
    assert r.returncode == 2 and err == f"error: {other}: not the export this bundle was built from (its files' " \
                                       f"digests differ from those driver_io.json recorded)"
    (other / "model_qcdq.onnx").write_bytes((other / "model_qcdq.onnx").read_bytes()[:-10])
    r, err = run_cli("driver.validate", "--bundle", str(fresh_build), "--data", str(small_file), "--emulate",
                  "--export", str(other))
    assert r.returncode == 2 and "model_qcdq.onnx: contents: differ from what" in err


def test_a_flipped_bit_in_a_model_is_refused(tmp_path, small_file):
    from train.model import ModelConfig, build_vgg10
    from train.saved_model import save_model

    model = build_vgg10(ModelConfig(4, 4, 4, conv_filters=8, dense_units=16))
    save_model(model, ModelConfig(4, 4, 4, conv_filters=8, dense_units=16), {}, tmp_path / "m" / "model.pt")
    obj = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    obj["model"]["1.weight"][0, 0, 0] *= -1  # a sign bit
    torch.save(obj, tmp_path / "m" / "model.pt")
    r, err = run_cli("export.to_finn", "--run", str(tmp_path / "m"), "--out", str(tmp_path / "e"), "--data", str(small_file))
    assert r.returncode == 2 and err == f"error: {tmp_path / 'm' / 'model.pt'}: its tensors do not match the digest " \
                                       f"written with them (corrupt or edited)"
    del obj["digest"]
    torch.save(obj, tmp_path / "m" / "model.pt")
    r, err = run_cli("export.to_finn", "--run", str(tmp_path / "m"), "--out", str(tmp_path / "e"), "--data", str(small_file))
    assert r.returncode == 2 and "missing digest (a truncated or foreign file)" in err
    assert not (tmp_path / "e").exists()


def test_a_build_refuses_an_export_whose_graph_was_replaced(tmp_path, fresh_export):
    import shutil

    e = tmp_path / "e"
    shutil.copytree(fresh_export, e)
    (e / "model_finn_streamlined.onnx").write_bytes(b"not onnx")
    r, err = run_cli("build", "--export", str(e), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and err == f"error: {e / 'model_finn_streamlined.onnx'}: contents: differ from what " \
                                       f"{e / 'io.json'} recorded (edited or replaced); re-export"
    assert sorted(os.listdir(tmp_path)) == ["e"]


# -- inputs checked before long work, exit status that tells ---------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (("--clock-ns", "-4"), "--clock-ns must be a positive number of ns, got -4"),
    (("--clock-ns", "0"), "--clock-ns must be a positive number of ns, got 0"),
    (("--target-fps", "-5"), "--target-fps must be a whole number of frames/s >= 1, got -5"),
    (("--target-fps", "0"), "--target-fps must be a whole number of frames/s >= 1, got 0"),
    (("--verify-frames", "0"), "--verify-frames must be >= 1, got 0"),
    (("--fit", "max-utilisation", "--folding", "finn"), "--fit max-utilisation needs --folding search, not 'finn'"),
    (("--impl", "search", "--fit", "lut"),
     "--impl search needs --fit max-utilisation (and --folding search), not --fit lut"),
    (("--impl", "search", "--folding", "finn"),
     "--impl search needs --fit max-utilisation (and --folding search), not --fit lut"),
    (("--impl", "search", "--fit", "max-utilisation", "--specialize-layers", __file__),
     "--impl search chooses every layer's style itself: drop --specialize-layers, or use --impl finn"),
])
def test_build_options_are_checked_before_any_step(tmp_path, fresh_export, flags, message):
    r, err = run_cli("build", "--export", str(fresh_export), "--out", str(tmp_path / "b"), *flags)
    assert r.returncode == 2 and err == f"error: {message}" and "[1/" not in r.stdout
    assert os.listdir(tmp_path) == []


def test_a_build_over_its_utilisation_cap_exits_3_naming_the_resource_unless_report_only(tmp_path, fresh_export):
    """--util-cap bounds every build, not only --max-fps: a design that fits the part but leaves less than the
    rest of it for FIFOs, DMAs and routing is written, reported over the cap, and exits 3."""
    r, err = run_cli("build", "--export", str(fresh_export), "--out", str(tmp_path / "b"), "--target-fps", "20000",
                     "--util-cap", "0.05")
    assert r.returncode == 3 and "uses more than 5% of the part's LUT" in err and "misses" not in err, err
    rep = json.loads((tmp_path / "b" / "build_report.json").read_text())
    assert rep["fits"] and not rep["within_cap"] and rep["util_cap"] == 0.05 and "over the 5% cap" in r.stdout
    r, _ = run_cli("build", "--export", str(fresh_export), "--out", str(tmp_path / "b"), "--target-fps", "20000",
                   "--util-cap", "0.05", "--force", "--report-only")
    assert r.returncode == 0


def test_a_build_that_misses_its_target_exits_3_unless_report_only(tmp_path, fresh_export):
    r, err = run_cli("build", "--export", str(fresh_export), "--out", str(tmp_path / "b"), "--target-fps", "10000000")
    assert r.returncode == 3 and "the design misses its target" in err and "--report-only" in err
    assert (tmp_path / "b" / "build_report.json").is_file()
    r, _ = run_cli("build", "--export", str(fresh_export), "--out", str(tmp_path / "b"), "--target-fps", "10000000",
                "--force", "--report-only")
    assert r.returncode == 0


@pytest.mark.parametrize("args, message", [
    (("export.to_finn", "--fresh-bits", "0"), "--fresh-bits must be in 2..16, got 0"),
    (("export.to_finn", "--fresh-bits", "4", "--check-frames", "0"), "--check-frames must be >= 1, got 0"),
    (("export.to_finn", "--run", "x.onnx"), "x.onnx: an ONNX file; --run takes a run directory, model.pt or checkpoint.pt"),
    (("train", "--device", "cuda", "--optim.epochs_per_round", "1"), "--device cuda: this PyTorch has no CUDA device"),
    (("train.compare", "--reference-init", "missing.pt", "--strategies", "fmp"), "missing.pt: no such file"),
])
def test_bad_options_get_one_line_before_any_work(tmp_path, small_file, args, message):
    r, err = run_cli(*args, "--out" if args[0] != "train" else "--run_dir", str(tmp_path / "o"),
                  *(("--data", str(small_file)) if args[0] == "export.to_finn" else ("--data.path", str(small_file))),
                  cwd=tmp_path)
    assert r.returncode == 2 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "o").exists()


def test_validate_names_an_snr_the_file_lacks(fresh_build, small_file):
    r, err = run_cli("driver.validate", "--bundle", str(fresh_build), "--data", str(small_file), "--emulate", "--snr", "99")
    assert r.returncode == 2 and err == f"error: {small_file}: no test frames at --snr 99 dB (its SNRs: -20..30 dB, step 2)"


def test_compare_reuses_a_build_only_for_the_same_inputs(tmp_path, fresh_export):
    from build.compare import estimate

    first = estimate(fresh_export, tmp_path / "b", "ZCU104", lambda *_: None, target_fps=20_000)
    stamp = (tmp_path / "b" / "build_report.json").stat().st_mtime_ns
    again = estimate(fresh_export, tmp_path / "b", "ZCU104", lambda *_: None, target_fps=20_000)
    assert again == first and (tmp_path / "b" / "build_report.json").stat().st_mtime_ns == stamp  # reused
    other = estimate(fresh_export, tmp_path / "b", "Pynq-Z2", lambda *_: None, target_fps=20_000)
    assert other["board"]["name"] == "Pynq-Z2" and first["board"]["name"] == "ZCU104"  # redone, not reused
    faster = estimate(fresh_export, tmp_path / "b", "Pynq-Z2", lambda *_: None, target_fps=30_000)
    assert faster["target_fps"] == 30_000 and np.isclose(other["target_fps"], 20_000)
