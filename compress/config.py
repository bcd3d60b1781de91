"""Typed configuration of the hardware-aware search (`python -m compress`)."""
from __future__ import annotations

import typing
from dataclasses import asdict, dataclass

from build.boards import BOARDS
from train.fields import opt


@dataclass
class SearchConfig:
    start: str = opt("models/reference/vgg10-w4a4-f64/model.pt", "trained model to compress (a model.pt, run "
                                                                  "directory or checkpoint.pt); also the teacher")
    data: str = opt("data/synthetic.hdf5", "RadioML 2018.01A-layout HDF5 file, real or synthetic")
    out: str = opt("runs/frontier", "search directory: search.json, frontier.json/png, one model.pt per kept step; "
                                    "rerunning the same command resumes it")
    board: str = opt("ZCU104", "target board (its part's estimates, clock and capacity)",
                     tuple(BOARDS))
    target_fps: int = opt(240_000, "frames/s every model is folded for (the build's LUT-minimal folding)")
    clock_ns: typing.Optional[float] = opt(None, "clock period in ns (default: the board's)")
    util_cap: float = opt(0.8, "a point fits when its LUT, BRAM18 and DSP are within this fraction of the part")
    floor_relative: float = opt(0.95, "feedback accuracy floor as a fraction of the start model's")
    floor: typing.Optional[float] = opt(None, "absolute feedback accuracy floor (instead of floor_relative)")
    val_fraction: float = opt(0.1, "fraction of each (class, SNR) block's training frames held out as feedback")
    epochs_per_step: int = opt(2, "fine-tuning epochs a move gets to meet the floor before it is rolled back")
    train_subset: float = opt(0.06, "fraction of the training frames each fine-tuning epoch draws afresh")
    probe_frames: int = opt(512, "feedback frames on which every candidate move's accuracy cost is measured")
    accuracy_eps: float = opt(0.005, "added to a move's measured accuracy cost (a move that costs nothing is not "
                                     "infinitely good)")
    lr: float = opt(5e-4, "Adam learning rate of the fine-tuning")
    batch_size: int = opt(64, "fine-tuning batch size (64 is the fastest per frame on a 2-core CPU)")
    kd_weight: float = opt(0.5, "weight of the distillation term (0: plain cross-entropy)")
    kd_temperature: float = opt(4.0, "distillation temperature")
    p0: float = opt(0.2, "initial channel-removal rate of every group")
    divisor: float = opt(2.0, "a group's rate is divided by this when its move breaks the floor")
    p_min: float = opt(0.05, "a group takes no channel move once its rate falls below this")
    min_weight_bits: int = opt(2, "no layer's weights go below this many bits")
    min_act_bits: int = opt(2, "no activation goes below this many bits")
    max_steps: int = opt(40, "upper bound on moves tried (rolled-back ones included)")
    alternatives: typing.Optional[typing.Tuple[str, ...]] = opt(None, "other trained models scored beside the "
                                                                      "frontier (comma-separated model.pt paths)")
    estimate_cache: typing.Optional[str] = opt(None, "JSON file of per-layer FINN estimates shared between searches "
                                                     "(default: OUT/layer_estimates.json)")
    seed: int = opt(0, "seed of the fine-tuning subsets, shuffles and initialisation")
    threads: int = opt(0, "torch CPU threads (0: torch's default)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["alternatives"] = None if self.alternatives is None else list(self.alternatives)
        return d


# fields that do not change the result: a resumed search may differ in these
NON_SEMANTIC = {"out", "threads", "estimate_cache", "alternatives", "data", "max_steps"}  # more steps continue a search


def validate(cfg: SearchConfig) -> SearchConfig:
    from pathlib import Path

    checks = [
        (cfg.target_fps >= 1, f"--target-fps must be >= 1, got {cfg.target_fps}"),
        (cfg.clock_ns is None or cfg.clock_ns > 0, f"--clock-ns must be > 0, got {cfg.clock_ns}"),
        (0 < cfg.util_cap <= 1, f"--util-cap must be in (0, 1], got {cfg.util_cap}"),
        (0 < cfg.floor_relative <= 1, f"--floor-relative must be in (0, 1], got {cfg.floor_relative}"),
        (cfg.floor is None or 0 <= cfg.floor <= 1, f"--floor must be in [0, 1], got {cfg.floor}"),
        (0 < cfg.val_fraction < 1, f"--val-fraction must be in (0, 1), got {cfg.val_fraction}"),
        (cfg.epochs_per_step >= 1, f"--epochs-per-step must be >= 1, got {cfg.epochs_per_step}"),
        (0 < cfg.train_subset <= 1, f"--train-subset must be in (0, 1], got {cfg.train_subset}"),
        (cfg.probe_frames >= 1, f"--probe-frames must be >= 1, got {cfg.probe_frames}"),
        (0 <= cfg.kd_weight <= 1, f"--kd-weight must be in [0, 1], got {cfg.kd_weight}"),
        (cfg.kd_temperature > 0, f"--kd-temperature must be > 0, got {cfg.kd_temperature}"),
        (0 < cfg.p0 < 1, f"--p0 must be in (0, 1), got {cfg.p0}"),
        (cfg.divisor > 1, f"--divisor must be > 1, got {cfg.divisor}"),
        (cfg.min_weight_bits >= 2 and cfg.min_act_bits >= 2, "--min-weight-bits and --min-act-bits must be >= 2"),
        (cfg.max_steps >= 1, f"--max-steps must be >= 1, got {cfg.max_steps}"),
        (cfg.lr > 0 and cfg.batch_size >= 1, "--lr must be > 0 and --batch-size >= 1"),
        (Path(cfg.start).exists(), f"--start {cfg.start}: no such file or directory"),
        (Path(cfg.data).is_file(), f"--data {cfg.data}: no such file"),
    ]
    for p in cfg.alternatives or ():
        checks.append((Path(p).exists(), f"--alternatives: {p}: no such file or directory"))
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)
    return cfg
