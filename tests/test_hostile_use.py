"""What a careless or hostile user does to the toolchain's outputs and flags: nothing they wrote is lost, nothing
wrong exits 0. One test per defect of the sweep (numbered as found)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radioml.artifacts import ArtifactError, DriverIO, ExportIO, read_artifact, write_artifact
from radioml.publish import KEPT, MARKER, OutputRefused, check_target, output_lock, publish

from .conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
REF32 = ROOT / "models" / "reference" / "vgg10-w4a4-f32" / "model.pt"


def _run(*args, cwd=None, prelude=None):
    """A command of the toolchain in a fresh process: (result, last stderr line)."""
    cmd = [sys.executable, "-m", *args] if prelude is None else \
        [sys.executable, "-c", f"{prelude}; import runpy, sys; sys.argv = {list(args)!r}; "
                               f"runpy.run_module({args[0]!r}, run_name='__main__')"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=cwd, timeout=900)
    return r, (r.stderr.strip().splitlines() or [""])[-1]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


# 1 ------------------------------------------------------------------------------------------------------------------
def test_1_force_replaces_only_what_the_command_wrote(tmp_path, fresh_export, fresh_build):
    """A file the user put into an old build (notes, a bitfile from hours of synthesis) makes --force refuse,
    naming it, and stays; what the command wrote itself is replaced."""
    bundle = _copy(fresh_build, tmp_path / "B")
    (bundle / "NOTES.txt").write_text("notes")
    (bundle / "bitfile").mkdir()
    (bundle / "bitfile" / "finn-accel.bit").write_text("x")
    r, err = run_cli("build", "--export", str(fresh_export), "--out", str(bundle), "--board", "ZCU104",
                  "--target-fps", "20000", "--force")
    assert r.returncode == 2 and err.startswith(f"error: {bundle / 'NOTES.txt'} and 1 more: not written by build"), err
    assert (bundle / "NOTES.txt").read_text() == "notes" and (bundle / "bitfile" / "finn-accel.bit").read_text() == "x"
    # the marker lists every file the command wrote: its own files alone (and Python's caches) pass
    (bundle / "NOTES.txt").unlink()
    shutil.rmtree(bundle / "bitfile")
    (bundle / "driver" / "__pycache__").mkdir(parents=True, exist_ok=True)
    (bundle / "driver" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    check_target(bundle, "build", force=True)
    (bundle / "build_report.json").write_text((bundle / "build_report.json").read_text() + " ")  # changed since
    with pytest.raises(OutputRefused, match="build_report.json: not written by build"):
        check_target(bundle, "build", force=True)
    (bundle / MARKER).write_text(json.dumps({"command": "build"}))  # an earlier version's marker: no file list
    with pytest.raises(OutputRefused, match="written by an earlier version of this toolchain, which kept no list"):
        check_target(bundle, "build", force=True)


# 2 ------------------------------------------------------------------------------------------------------------------
def test_2_an_edited_estimate_cache_is_refused(tmp_path):
    from build.boards import board
    from compress.estimates import LayerEstimates
    from train.model import ModelConfig

    path = tmp_path / "layer_estimates.json"
    like = ModelConfig(4, 4, 4)
    est = LayerEstimates(board("ZCU104"), like, path)
    est.layers = {"L0:2>64:i8w4a4": [["MVAU_0", [[{"PE": 1, "SIMD": 1}, 65536, 151510.0, 4.0, 0.0]]]]}
    est.save()
    assert LayerEstimates(board("ZCU104"), like, path).layers == est.layers
    path.write_text(path.read_text().replace("151510.0", "89591.0"))
    with pytest.raises(ArtifactError, match="do not match its digest"):
        LayerEstimates(board("ZCU104"), like, path)
    body = read_artifact(_resign(path), "amc-layer-estimates/2")  # a digest says "as written", not "true"
    body["layers"]["L0:2>64:i8w4a4"][0][1][0][2] = -5.0  # re-signed, but not a resource count
    write_artifact(path, "amc-layer-estimates/2", body)
    with pytest.raises(ArtifactError, match="is not \\[setting, cycles, LUT, BRAM18, DSP\\]"):
        LayerEstimates(board("ZCU104"), like, path)


def _resign(path: Path) -> Path:
    obj = json.loads(path.read_text())
    write_artifact(path, obj["format"], obj)
    return path


# 3 ------------------------------------------------------------------------------------------------------------------
def test_3_a_second_export_or_build_on_the_same_out_stops_at_once(tmp_path, fresh_export, small_file):
    for out, cmd in ((tmp_path / "E", ("export.to_finn", "--fresh-bits", "4", "--data", str(small_file))),
                     (tmp_path / "B", ("build", "--export", str(fresh_export), "--target-fps", "20000"))):
        with output_lock(out):
            r, err = _run(*cmd, "--out", str(out))
        assert r.returncode == 2 and err == f"error: {out}: in use by process {os.getpid()} (another run on this " \
                                           f"--out); wait for it to end or choose another --out", err
        assert not out.exists()
    mine = tmp_path / ".X.lock"  # a user's file where the lock would go: refused, left as it was
    mine.write_text("my notes")
    with pytest.raises(OutputRefused, match="is not a lock file of this toolchain"):
        with output_lock(tmp_path / "X"):
            pass
    assert mine.read_text() == "my notes"


# 4 ------------------------------------------------------------------------------------------------------------------
def test_4_settings_json_must_say_what_driver_io_json_says(tmp_path, fresh_build):
    from radioml.finn_settings import read_bundle_io

    bundle = _copy(fresh_build, tmp_path / "B")
    settings = bundle / "driver" / "settings.json"
    read_bundle_io(bundle)  # as built: the two agree
    good = settings.read_text()
    for edit, field in ((lambda d: d["io_shape_dict"]["idt"].__setitem__(0, "DataType['UINT8']"), "io_shape_dict.idt"),
                        (lambda d: d.__setitem__("fclk_mhz", 300.0), "fclk_mhz")):
        d = json.loads(good)
        edit(d["driver_information"])
        settings.write_text(json.dumps(d))
        with pytest.raises(ArtifactError, match=f"settings.json: {field}: .*driver_io.json says"):
            read_bundle_io(bundle)
    settings.unlink()
    with pytest.raises(ArtifactError, match="settings.json: missing"):
        read_bundle_io(bundle)


# 5 ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value,message", [
    ("--clock-ns", "inf", "--clock-ns must be a finite number, got inf"),
    ("--seed", "-1", "--seed must be in [0, 4294967295], got -1"),
    ("--p-min", "0", "--p-min must be in (0, 1), got 0"),
    ("--p-min", "0.5", "--p-min must be at most --p0 (0.2), got 0.5"),
    ("--threads", "-1", "--threads must be in [0, 4096], got -1"),
    ("--min-act-bits", "9", "--min-act-bits must be in [2, 8], got 9"),
    ("--target-fps", "300000000", "--target-fps 300,000,000: more than one frame per 4 ns clock cycle"),
    ("--probe-frames", "1000000000", "--probe-frames 1,000,000,000: "),
])
def test_5_compress_flags_are_range_checked_before_out_is_touched(tmp_path, small_file, flag, value, message):
    out = tmp_path / "frontier"
    r, err = run_cli("compress", "--start", str(REF32), "--data", str(small_file), "--out", str(out), flag, value)
    assert r.returncode == 2 and err.startswith(f"error: {message}"), err
    assert not out.exists()


def test_5_board_side_and_file_checks_fail_in_one_line_before_work(tmp_path, fresh_export, fresh_build, small_file):
    # emulation on a board install without onnxruntime: the package and the extra named
    r, err = _run("driver.validate", "--bundle", str(fresh_build), "--data", str(small_file), "--emulate",
                  prelude="import sys; sys.modules['onnxruntime'] = None")
    assert r.returncode == 2 and "needs the Python package onnxruntime" in err and "amc-board[emulate]" in err, err
    # --out that cannot be written: refused before the run, not after it
    r, err = run_cli("driver.validate", "--bundle", str(fresh_build), "--data", str(small_file), "--emulate",
                     "--out", "/proc/amc-results.json")
    assert r.returncode == 2 and err.startswith("error: --out /proc/amc-results.json: /proc is not writable"), err
    assert "frames" not in r.stderr.replace(err, "")
    # folding JSON values FINN would take wrongly, refused before the first step
    from build.config import BuildConfig
    from build.flow import build

    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"MVAU_hls_0": {"PE": True}}))
    with pytest.raises(ValueError, match=r'MVAU_hls_0.PE is true: FINN\'s node attributes are whole numbers'):
        build(BuildConfig(export_dir=str(fresh_export), out=str(tmp_path / "b"), folding=str(fold)), log=lambda *_: 0)
    folding = json.loads((fresh_build / "folding_config.json").read_text())
    mvau = next(k for k in folding if k.startswith("MVAU"))
    folding[mvau]["ram_style"] = "ultra"
    fold.write_text(json.dumps(folding))
    with pytest.raises(ValueError, match=f"{fold}: {mvau}: runtime-writable weights"):
        build(BuildConfig(export_dir=str(fresh_export), out=str(tmp_path / "b"), target_fps=20_000,
                          folding=str(fold)), log=lambda *_: 0)
    assert not (tmp_path / "b").exists()


def test_5_qonnx_files_onnx_refuses_or_cyclic_are_named_with_the_reason(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from export.qonnx_source import check_qonnx_file

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 1024])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 24])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    w.data_location = TensorProto.EXTERNAL  # its data in a file that is not there
    w.ClearField("float_data")
    w.external_data.add(key="location", value="../../../outside.bin")
    ext = tmp_path / "external.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g", [x], [y], [w])),
              str(ext))
    with pytest.raises(ValueError) as e:
        check_qonnx_file(ext)
    msg = str(e.value)
    assert msg.startswith(f"{ext}: not a loadable ONNX file (") and len(msg.split("(", 1)[1]) > 30, msg
    nodes = [helper.make_node("Identity", ["x", "b"], ["a"], name="first"),
             helper.make_node("Identity", ["a"], ["b"], name="second"), helper.make_node("Identity", ["a"], ["y"])]
    cyc = tmp_path / "cyclic.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), str(cyc))
    with pytest.raises(ValueError, match=f"^{cyc}: the graph has a cycle through first, second"):
        check_qonnx_file(cyc)


# 6 ------------------------------------------------------------------------------------------------------------------
def test_6_a_symlinked_out_is_refused_and_kept_directories_do_not_pile_up(tmp_path, fresh_export, fresh_build):
    bundle = _copy(fresh_build, tmp_path / "B")
    link = tmp_path / "L"
    link.symlink_to(bundle)
    r, err = _run("build", "--export", str(fresh_export), "--out", str(link), "--target-fps", "20000", "--force")
    assert r.returncode == 2 and err == f"error: {link}: is a symbolic link (to {bundle}); pass the directory itself"
    assert link.is_symlink() and not (bundle / KEPT).exists() and (bundle / MARKER).is_file()
    # a step that refuses its input keeps no work directory
    from build.config import BuildConfig
    from build.flow import build

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"FMPadding_0": {"preferred_impl_style": "hls"}}))
    with pytest.raises(ValueError, match="FINN has no such variant"):
        build(BuildConfig(export_dir=str(fresh_export), out=str(tmp_path / "c"), target_fps=20_000,
                          specialize_layers=str(spec)), log=lambda *_: 0)
    assert not list(tmp_path.glob(".c.*tmp*")), list(tmp_path.iterdir())
    # a kept failure is swept once the same output is published
    kept = tmp_path / ".out.tmp999998-abc"
    kept.mkdir()
    (kept / KEPT).write_text("kept")
    work = tmp_path / "work"
    work.mkdir()
    (work / "f").write_text("new")
    said = []
    publish(work, tmp_path / "out", "build", said.append)
    assert not kept.exists() and said == [f"  removed {kept}: a failed run's kept work directory, superseded by "
                                          f"this output"]


# 7 ------------------------------------------------------------------------------------------------------------------
def test_7_re_signed_figures_that_contradict_each_other_are_refused(tmp_path, fresh_export, fresh_build):
    from build.report import BuildReport
    from driver.emulate import EmulatedBackend

    bundle = _copy(fresh_build, tmp_path / "B")
    body = read_artifact(bundle / "build_report.json", BuildReport.FORMAT)
    BuildReport.read(bundle)
    body["resources"]["LUT"] -= 100_000
    write_artifact(bundle / "build_report.json", BuildReport.FORMAT, body)
    with pytest.raises(ArtifactError, match=r"resources.LUT: .*but its layers sum to"):
        BuildReport.read(bundle)
    # the driver's input quantiser re-signed in both io.json and driver_io.json: the golden model still says
    export = _copy(fresh_export, tmp_path / "E")
    for path, fmt in ((export / "io.json", ExportIO.FORMAT), (bundle / "driver_io.json", DriverIO.FORMAT)):
        d = read_artifact(path, fmt)
        d["input_quant"]["scale"] *= 0.885
        write_artifact(path, fmt, d)
    with pytest.raises(ValueError, match=r"model_qcdq.onnx: its input quantiser has scale .*driver_io.json says"):
        EmulatedBackend(export, DriverIO.read(bundle))
    assert np.isfinite(DriverIO.read(bundle).input_quant.scale)
