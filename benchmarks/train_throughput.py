"""Training frames/s of the 4-bit VGG10 on this CPU: float ceiling, Brevitas' statistics phase, after it, compiled.

A Brevitas QuantReLU with a learned scale (Uint8ActPerTensorFloat) spends its
first 300 training steps (collect_stats_steps) setting that scale from the
99.999th percentile of |x| over each batch. Brevitas' AbsPercentile computes it
with torch.kthvalue over the whole activation; train/percentile.py's
FastAbsPercentile returns the same value far faster. Once the 300 steps are done
(or a trained state dict is loaded, as every fine-tuning does), no percentile is
computed at all. This benchmark times real training steps (Adam, cross-entropy,
random frames: compute-bound, no data reader) of the same network in each state:

  a  float      plain PyTorch, same topology, no quantisation: the ceiling
  b  before     QAT, statistics phase, Brevitas' AbsPercentile (a short run from scratch, until this change)
  c  fast       QAT, statistics phase, FastAbsPercentile (a run from scratch, today's model)
  d  after      QAT after the statistics phase (state dict loaded), eager
  e  compiled   d under torch.compile (compile time reported separately)
  f  fused      d through train/speed.py's Step: QuantReLU in fewer passes, max-pool before it (eager ops)
  j  kernels    f with each QuantReLU by two generated kernels (--train.kernels: the default on a CPU)
  g  fused      c through the default Step (the statistics phase of a run from scratch)
  h  f + torch.compile;  i  j under bf16 autocast;  a2  a under bf16 autocast (bf16 rows: CPUs with bf16 only)

then the levers on rows c and d: batch size and torch.set_num_threads, and where the time of a step
of rows a and j goes (torch.profiler's self time per kernel group: what bounds QAT against float).
Every row is a fresh model built with the same seed; after --warmup steps each, the rows are timed in
turn, --steps steps at a time, --repeats rounds (interleaved, so a busy neighbour on a shared CPU slows
all rows alike), and each reports its median.
Stats-phase rows are checked to still be in the statistics phase after timing.

    python -m benchmarks.train_throughput [--filters 64] [--batch-size 128] [--no-compile]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def _float_vgg10(cfg) -> nn.Sequential:
    """The VGG10 topology of train.model.build_vgg10 in plain float PyTorch."""
    from radioml.classes import CLASSES, FRAME_LENGTH

    layers: list[nn.Module] = []
    in_ch = 2
    for f in cfg.convs:
        layers += [nn.Conv1d(in_ch, f, 3, padding=1, bias=False), nn.BatchNorm1d(f), nn.ReLU(), nn.MaxPool1d(2)]
        in_ch = f
    d1, d2 = cfg.denses
    layers += [nn.Flatten(),
               nn.Linear(in_ch * (FRAME_LENGTH >> cfg.conv_blocks), d1, bias=False), nn.BatchNorm1d(d1), nn.ReLU(),
               nn.Linear(d1, d2, bias=False), nn.BatchNorm1d(d2), nn.ReLU(),
               nn.Linear(d2, len(CLASSES))]
    return nn.Sequential(*layers)


def _autocast(model: nn.Module):
    """model's forward under CPU bf16 autocast."""
    def forward(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)
    return forward


def _scalings(model: nn.Module) -> list:
    """The ParameterFromRuntimeStatsScaling of every QuantReLU."""
    import brevitas.nn as qnn

    return [m.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl
            for m in model.modules() if isinstance(m, qnn.QuantReLU)]


def _qat_model(cfg, state: str) -> nn.Module:
    """The 4-bit VGG10 (with its pruning masks, as training runs it) in one of the states
    'before' (Brevitas' AbsPercentile), 'fast' (FastAbsPercentile), 'after' (statistics done)."""
    from brevitas.core.stats.stats_op import AbsPercentile

    from train.masks import init_masks
    from train.model import build_vgg10
    from train.percentile import FastAbsPercentile

    torch.manual_seed(0)
    model = init_masks(build_vgg10(cfg)).train()
    for s in _scalings(model):
        assert isinstance(s.stats.stats_impl, FastAbsPercentile) and s.counter == 0
        if state == "before":
            s.stats.stats_impl = AbsPercentile(s.stats.stats_impl.q, None)
    if state == "after":
        # One tiny step gives every scale a value; loading that state dict marks statistics
        # collection done (counter = collect_stats_steps + 1), as loading a trained model does.
        from radioml.classes import FRAME_LENGTH

        F.cross_entropy(model(torch.randn(2, 2, FRAME_LENGTH)), torch.tensor([0, 1])).backward()
        model.zero_grad(set_to_none=True)
        model.load_state_dict(model.state_dict())
        assert all(s.counter > s.collect_stats_steps for s in _scalings(model))
    return model


