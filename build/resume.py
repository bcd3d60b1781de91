"""Resuming a build from the work directory a failed or stopped build kept (`--start-step`).

A build records, after every step, `resume.json` in its work directory: the inputs its numbers
depend on (build/report.py's build_inputs: the export's graph digest, board, clock, rate, folding
...), the steps done and what the steps noted on the way (verification results, the folding the
search chose, the rate --max-fps found). `python -m build ... --start-step NAME` finds the newest
kept work directory of the same --out, refuses it unless its inputs are this command's and the
step before NAME is done, takes it over (renamed to this process) and runs on from the previous
step's saved model. A `--bitfile` build that fails after hours in synthesis so restarts at
synthesis, not at the export.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import fields
from pathlib import Path

from radioml.artifacts import need, read_artifact, write_artifact
from radioml.publish import KEPT, pid_alive

from .config import BuildConfig

FORMAT = "amc-build-resume/1"
FILE = "resume.json"


def write_state(work: Path, inputs: dict, done: list, notes: dict, target_fps: float) -> None:
    write_artifact(Path(work) / FILE, FORMAT, {"inputs": inputs, "done": list(done), "notes": notes,
                                                "target_fps": target_fps})


def read_state(work: Path) -> dict:
    path = Path(work) / FILE
    body = read_artifact(path, FORMAT)
    for k, t in (("inputs", dict), ("done", list), ("notes", dict), ("target_fps", (int, float))):
        need(isinstance(body.get(k), t), path, k, "missing or of the wrong type")
    return body


def kept_work_dirs(out: Path) -> list[Path]:
    """The work directories failed or stopped builds of `out` kept, newest first."""
    out = Path(out)
    found = [p for p in out.parent.glob(f".{out.name}.tmp*") if p.is_dir() and (p / KEPT).exists() and
             (p / FILE).exists()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def find_resumable(out: Path, inputs: dict, previous: str | None) -> Path:
    """The newest kept work directory of `out` made with `inputs` that has finished step `previous`; one-line
    errors saying why there is none."""
    kept = kept_work_dirs(out)
    if not kept:
        raise ValueError(f"{out}: no kept work directory to resume (a build that fails after its first step, or "
                         f"stops at --stop-step, keeps one beside --out)")
    work = kept[0]
    state = read_state(work)
    differ = sorted(k for k in set(inputs) | set(state["inputs"]) if inputs.get(k) != state["inputs"].get(k))
    if differ:
        raise ValueError(f"{work}: kept by a build with other {', '.join(differ)} than this command's; rerun with "
                         f"the same flags (and the same export) to resume it")
    if previous is not None and previous not in state["done"]:
        last = state["done"][-1] if state["done"] else "none"
        raise ValueError(f"{work}: the kept build did not finish {previous} (its last finished step: {last}); "
                         f"resume with --start-step at the step after {last}")
    return work


def take_over(work: Path) -> Path:
    """The kept work directory renamed to this process (so no other process's sweep takes it) and unmarked."""
    m = work.name.split(".tmp", 1)
    pid = m[1].split("-", 1)[0] if len(m) == 2 else ""
    if pid.isdigit() and pid_alive(int(pid)) and int(pid) != os.getpid():
        raise ValueError(f"{work}: in use by process {pid}")
    mine = work.with_name(f"{m[0]}.tmp{os.getpid()}-resumed")
    os.replace(work, mine)
    (mine / KEPT).unlink()
    return mine


def resume_command(cfg: BuildConfig, step: str) -> str:
    """The command line that reruns this build from `step` (every flag as given, --stop-step dropped)."""
    args = ["python", "-m", "build"]
    given = {"folding": cfg.folding, "specialize_layers": cfg.specialize_layers}
    implied = {"fit": BuildConfig(**given).fit,  # what the defaults resolve to, given the flags before them
               "impl": BuildConfig(**given, fit=cfg.fit).impl,
               "standalone_thresholds": BuildConfig(**given, fit=cfg.fit, impl=cfg.impl).standalone_thresholds}
    for f in fields(BuildConfig):
        v = getattr(cfg, f.name)
        if f.name in ("start_step", "stop_step") or v is None or v is False or v == f.default \
                or (f.name in implied and v == implied[f.name]):
            continue
        flag = "--" + ("export" if f.name == "export_dir" else f.name.replace("_", "-"))
        if f.name == "finn_verify":
            continue  # default True; False is --no-finn-verify below
        args += [flag] if v is True else [flag, str(v)]
    if not cfg.finn_verify:
        args.append("--no-finn-verify")
    if "--export" not in args:
        args += ["--export", cfg.export_dir]
    if "--out" not in args:
        args += ["--out", cfg.out]
    return " ".join(shlex.quote(a) for a in args + ["--start-step", step])
