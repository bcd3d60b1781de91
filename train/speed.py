"""Training speed levers, in one place: the fused QuantReLU forward, bf16 autocast, torch.compile, resident data.

Only the training step goes through here. Evaluation, the feedback accuracy, checkpoints
and the export run the model as built, in float32, so the model scored is the model
deployed; bf16 autocast may change only the training trajectory. Measured on a 2-core
AVX2 CPU (benchmarks/train_throughput.py): the fused forward is kept (bit-identical
forward values); torch.compile did not pay there, so it is on for CUDA only by default.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from radioml.classes import FRAME_LENGTH

from .fakequant import block_forward, kernels_available, kernels_unavailable, mark
from .fields import opt

PRECISIONS = ("fp32", "bf16", "auto")
SWITCHES = ("auto", "true", "false")


@dataclass
class SpeedConfig:
    precision: str = opt("auto", "training-step arithmetic: fp32, bf16 (autocast; fails where the device lacks "
                                 "bf16), or auto (bf16 where supported, else fp32); evaluation and export stay fp32",
                         PRECISIONS)
    compile: str = opt("auto", "torch.compile the training step: true, false, or auto (on CUDA only: it did not "
                               "pay on a 2-core AVX2 CPU)", SWITCHES)
    fused: bool = opt(True, "QuantReLU in fewer passes and max-pool before it in training (same forward values)")
    kernels: str = opt("auto", "with fused, on a CPU: each float32 QuantReLU by two torch-inductor kernels (same "
                               "values and gradients; the QuantReLU 2x, the 64-filter step 1.13x faster on a 2-core "
                               "AVX2 CPU; generated once a process, seconds to a minute): true, false, or auto (on a "
                               "CPU where inductor compiles, for runs long enough to pay)", SWITCHES)
    resident: bool = opt(True, "hold the training split in memory as one tensor when it fits (no per-batch "
                               "file reads)")
    resident_gb: float = opt(4.0, "largest training split held resident, in GB of float32 frames")


def bf16_supported(device: torch.device) -> bool:
    """Native bf16 matrix arithmetic: a CUDA GPU of compute capability 8 or newer, or a CPU with AVX-512 BF16/AMX."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_flags() -> str:
    """The CPU's model name and the flags that decide training speed."""
    name, flags = "unknown CPU", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and name == "unknown CPU":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    keep = sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile",
                                             "avx512_vnni", "avx_vnni"))
    return f"{name} [{' '.join(keep) or 'flags unknown'}; torch ISA {torch.backends.cpu.get_cpu_capability()}]"


def check(speed: SpeedConfig, device: torch.device) -> None:
    """Refuse, before any work, a precision the device cannot run."""
    if speed.precision not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {PRECISIONS}, got {speed.precision!r}")
    for name in ("compile", "kernels"):
        if getattr(speed, name) not in SWITCHES:
            raise ValueError(f"train.{name} must be one of {SWITCHES}, got {getattr(speed, name)!r}")
    if speed.kernels == "true":
        if not speed.fused:
            raise ValueError("--train.kernels true needs --train.fused true (the kernels are the fused QuantReLU's)")
        if device.type != "cpu" or compiles(speed, device):
            raise ValueError(f"--train.kernels true: the training step on {device.type} is compiled whole "
                             f"(--train.compile {speed.compile}), which fuses the same operations; use kernels "
                             "auto or false, or --train.compile false on a CPU")
        why = kernels_unavailable()
        if why is not None:
            raise ValueError(f"--train.kernels true: torch inductor cannot generate CPU kernels here ({why}; it "
                             "calls $CXX, else g++); use false or auto")
    if speed.resident_gb < 0:
        raise ValueError(f"train.resident_gb must be >= 0, got {speed.resident_gb}")
    if speed.precision == "bf16" and not bf16_supported(device):
        what = "this GPU" if device.type == "cuda" else f"this CPU ({cpu_flags()})"
        raise ValueError(f"--train.precision bf16: {what} has no native bf16 arithmetic; use fp32 or auto")


def autocast_dtype(speed: SpeedConfig, device: torch.device) -> torch.dtype | None:
    """bf16 when asked for, or under auto where the device has it; None means plain float32."""
    check(speed, device)
    if speed.precision == "fp32" or (speed.precision == "auto" and not bf16_supported(device)):
        return None
    return torch.bfloat16


