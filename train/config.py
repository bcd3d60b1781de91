"""The one typed configuration of a training run: defaults, JSON file, CLI flags.

Every field can come from a JSON file (`--config run.json`, nested like the
dataclasses) and be overridden by a flag named after its path
(`--optim.lr 3e-4`, `--prune.strategy imp`). The resolved config is saved in
the run directory and checked again on resume.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .fields import opt
from .masks import STRUCTURES
from .model import ModelConfig
from .speed import SpeedConfig

STRATEGIES = ("none", "imp", "imp-converge", "fmp", "precision")


@dataclass
class DataConfig:
    path: str = opt("data/synthetic.hdf5", "RadioML 2018.01A-layout HDF5 file, real or synthetic")
    val_fraction: float = opt(0.05, "fraction of each (class, SNR) block's training frames held out for validation")
    min_train_snr: typing.Optional[float] = opt(None, "drop training and validation frames below this SNR (dB)")
    feedback_split: str = opt("val", "split whose accuracy feeds the pruning schedule: val, or test to reproduce "
                                     "the FMP authors' scripts", ("val", "test"))
    train_subset: float = opt(1.0, "train on this fraction of the training frames (every block kept)")
    resample_subset: bool = opt(False, "draw a fresh train_subset every epoch (short fine-tunes overfit less)")
    cache_dir: typing.Optional[str] = opt(None, "directory for a one-time cache of a chunked or compressed file")
    buffer_frames: int = opt(65536, "frames in the shuffle buffer (bounds the reader's memory)")


@dataclass
class OptimConfig:
    lr: float = opt(1e-3, "Adam learning rate")
    batch_size: int = opt(1024, "training batch size (64 is the fastest per frame on a 2-core CPU)")
    epochs_per_round: int = opt(50, "training epochs allowed per pruning round (0: score an --init_from model)")
    plateau_factor: float = opt(0.1, "ReduceLROnPlateau factor on the validation loss")
    plateau_patience: int = opt(15, "ReduceLROnPlateau patience, in epochs")
    stop_patience: int = opt(0, "dense runs (prune.strategy none): stop once the feedback accuracy has not improved "
                                "for this many epochs and keep the best epoch's model (0: train all "
                                "epochs_per_round epochs and keep the last)", within="[0, 1000]")
    eval_batch_size: int = opt(1024, "batch size when scoring")


@dataclass
class PruneConfig:
    strategy: str = opt("fmp", "none (dense training), imp, imp-converge (IMP, every round trained to its end), fmp, "
                               "or precision (lower per-layer bit widths instead of pruning weights)", STRATEGIES)
    floor: float = opt(0.56, "accuracy the feedback split must keep (train.compare: --floor-relative sets it)")
    p0: float = opt(0.2, "initial pruning rate (IMP keeps it)")
    divisor: float = opt(2.0, "FMP: the rate is divided by this after a round ends under the floor")
    p_min: float = opt(0.05, "FMP: stop once the rate falls below this")
    scope: str = opt("global", "unstructured pruning: global (one threshold over all layers, the FMP authors') or "
                               "layer (the rate of each layer's weights)", ("global", "layer"))
    structure: str = opt("unstructured", "what a pruning step removes: unstructured weights, whole filters and "
                                         "neurons (a smaller FINN accelerator), or hybrid (filters, then weights)",
                         ("unstructured", "filters", "hybrid"))
    max_rounds: int = opt(100, "upper bound on pruning steps")
    cost_every_round: bool = opt(True, "qonnx inference cost of every model that met the floor (about 1 s each)")


@dataclass
class PrecisionConfig:
    """The bit-width search (prune.strategy precision, train/precision.py); floor and epochs as pruning's."""

    objective: str = opt("cost", "what a lowered bit saves: cost (the challenge's) or hardware (what FINN's MVAU "
                                 "LUTs scale with)", ("cost", "hardware"))
    min_weight_bits: int = opt(2, "no layer's weights go below this many bits")
    min_act_bits: int = opt(2, "no activation goes below this many bits")


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(4, 4, 4))
    optim: OptimConfig = field(default_factory=OptimConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    train: SpeedConfig = field(default_factory=SpeedConfig)
    seed: int = opt(0, "seed of the model's initialisation, the subsets and the shuffles")
    init_from: typing.Optional[str] = opt(None, "start from another run's model: a run directory, model.pt or "
                                                "checkpoint.pt (e.g. models/reference/vgg10-w4a4-f64/model.pt)")
    run_dir: str = opt("runs/fmp", "run directory: checkpoint, model.pt, metrics.json, plots; rerunning resumes it")
    device: str = opt("auto", "auto (a GPU if there is one), cpu, cuda or cuda:N")
    threads: int = opt(0, "torch CPU threads (0: torch's default)")
    allow_other_data: bool = opt(False, "resume a run on another data file than the one it trained on")
    sync_bn: bool = opt(False, "under torchrun: BatchNorm statistics of the whole global batch (all ranks, CPU or "
                               "GPU), so N processes at --optim.batch_size B train as one process at B; off: each "
                               "rank normalises by its own shard (DDP's default)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        p, d = self.prune, self.data
        checks = [
            (p.strategy in STRATEGIES, f"prune.strategy must be one of {STRATEGIES}, got {p.strategy!r}"),
            (p.scope in ("global", "layer"), f"prune.scope must be global or layer, got {p.scope!r}"),
            (p.structure in STRUCTURES, f"prune.structure must be one of {STRUCTURES}, got {p.structure!r}"),
            (0 < p.p0 < 1, f"prune.p0 must be in (0, 1), got {p.p0}"),
            (p.divisor > 1, f"prune.divisor must be > 1, got {p.divisor}"),
            (0 <= p.floor <= 1, f"prune.floor must be in [0, 1], got {p.floor}"),
            (d.feedback_split in ("val", "test"), f"data.feedback_split must be val or test, got {d.feedback_split!r}"),
            (d.feedback_split == "test" or d.val_fraction > 0, "data.val_fraction must be > 0 for feedback on val"),
            (self.precision.objective in ("cost", "hardware"),
             f"precision.objective must be cost or hardware, got {self.precision.objective!r}"),
            (self.precision.min_weight_bits >= 2 and self.precision.min_act_bits >= 2,
             "precision.min_weight_bits and precision.min_act_bits must be >= 2"),
            (0 < d.train_subset <= 1, f"data.train_subset must be in (0, 1], got {d.train_subset}"),
            (self.optim.epochs_per_round >= 1 or (p.strategy == "none" and self.init_from),
             "optim.epochs_per_round must be >= 1 (0 only scores an --init_from model: strategy none)"),
            (self.optim.batch_size >= 1, "optim.batch_size must be >= 1"),
            (self.optim.stop_patience >= 0, f"optim.stop_patience must be >= 0, got {self.optim.stop_patience}"),
            (self.optim.stop_patience == 0 or p.strategy == "none",
             "optim.stop_patience ends dense runs only (prune.strategy none); pruning rounds end at the floor"),
            (self.optim.eval_batch_size >= 1, "optim.eval_batch_size must be >= 1"),
            (self.optim.lr > 0, f"optim.lr must be > 0, got {self.optim.lr}"),
            (self.device == "auto" or self.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", self.device) is not None,
             f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}"),
            (not self.device.startswith("cuda") or _cuda_available(),
             f"--device {self.device}: this PyTorch has no CUDA device (a CPU build, or no GPU); use --device cpu"),
            (self.init_from is None or Path(self.init_from).exists(), f"--init_from {self.init_from}: no such file"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        from .speed import check

        check(self.train, self.resolved_device())
        return self

    def resolved_device(self):
        """The torch.device this run trains on (auto: a GPU if there is one)."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if _cuda_available() else "cpu")
        return torch.device(self.device)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# Fields that do not change results: a resumed run may differ in these.
NON_SEMANTIC = {"run_dir", "device", "threads", "data.cache_dir", "data.path", "prune.cost_every_round",
                "allow_other_data", "train", "train.precision", "train.compile", "train.fused", "train.kernels",
                "train.resident", "train.resident_gb"}


def _leaves(obj, prefix=""):
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            yield from _leaves(v, name + ".")
        else:
            yield name, f, obj


def _from_dict(cls, d: dict, where: str):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in d.items():
        if k not in hints:
            raise ValueError(f"{where}: unknown config field {k!r}")
        t = hints[k]
        kwargs[k] = _from_dict(t, v, where) if dataclasses.is_dataclass(t) and isinstance(v, dict) else v
    return cls(**kwargs)


def load_config(path: str | Path) -> TrainConfig:
    """A TrainConfig from a JSON file (missing fields take their defaults)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read config ({e})") from None
    return _from_dict(TrainConfig, d, str(path))


def flag_type(tp):
    """argparse type of a config field's type hint (Optional, comma-separated tuples, true/false booleans)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = flag_type(next(a for a in typing.get_args(tp) if a is not type(None)))
        return lambda s: None if s.lower() == "none" else inner(s)
    if origin is tuple:  # comma-separated, e.g. --model.conv_widths 32,32,24,24,16,16,16
        item = typing.get_args(tp)[0]
        return lambda s: tuple(item(v) for v in s.split(","))
    if tp is bool:
        def boolean(s):
            if s.lower() in ("1", "true", "yes", "on"):
                return True
            if s.lower() in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")
        return boolean
    return tp


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One --section.field flag per config leaf, typed from the dataclasses."""
    p.add_argument("--config", help="JSON config file; flags override it")
    default = TrainConfig()
    for name, f, owner in _leaves(default):
        tp = typing.get_type_hints(type(owner))[f.name]
        text = f.metadata.get("help")
        if not text:
            raise TypeError(f"config field {name} has no help text (train/config.py, train/model.py: opt(...))")
        choices = f.metadata.get("choices")
        value = getattr(owner, f.name)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        metavar = "{" + ",".join(map(str, choices)) + "}" if choices else ("{true,false}" if tp is bool else None)
        p.add_argument(f"--{name}", dest=name, type=flag_type(tp), default=None, choices=choices, metavar=metavar,
                       help=f"{text} (default: {shown})")


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    cfg = load_config(a.config) if a.config else TrainConfig()
    for name, _, _ in list(_leaves(TrainConfig())):
        v = getattr(a, name, None)
        if v is None:
            continue
        section, _, leaf = name.rpartition(".")
        if not section:
            setattr(cfg, leaf, v)
            continue
        owner = getattr(cfg, section)
        if owner.__dataclass_params__.frozen:
            setattr(cfg, section, dataclasses.replace(owner, **{leaf: v}))
        else:
            setattr(owner, leaf, v)
    return cfg.validate()


def semantic_diff(a: dict, b: dict, prefix: str = "", defaults: dict | None = None) -> list[str]:
    """Dotted names of result-changing fields that differ between two config dicts. A field one side lacks (it
    was written before the field existed) counts as its value in `defaults` (the config class's defaults, nested
    like the dicts), which is what the older code did."""
    out = []
    defaults = defaults or {}
    for k in sorted(set(a) | set(b)):
        name = f"{prefix}{k}"
        d = defaults.get(k)
        va, vb = a.get(k, d), b.get(k, d)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += semantic_diff(va, vb, name + ".", d if isinstance(d, dict) else None)
        elif name not in NON_SEMANTIC and va != vb:
            out.append(name)
    return out
