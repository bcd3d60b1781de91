"""Input quantisation of float I/Q frames to the accelerator's integers (torch-free).

The exported FINN model takes integers: the model's input quantiser (a fixed-range
QuantHardTanh) is split off at export and its parameters written to JSON, so the
host (PYNQ driver, golden checks) quantises frames itself, bit-exactly as Brevitas:
q = clip(round_half_even(x / scale) + zero_point, lo, hi).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class InputQuant:
    scale: float
    zero_point: float
    bits: int
    signed: bool
    narrow: bool
    rounding: str = "ROUND"  # QONNX rounding_mode; ROUND is half-to-even, as torch.round

    @property
    def lo(self) -> int:
        if self.signed:
            return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)
        return 0

    @property
    def hi(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2 ** self.bits - 1 - (1 if self.narrow else 0)

    @property
    def finn_dtype(self) -> str:
        return f"{'INT' if self.signed else 'UINT'}{self.bits}"

    def to_dict(self) -> dict:
        return asdict(self)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float frames -> integers (as float32 values, FINN's container type)."""
        if self.rounding != "ROUND":
            raise ValueError(f"unsupported rounding mode {self.rounding!r}")
        x = np.asarray(x, np.float32)
        q = np.round(x / np.float32(self.scale)) + np.float32(self.zero_point)
        return np.clip(q, self.lo, self.hi).astype(np.float32)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((np.asarray(q, np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)).astype(np.float32)
