"""One FINN flow run by one runner: steps by name, start and stop, timings, a stopped or failed build resumed."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from build.config import BuildConfig
from build.flow import BUILD_STEPS, DEFAULT_STEPS, FINN_FLOW, build, build_steps
from export.runner import find_step, run, step_file
from export.steps import FINN_STEPS
from radioml.artifacts import read_artifact
from radioml.publish import KEPT

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _report(out: Path) -> dict:
    return read_artifact(out / "build_report.json", "amc-build-report/1")


def test_the_export_and_the_build_are_one_flow_cut_at_the_streamlined_graph():
    assert FINN_FLOW == FINN_STEPS + BUILD_STEPS and DEFAULT_STEPS[1:] == BUILD_STEPS
    assert find_step(FINN_FLOW, "streamline") == find_step(FINN_FLOW, "step_streamline") == 2
    with pytest.raises(ValueError, match="--start-step 'step_synthesis': no such step; this flow's steps are "
                                         "step_load, step_to_hw"):
        find_step(DEFAULT_STEPS, "step_synthesis", "--start-step")
    from build.__main__ import STEP_NAMES

    assert [s.__name__ for s in build_steps(BuildConfig(codegen=True, bitfile=True))] == list(STEP_NAMES)


def test_run_starts_stops_saves_and_times_by_name(tmp_path):
    calls = []

    class Model:
        def save(self, path):
            Path(path).write_text("m")

    def step_a(m, ctx):
        calls.append("a")
        return m

    def step_b(m, ctx):
        calls.append("b")
        return m

    def step_c(m, ctx):
        calls.append("c")
        return m

    times = {}
    run(Model(), [step_a, step_b, step_c], None, start="b", stop="step_b", save_dir=tmp_path, times=times)
    assert calls == ["b"] and list(times) == ["step_b"] and os.listdir(tmp_path) == [step_file(2, step_b)]
    with pytest.raises(ValueError, match="--stop-step a comes before --start-step c"):
        run(Model(), [step_a, step_b, step_c], None, start="c", stop="a")


def test_time_per_step_is_in_both_reports(fresh_export, fresh_build):
    exp = read_artifact(fresh_export / "export_report.json", "amc-export-report/1")
    assert list(exp["time_per_step"]) == [s.__name__ for s in FINN_STEPS]
    assert list(_report(fresh_build)["time_per_step"]) == [s.__name__ for s in DEFAULT_STEPS]
    assert all(t > 0 for t in _report(fresh_build)["time_per_step"].values())


def test_a_build_stopped_after_a_step_finishes_with_start_step_as_if_uninterrupted(tmp_path, fresh_export,
                                                                                     fresh_build):
    out = tmp_path / "bundle"
    args = ["build", "--export", str(fresh_export), "--out", str(out), "--board", "ZCU104", "--fit", "lut",
            "--target-fps", "20000"]  # fresh_build's settings
    r = subprocess.run([sys.executable, "-m", *args, "--stop-step", "step_folding"], capture_output=True, text=True,
                       env=ENV, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not out.exists() and "finish with: python -m build" in r.stdout
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.tmp")]
    assert len(kept) == 1 and (kept[0] / KEPT).exists()
    assert sorted(p.name for p in (kept[0] / "intermediate_models").glob("0*.onnx"))[-1] == "05_step_folding.onnx"
    # resuming with other inputs is refused, naming what differs
    r = subprocess.run([sys.executable, "-m", *args[:-1], "30000", "--start-step", "step_minimize"],
                       capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 2 and "kept by a build with other target_fps than this command's" in r.stderr
    r = subprocess.run([sys.executable, "-m", *args, "--start-step", "step_minimize"], capture_output=True, text=True,
                       env=ENV, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[5/" not in r.stdout and "[6/8] step_minimize" in r.stdout
    resumed, whole = _report(out), _report(fresh_build)
    for k in ("resources", "layers", "estimated_fps", "max_cycles", "fits", "meets_target", "io_shape_dict"):
        assert resumed[k] == whole[k], k
    assert resumed["folded_verification"]["ok"] and resumed["folded_verification"] == whole["folded_verification"]
    assert list(resumed["time_per_step"]) == [s.__name__ for s in DEFAULT_STEPS]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.")]  # the kept directory is published


def test_a_failed_build_says_how_to_resume(tmp_path, fresh_export, monkeypatch):
    import radioml.artifacts as artifacts

    hashed = []
    real = artifacts.file_digest
    monkeypatch.setattr(artifacts, "file_digest", lambda path: hashed.append(Path(path).name) or real(path))

    def step_boom(model, ctx):
        raise RuntimeError("synthesis failed: timing not met")

    with pytest.raises(Exception) as e:
        build(BuildConfig(export_dir=str(fresh_export), out=str(tmp_path / "b"), target_fps=20_000),
              steps=DEFAULT_STEPS[:2] + [step_boom], log=lambda *_: None)
    msg = str(e.value)
    assert "the build failed in step_boom (RuntimeError: synthesis failed: timing not met)" in msg
    assert msg.endswith(f"resume with: python -m build --export {fresh_export} --out {tmp_path / 'b'} --target-fps "
                        f"20000 --start-step step_boom"), msg
    state = json.loads((e.value.work / "resume.json").read_text())
    assert state["done"] == ["step_load", "step_to_hw"]
    assert hashed.count("model_finn_streamlined.onnx") == 1  # the export verified once a build, not per step


def test_the_resume_command_names_only_what_the_defaults_do_not_imply():
    """--fit and --impl default to auto (max-utilisation with --impl search, which implies standalone thresholds):
    a resume command repeats what was chosen against them, nothing the defaults resolve to."""
    from build.resume import resume_command

    cmd = lambda **kw: resume_command(BuildConfig(export_dir="e", out="o", **kw), "step_folding")  # noqa: E731
    tail = "--start-step step_folding"
    assert cmd() == f"python -m build --export e --out o {tail}"
    assert cmd(fit="lut") == f"python -m build --export e --out o --fit lut {tail}"
    assert cmd(impl="finn", standalone_thresholds=True) == \
        f"python -m build --export e --out o --impl finn --standalone-thresholds {tail}"
    assert cmd(folding="finn") == f"python -m build --export e --out o --folding finn {tail}"