def compiles(speed: SpeedConfig, device: torch.device) -> bool:
    """Whether the training step is compiled whole (asked for, or under auto on CUDA)."""
    return speed.compile == "true" or (speed.compile == "auto" and device.type == "cuda")


KERNEL_MIN_STEPS = 200  # generating the kernels costs a few seconds a process on an idle CPU: 200 steps' saving


def uses_kernels(speed: SpeedConfig, device: torch.device) -> bool:
    """The generated QuantReLU kernels: asked for, or under auto on a CPU that can generate them (a step compiled
    whole fuses the same operations itself)."""
    if not speed.fused or compiles(speed, device):
        return False
    return speed.kernels == "true" or (speed.kernels == "auto" and device.type == "cpu" and kernels_available())


def for_run(speed: SpeedConfig, planned_steps: int) -> SpeedConfig:
    """speed for a process that plans `planned_steps` training steps: auto kernels off where that is too few to
    pay for generating them once (the tiny runs of tests and smoke checks)."""
    if speed.kernels == "auto" and planned_steps < KERNEL_MIN_STEPS:
        return dataclasses.replace(speed, kernels="false")
    return speed


class _Forward(nn.Module):
    """The model's training forward: its layers run by block_forward (what torch.compile traces)."""

    def __init__(self, model: nn.Sequential):
        super().__init__()
        self.model = model

    def forward(self, x):
        return block_forward(list(self.model), x)


def training_forward(model: nn.Module, speed: SpeedConfig, device: torch.device = torch.device("cpu")) -> nn.Module:
    """The module whose forward a training step runs: the fused one where the levers allow, else the model.
    DistributedDataParallel wraps this one, so N ranks compute what one process computes."""
    if speed.fused and isinstance(model, nn.Sequential):
        return _Forward(mark(model, kernels=uses_kernels(speed, device)))
    return model


class Step:
    """A model's training forward with the configured levers; `__call__(x)` gives the logits."""

    def __init__(self, model: nn.Module, speed: SpeedConfig, device: torch.device, wrapped: nn.Module | None = None):
        self.model, self.device = model, device
        self.dtype = autocast_dtype(speed, device)
        self.compiled = compiles(speed, device)
        # DistributedDataParallel (wrapping training_forward's module): its forward syncs the gradients
        fwd = wrapped if wrapped is not None else training_forward(model, speed, device)
        self.forward = torch.compile(fwd) if self.compiled else fwd

    @property
    def label(self) -> str:
        inner = self._inner
        kernels = isinstance(inner, _Forward) and any(getattr(m, "_kernels", False) for m in inner.model)
        return (f"{'bf16 autocast' if self.dtype else 'fp32'}{', compiled' if self.compiled else ''}"
                f"{', fused' if isinstance(inner, _Forward) else ''}{', kernels' if kernels else ''}")

    @property
    def _inner(self) -> nn.Module:
        fwd = getattr(self.forward, "_orig_mod", self.forward)  # under torch.compile
        return getattr(fwd, "module", fwd)  # under DistributedDataParallel

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def __call__(self, x):
        with self.autocast():
            return self.forward(x)


class Resident:
    """The frames of a training split as one float32 tensor on the device, gathered by frame index."""

    def __init__(self, ds, indices: np.ndarray, device: torch.device, batch: int = 8192):
        self.indices = np.sort(np.asarray(indices, dtype=np.int64))
        frames = torch.empty((len(self.indices), 2, FRAME_LENGTH), dtype=torch.float32)
        for a in range(0, len(self.indices), batch):
            chunk = ds.frames.read(self.indices[a:a + batch])
            frames[a:a + len(chunk)] = torch.from_numpy(chunk).transpose(1, 2)
        self.x = frames.to(device)
        self.y = torch.from_numpy(ds.labels[self.indices].astype(np.int64)).to(device)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.from_numpy(np.searchsorted(self.indices, idx)).to(self.x.device)
        return self.x.index_select(0, pos), self.y.index_select(0, pos)


def fits(n_frames: int, frame_length: int, speed: SpeedConfig, device: torch.device) -> bool:
    """Whether `n_frames` float32 frames stay within resident_gb (and, on a GPU, half its free memory)."""
    need = n_frames * 2 * frame_length * 4
    if not speed.resident or need > speed.resident_gb * 1e9:
        return False
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return need < free // 2
    return True