class _Row:
    """One timed configuration: a model, its optimizer, two random batches and a thread count."""

    def __init__(self, key: str, label: str, model: nn.Module, batch: int, threads: int, step_model=None):
        self.cpu: list[float] = []
        from radioml.classes import CLASSES, FRAME_LENGTH

        self.key, self.label, self.model, self.batch, self.threads = key, label, model, batch, threads
        self.fwd = step_model or model
        self.opt = torch.optim.Adam(model.parameters(), 1e-3)
        g = torch.Generator().manual_seed(1)
        self.data = [(torch.randn(batch, 2, FRAME_LENGTH, generator=g),
                      torch.randint(0, len(CLASSES), (batch,), generator=g)) for _ in range(2)]
        self.n = 0
        self.warm_s: list[float] = []
        self.rates: list[float] = []

    def _steps(self, k: int) -> float:
        prev = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            t, c = time.perf_counter(), time.process_time()
            for _ in range(k):
                x, y = self.data[self.n % 2]
                self.n += 1
                self.opt.zero_grad()
                F.cross_entropy(self.fwd(x).float(), y).backward()
                self.opt.step()
            self.last_cpu = time.process_time() - c
            return time.perf_counter() - t
        finally:
            torch.set_num_threads(prev)

    def warm(self, k: int) -> None:
        self.warm_s += [self._steps(1) for _ in range(k)]

    def time(self, k: int) -> None:
        self.rates.append(k * self.batch / self._steps(k))
        self.cpu.append(k * self.batch / self.last_cpu)

    @property
    def fps(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu_fps(self) -> float:
        """Frames per CPU-second of this process: less disturbed by other processes than wall time."""
        return statistics.median(self.cpu)


def _busy_cores(seconds: float = 2.0):
    """Cores busy (with any process) over the next `seconds`, from /proc/stat; None where there is none."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return v[3] + v[4], sum(v)  # idle + iowait, total

    try:
        i1, t1 = sample()
        time.sleep(seconds)
        i2, t2 = sample()
    except (OSError, ValueError):
        return None
    return (os.cpu_count() or 1) * (1 - (i2 - i1) / max(t2 - t1, 1))


def _dynamo_graphs() -> int:
    """Graphs torch.compile has compiled so far in this process."""
    import torch._dynamo.utils

    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def _check_phase(model: nn.Module, state: str) -> None:
    for s in _scalings(model):
        if state in ("before", "fast"):
            assert s.counter < s.collect_stats_steps, f"{state}: left the statistics phase (counter {s.counter})"
        else:
            assert s.counter > s.collect_stats_steps, f"{state}: still in the statistics phase"


KERNEL_GROUPS = (("convolution", ("convolution",)), ("dense matmul", ("aten::mm", "aten::addmm")),
                 ("BatchNorm", ("batch_norm",)), ("max-pool", ("max_pool", "aten::max", "aten::scatter_")))
REST = "quantisers, optimizer, rest"  # every op QAT does not share with float


def kernel_group(op: str) -> str:
    """The group of a profiled op; REST for everything not shared with float."""
    for group, keys in KERNEL_GROUPS:
        if any(op == k if k.startswith("aten::") else k in op for k in keys):
            return group
    return REST


def breakdown(r: "_Row", steps: int) -> dict[str, float]:
    """Milliseconds of self CPU time per kernel group in one training step of row r (profiled steps)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        r._steps(steps)
    ms: dict[str, float] = {}
    for e in prof.key_averages():
        g = kernel_group(e.key)
        ms[g] = ms.get(g, 0.0) + e.self_cpu_time_total / 1e3 / steps
    return ms


def print_breakdown(rows: list, steps: int) -> None:
    """Where a step of float (row a) and of the default QAT step (row j) goes, and the bound that follows."""
    groups = [g for g, _ in KERNEL_GROUPS] + [REST]
    ms = {r.label.split()[0]: breakdown(r, steps) for r in rows}
    print(f"\nwhere a step's time goes (self CPU ms a step, torch.profiler over {steps} steps, "
          f"batch {rows[0].batch}, {rows[0].threads} thr):")
    print(f"{'kernel group':<30}" + "".join(f"{'row ' + k:>12}" for k in ms))
    for g in groups + ["total"]:
        cells = (sum(m.values()) if g == "total" else m.get(g, 0.0) for m in ms.values())
        print(f"{g:<30}" + "".join(f"{c:>12.1f}" for c in cells))
    if "a" in ms and "j" in ms:
        target = sum(ms["a"].values()) / 1.5
        shared = sum(ms["j"].get(g, 0.0) for g, _ in KERNEL_GROUPS)
        verdict = "out of reach with these kernels" if shared > target else "not excluded by this bound"
        print(f"1.5x float is {target:.0f} ms a step; row j's float kernels alone (convolution, matmul, "
              f"BatchNorm, max-pool) take {shared:.0f} ms: {verdict}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--filters", type=int, default=64,
                   help="conv filters per block, 64 = the challenge's VGG10, 32 = a half-width model (default: %(default)s)")
    p.add_argument("--bits", type=int, default=4, help="input/weight/activation bits of the QAT model (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=128, help="batch of the main rows a-e (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for the main rows (default: %(default)s)")
    p.add_argument("--lever-batches", default="64,256",
                   help="other batch sizes timed for rows c and d, comma-separated; empty for none (default: %(default)s)")
    p.add_argument("--lever-threads", default="1",
                   help="other thread counts timed for rows c and d, comma-separated; empty for none (default: %(default)s)")
    p.add_argument("--no-levers", action="store_true", help="time the main rows only")
    p.add_argument("--no-compile", action="store_true", help="skip row e (torch.compile, about 30 s of compilation)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing each row (default: %(default)s)")
    p.add_argument("--steps", type=int, default=3, help="steps per timed repeat (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per row; the median is reported (default: %(default)s)")
    p.add_argument("--no-fused", action="store_true", help="skip rows f-j (train/speed.py's training step)")
    p.add_argument("--breakdown-steps", type=int, default=3,
                   help="steps profiled for the time breakdown of rows a and j; 0 skips it (default: %(default)s)")
    a = p.parse_args(argv)
    if a.warmup + a.steps * a.repeats >= 300:
        p.error("warmup + steps * repeats must stay below Brevitas' 300 statistics steps")

    from train.model import ModelConfig

    cfg = ModelConfig(a.bits, a.bits, a.bits, conv_filters=a.filters)
    t_start = time.perf_counter()
    busy0 = _busy_cores()
    print(f"VGG10 {cfg.bits_label()} bits, {a.filters} filters: training frames/s on {os.cpu_count()} CPU cores "
          f"(torch {torch.__version__}); median of {a.repeats} x {a.steps} steps after {a.warmup} warm-up steps")
    from train.speed import SpeedConfig, Step, bf16_supported, cpu_flags, uses_kernels

    cpu = torch.device("cpu")
    bf16 = bf16_supported(cpu)
    print(f"CPU: {cpu_flags()}; bf16 {'supported' if bf16 else 'unsupported (rows a2 and i skipped)'}")
    if busy0 is not None and busy0 > 0.25:
        print(f"warning: {busy0:.1f} cores busy before starting: other processes share these cores, and rows "
              "with more threads than idle cores slow down most (timings not comparable to a quiet machine)")
    B, T = a.batch_size, a.threads

    def make(key: str, label: str, batch: int = B, threads: int = T) -> _Row:
        if key == "float":
            torch.manual_seed(0)
            return _Row(key, label, _float_vgg10(cfg).train(), batch, threads)
        return _Row(key, label, _qat_model(cfg, key), batch, threads)

    main_rows = [make("float", "a float PyTorch (ceiling)"),
                 make("before", "b QAT stats phase, Brevitas pctl"),
                 make("fast", "c QAT stats phase, FastAbsPctl"),
                 make("after", "d QAT after stats phase, eager")]
    if not a.no_compile:
        import logging

        torch._logging.set_logs(dynamo=logging.ERROR)  # Brevitas' .item() graph breaks warn at length
        model = _qat_model(cfg, "after")
        main_rows.append(_Row("after", "e d + torch.compile", model, B, T, step_model=torch.compile(model)))
    if bf16:
        torch.manual_seed(0)
        fm = _float_vgg10(cfg).train()
        main_rows.insert(1, _Row("float", "a2 a under bf16 autocast", fm, B, T, step_model=_autocast(fm)))
    if not a.no_fused:
        def fused(key: str, label: str, **speed) -> _Row:
            model = _qat_model(cfg, key)
            return _Row(key, label, model, B, T, step_model=Step(model, SpeedConfig(**speed), cpu))

        kernels_here = uses_kernels(SpeedConfig(precision="fp32", compile="false"), cpu)
        main_rows += [fused("after", "f d, fused step, eager ops", precision="fp32", compile="false", kernels="false"),
                      fused("after", "j f + QuantReLU kernels (default)" if kernels_here
                            else "j default step (no kernels here)", precision="fp32", compile="false"),
                      fused("fast", "g c, default fused step", precision="fp32", compile="false")]
        if not a.no_compile:
            main_rows.append(fused("after", "h f + torch.compile", precision="fp32", compile="true"))
        if bf16:
            main_rows.append(fused("after", "i j under bf16 autocast", precision="bf16", compile="false"))
    lever_rows = []
    if not a.no_levers:
        batches = [int(b) for b in a.lever_batches.split(",") if b.strip()]
        threads = [int(t) for t in a.lever_threads.split(",") if t.strip()]
        for key, label in (("fast", "c stats phase, FastAbsPctl"), ("after", "d after stats phase, eager")):
            lever_rows += [make(key, label, batch=b) for b in batches]
            lever_rows += [make(key, label, threads=t) for t in threads]
    rows = main_rows + lever_rows

    for r in rows:  # warm-up (row e: compilation of forward and backward, and any recompilation)
        r.warm(max(3, a.warmup) if r.label[0] in "eh" else a.warmup)
        print(f"  warm-up {r.label:<34} batch {r.batch:>4} x {r.threads} thr: "
              + ", ".join(f"{s:.2f}" for s in r.warm_s) + " s", flush=True)
    graphs = _dynamo_graphs()
    for i in range(a.repeats):  # rows interleaved, so that load from other processes spreads over all of them
        for r in rows:
            r.time(a.steps)
        print(f"  repeat {i + 1}/{a.repeats}: " + " ".join(f"{r.rates[-1]:.0f}" for r in rows) + " frames/s", flush=True)
    for r in rows:
        _check_phase(r.model, r.key)
    compile_s = {}
    if not a.no_compile:
        for e in main_rows:
            if e.label[0] in "eh":
                compile_s[e.label[0]] = sum(e.warm_s) - len(e.warm_s) * e.batch / e.fps
        recompiled = _dynamo_graphs() != graphs
        breaks = sum(torch._dynamo.utils.counters["graph_break"].values())

    def note(r: _Row) -> str:
        if r.key in ("before", "fast"):
            return f"counter {_scalings(r.model)[0].counter}/300 after timing"
        if r.label[0] in "eh":
            return (f"compile {compile_s[r.label[0]]:.1f} s ({graphs} graphs, {breaks} graph breaks in the process)"
                    + (", RECOMPILED DURING TIMING" if recompiled else ""))
        return ""

    fps = {r.label.split()[0]: r.fps for r in main_rows}
    base = fps["b"]
    print()
    print(f"{'row':<36}{'batch':>6}{'thr':>5}{'frames/s':>10}{'vs b':>8}{'vs a':>7}{'/cpu-s':>8}  note")
    print("-" * 100)
    for r in main_rows:
        print(f"{r.label:<36}{r.batch:>6}{r.threads:>5}{r.fps:>10.1f}{r.fps / base:>7.2f}x{r.fps / fps['a']:>6.2f}x"
              f"{r.cpu_fps:>8.0f}  {note(r)}")
    if lever_rows:
        print(f"levers (rows c and d; 'vs b' against row b at batch {B}, {T} threads; 'vs row' against the same row above)")
        for r in lever_rows:
            print(f"{r.label:<36}{r.batch:>6}{r.threads:>5}{r.fps:>10.1f}{r.fps / base:>7.2f}x  "
                  f"{r.fps / fps[r.label[0]]:.2f}x vs row {r.label[0]}  {note(r)}")
    print("-" * 100)
    parts = [f"FastAbsPercentile: stats-phase training {fps['c'] / base:.2f}x Brevitas' percentile",
             f"after the stats phase {fps['d'] / base:.2f}x"]
    if "e" in compile_s:
        saved = B / fps["d"] - B / fps["e"]
        payoff = (f", pays its {compile_s['e']:.0f} s back after {compile_s['e'] / saved:.0f} steps" if saved > 0
                  else ", never pays back")
        parts.append(f"compiled {fps['e'] / base:.2f}x{payoff}")
    if "f" in fps:
        parts.append(f"fused step {fps['f'] / fps['d']:.2f}x row d after the statistics phase, with the QuantReLU "
                     f"kernels {fps['j'] / fps['d']:.2f}x (row j, {fps['j'] / fps['f']:.2f}x row f), "
                     f"{fps['g'] / fps['c']:.2f}x row c in it")
    best = max((k for k in fps if k in "defhij"), key=lambda k: fps[k])
    parts.append(f"QAT at best (row {best}) is {fps[best] / fps['a']:.2f}x float PyTorch ({fps['a']:.0f} frames/s; "
                 f"targets: >= 1.5x or >= 1,000 frames/s, and row g >= 2x row c)")
    print("conclusion: " + "; ".join(parts) + ".")
    if a.breakdown_steps > 0:
        print_breakdown([r for r in main_rows if r.label.split()[0] in ("a", "j")], a.breakdown_steps)
    wall = time.perf_counter() - t_start
    busy1 = _busy_cores()
    if busy0 is not None:
        print(f"wall time {wall:.0f} s; cores busy with other processes: {busy0:.1f} just before, "
              f"{busy1:.1f} just after (of {os.cpu_count()}; during the run: unknown)")
    else:
        print(f"wall time {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
