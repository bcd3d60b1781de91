"""Typed configuration of the export stage."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ExportConfig:
    run: Optional[str] = None  # run dir, model.pt or checkpoint.pt
    fresh_bits: Optional[int] = None  # export a freshly initialised model of these bits instead
    qonnx: Optional[str] = None  # a QONNX file of any 1D CNN (Brevitas export_qonnx) to export instead
    out: str = "exports/model"
    data: str = "data/synthetic.hdf5"  # frames for the checks come from its test split
    check_frames: int = 32
    tol: float = 1e-4  # max |logit diff| allowed, relative to max(1, max |logit|)
    force: bool = False  # replace an existing output directory
    work_dir: str = ""  # set by the flow: the temporary directory being filled
