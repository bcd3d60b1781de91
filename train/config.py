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

from .masks import STRUCTURES
from .model import ModelConfig

STRATEGIES = ("none", "imp", "imp-converge", "fmp", "precision")


@dataclass
class DataConfig:
    path: str = "data/synthetic.hdf5"  # RadioML 2018.01A-layout HDF5 (real or synthetic)
    val_fraction: float = 0.05  # carved from each (class, SNR) block's training frames
    min_train_snr: typing.Optional[float] = None  # drop training/validation frames below this SNR
    feedback_split: str = "val"  # "val", or "test" to reproduce the FMP authors' scripts
    train_subset: float = 1.0  # use this fraction of the training frames (every block kept)
    resample_subset: bool = False  # draw a fresh train_subset every epoch (short fine-tunes overfit less)
    cache_dir: typing.Optional[str] = None  # one-time memmap cache for chunked/compressed files
    buffer_frames: int = 65536  # shuffle buffer, bounds reader memory


@dataclass
class OptimConfig:
    lr: float = 1e-3  # Adam
    batch_size: int = 1024
    epochs_per_round: int = 50  # training epochs allowed per pruning round
    plateau_factor: float = 0.1  # ReduceLROnPlateau on validation loss
    plateau_patience: int = 15
    eval_batch_size: int = 1024


@dataclass
class PruneConfig:
    strategy: str = "fmp"  # none | imp | imp-converge | fmp | precision (bit widths, not weights)
    floor: float = 0.56  # accuracy criterion
    p0: float = 0.2  # initial pruning rate (IMP keeps it)
    divisor: float = 2.0  # FMP: p /= divisor after a failed round
    p_min: float = 0.05  # FMP: stop once p < p_min
    scope: str = "global"  # unstructured: global (the authors': one threshold over all layers) | layer
    # unstructured | filters (whole channels: FINN-visible) | hybrid (filters, then unstructured)
    structure: str = "unstructured"
    max_rounds: int = 100  # upper bound on pruning steps
    cost_every_round: bool = True  # qonnx cost of each saved model (about 1 s each)


@dataclass
class PrecisionConfig:
    """The bit-width search (prune.strategy precision, train/precision.py); floor and epochs as pruning's."""

    objective: str = "cost"  # cost (the challenge's) | hardware (what FINN's MVAU LUTs scale with)
    min_weight_bits: int = 2
    min_act_bits: int = 2


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(4, 4, 4))
    optim: OptimConfig = field(default_factory=OptimConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    seed: int = 0
    init_from: typing.Optional[str] = None  # start from the model of another run dir (e.g. a dense pretrain)
    run_dir: str = "runs/fmp"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads; 0 = torch's default
    allow_other_data: bool = False  # resume a run on another data file than the one it trained on

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
        return self


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# Fields that do not change results: a resumed run may differ in these.
NON_SEMANTIC = {"run_dir", "device", "threads", "data.cache_dir", "data.path", "prune.cost_every_round",
                "allow_other_data"}


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


def _parser_type(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = _parser_type(next(a for a in typing.get_args(tp) if a is not type(None)))
        return lambda s: None if s.lower() == "none" else inner(s)
    if origin is tuple:  # comma-separated, e.g. --model.conv_widths 32,32,24,24,16,16,16
        item = typing.get_args(tp)[0]
        return lambda s: tuple(item(v) for v in s.split(","))
    if tp is bool:
        return lambda s: s.lower() in ("1", "true", "yes", "on")
    return tp


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One --section.field flag per config leaf, typed from the dataclasses."""
    p.add_argument("--config", help="JSON config file; flags override it")
    default = TrainConfig()
    for name, f, owner in _leaves(default):
        tp = typing.get_type_hints(type(owner))[f.name]
        p.add_argument(f"--{name}", dest=name, type=_parser_type(tp), default=None,
                       help=f"(default: {getattr(owner, f.name)})")


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


def semantic_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of result-changing fields that differ between two config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        name = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += semantic_diff(va, vb, name + ".")
        elif name not in NON_SEMANTIC and va != vb:
            out.append(name)
    return out
