"""One runner for every FINN-side flow of the toolchain, in the habits of FINN's builder (build_dataflow.py).

A flow is a list of plain step functions `(model, ctx) -> model`, named by their function
names as FINN's are (`step_streamline`). `run` looks up the steps to start and stop at by
name (with or without the `step_` prefix), saves each step's output once as
`NN_<name>.onnx` (NN its position in the whole flow, so a partial run's files keep the
numbers of a full one) and times every step. The export, the build, the estimate cache and
the graph a folding file applies to all run through it: they differ only in the steps they
pass and where they start and stop.
"""
from __future__ import annotations

import time
from pathlib import Path


def step_name(step) -> str:
    return step.__name__


def short_name(step) -> str:
    """The name without FINN's `step_` prefix: how stages are labelled in reports."""
    name = step_name(step)
    return name[len("step_"):] if name.startswith("step_") else name


def step_file(index: int, step) -> str:
    """The file a step's output is saved as: its 1-based position in the flow and its name."""
    return f"{index:02d}_{step_name(step)}.onnx"


def find_step(steps, name: str, flag: str = "step") -> int:
    """The index of the step called `name` (step_x or x); a one-line error listing the flow's steps otherwise."""
    for i, s in enumerate(steps):
        if name in (step_name(s), short_name(s)):
            return i
    raise ValueError(f"{flag} {name!r}: no such step; this flow's steps are {', '.join(map(step_name, steps))}")


def run(model, steps, ctx, start: str | None = None, stop: str | None = None, save_dir=None, log=None,
        times: dict | None = None, after_step=None):
    """Run `steps` from `start` to `stop` (both included, names as FINN's start_step/stop_step) on `model`.

    Each step's output is saved into `save_dir` (when given) as NN_<name>.onnx; `times` (a dict, updated in place)
    gets the seconds each step took, as FINN's time_per_step.json; `after_step(index, step, model)` is called after
    each (a resumable flow records its state there). Returns the last step's model.
    """
    first = find_step(steps, start, "--start-step") if start else 0
    last = find_step(steps, stop, "--stop-step") if stop else len(steps) - 1
    if last < first:
        raise ValueError(f"--stop-step {stop} comes before --start-step {start} in this flow")
    times = {} if times is None else times
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
    for i in range(first, last + 1):
        step = steps[i]
        if log:
            log(f"[{i + 1}/{len(steps)}] {step_name(step)}")
        t0 = time.perf_counter()
        model = step(model, ctx)
        times[step_name(step)] = round(time.perf_counter() - t0, 3)
        if save_dir is not None:
            model.save(str(Path(save_dir) / step_file(i + 1, step)))
        if after_step is not None:
            after_step(i, step, model)
    return model


def format_times(times: dict) -> str:
    """One line: each step's seconds and the total."""
    total = sum(times.values())
    return "time per step: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + f"; total {total:.1f} s"
