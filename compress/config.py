"""Typed configuration of the hardware-aware search (`python -m compress`)."""
from __future__ import annotations

import typing
from dataclasses import asdict, dataclass

from build.boards import BOARDS
from train.executor import EXECUTORS
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
    target_fps: int = opt(240_000, "frames/s every model is folded for (the build's search folding)",
                          within="[1, 1e9]")
    fit: str = opt("max-utilisation", "what a step saves at the rate: max-utilisation (the largest share of the part "
                                      "over LUT, BRAM18 and DSP, each MVAU and thresholding layer HLS or RTL as the "
                                      "build's default --fit max-utilisation --impl search chooses) or lut (the "
                                      "FINN-estimated LUTs of the build's --fit lut search: the comparison)",
                   ("max-utilisation", "lut"))
    clock_ns: typing.Optional[float] = opt(None, "clock period in ns (default: the board's)", within="(0, 1000]")
    util_cap: float = opt(0.8, "a point fits when its LUT, BRAM18 and DSP are within this fraction of the part",
                          within="(0, 1]")
    floor_relative: float = opt(0.95, "feedback accuracy floor as a fraction of the start model's", within="(0, 1]")
    floor: typing.Optional[float] = opt(None, "absolute feedback accuracy floor (instead of floor_relative)",
                                        within="[0, 1]")
    val_fraction: float = opt(0.1, "fraction of each (class, SNR) block's training frames held out as feedback",
                              within="(0, 1)")
    epochs_per_step: int = opt(2, "fine-tuning epochs a move gets to meet the floor before it is rolled back",
                                within="[1, 1000]")
    train_subset: float = opt(0.06, "fraction of the training frames each fine-tuning epoch draws afresh",
                              within="(0, 1]")
    probe_frames: int = opt(512, "feedback frames on which every candidate move's accuracy cost is measured (at "
                                  "most the feedback split's)", within="[1, inf)")
    accuracy_eps: float = opt(0.005, "added to a move's measured accuracy cost (a move that costs nothing is not "
                                     "infinitely good)", within="(0, 1]")
    lr: float = opt(5e-4, "Adam learning rate of the fine-tuning", within="(0, 1]")
    batch_size: int = opt(64, "fine-tuning batch size (64 is the fastest per frame on a 2-core CPU)",
                          within="[1, 65536]")
    kd_weight: float = opt(0.5, "weight of the distillation term (0: plain cross-entropy)", within="[0, 1]")
    kd_temperature: float = opt(4.0, "distillation temperature", within="(0, 100]")
    p0: float = opt(0.2, "initial channel-removal rate of every group", within="(0, 1)")
    divisor: float = opt(2.0, "a group's rate is divided by this when its move breaks the floor", within="(1, 1000]")
    p_min: float = opt(0.05, "a group takes no channel move once its rate falls below this (at most p0)",
                        within="(0, 1)")
    min_weight_bits: int = opt(2, "no layer's weights go below this many bits", within="[2, 8]")
    min_act_bits: int = opt(2, "no activation goes below this many bits", within="[2, 8]")
    max_polyphase: int = opt(4, "front-end moves: while the last good model does not reach the target rate, a "
                                "standard front end may become polyphase with 2 or 4 I/Q samples a clock, up to this "
                                "many (1: never; the move past the one-sample-a-clock ceiling, about 244,000 frames/s "
                                "at 250 MHz)", (1, 2, 4))
    max_steps: int = opt(40, "upper bound on moves tried (rolled-back ones included)", within="[1, 100000]")
    alternatives: typing.Optional[typing.Tuple[str, ...]] = opt(None, "other trained models scored beside the "
                                                                      "frontier (comma-separated model.pt paths)")
    estimate_cache: typing.Optional[str] = opt(None, "JSON file of per-layer FINN estimates shared between searches "
                                                     "(default: OUT/layer_estimates.json)")
    seed: int = opt(0, "seed of the fine-tuning subsets, shuffles and initialisation", within="[0, 4294967295]")
    threads: int = opt(0, "torch CPU threads (0: torch's default)", within="[0, 4096]")
    estimate_workers: int = opt(0, "processes converting candidate shapes for FINN's estimates at once (0: one per "
                                   "CPU core; 1: in the search's own process)", within="[0, 4096]")
    executor: str = opt("local", "where each step's candidate measurements and its fine-tuning run: here (local) or "
                                 "as Ray tasks of --threads CPUs (at least 1) each (ray; the same frontier)", EXECUTORS)
    ray_address: typing.Optional[str] = opt(None, "with --executor ray: the cluster to join (auto, or HOST:PORT of "
                                                  "`ray start --head`; default: RAY_ADDRESS, else a cluster of this "
                                                  "machine's CPUs started for the search)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["alternatives"] = None if self.alternatives is None else list(self.alternatives)
        return d


# what a field absent from a search state written before it existed stood for (what the older code did)
WRITTEN_BEFORE = {"fit": "lut", "max_polyphase": 1}


def absent_defaults() -> dict:
    """The values a search state's missing fields count as on resume."""
    return {**SearchConfig().to_dict(), **WRITTEN_BEFORE}


# fields that do not change the result: a resumed search may differ in these (more steps continue it)
NON_SEMANTIC = {"out", "threads", "estimate_workers", "estimate_cache", "alternatives", "data", "max_steps",
                "executor", "ray_address"}


def validate(cfg: SearchConfig) -> SearchConfig:
    """Every flag checked before any work: numbers finite and in range, files present."""
    from pathlib import Path

    from train.fields import check_ranges

    check_ranges(cfg)
    checks = [
        (cfg.p_min <= cfg.p0, f"--p-min must be at most --p0 ({cfg.p0}), got {cfg.p_min}"),
        (Path(cfg.start).exists(), f"--start {cfg.start}: no such file or directory"),
        (Path(cfg.data).is_file(), f"--data {cfg.data}: no such file"),
    ]
    for p in cfg.alternatives or ():
        checks.append((Path(p).exists(), f"--alternatives: {p}: no such file or directory"))
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)
    return cfg
