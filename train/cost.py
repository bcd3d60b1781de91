"""The ITU-ML5G-PS-007 normalised inference cost, computed by qonnx as the challenge did.

cost = 0.5 * bops / 807,699,904 + 0.5 * weight_bits / 1,244,936, where bops and
weight bits come from qonnx's `inference_cost(preprocess=True,
discount_sparsity=True)` on the exported QONNX model: MACs with a constant zero
weight and zero weights themselves are not counted, whether pruning or
quantisation made them zero.
"""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

# The challenge's normalisation constants: sparsity-discounted figures of its trained 8-bit baseline.
BASELINE_BOPS = 807_699_904
BASELINE_W_BITS = 1_244_936


@dataclass(frozen=True)
class Cost:
    """Inference cost of one model, in the challenge's terms."""

    bops: float
    weight_bits: float
    macs: float
    weights: float  # weight elements counted (non-zero ones when sparsity is discounted)
    discount_sparsity: bool

    @property
    def cost(self) -> float:
        return 0.5 * self.bops / BASELINE_BOPS + 0.5 * self.weight_bits / BASELINE_W_BITS

    @property
    def bops_pct(self) -> float:
        return 100.0 * self.bops / BASELINE_BOPS

    @property
    def weight_bits_pct(self) -> float:
        return 100.0 * self.weight_bits / BASELINE_W_BITS

    def to_dict(self) -> dict:
        return {**asdict(self), "cost": self.cost, "bops_pct": self.bops_pct,
                "weight_bits_pct": self.weight_bits_pct}


def onnx_cost(path: str | Path, discount_sparsity: bool = True) -> Cost:
    """Cost of an exported QONNX model file, through qonnx's inference_cost."""
    from qonnx.util.inference_cost import inference_cost

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = inference_cost(str(path), preprocess=True, discount_sparsity=discount_sparsity)["total_cost"]
    if total.get("unsupported") not in (None, "set()"):
        raise RuntimeError(f"{path}: qonnx inference_cost met unsupported ops: {total['unsupported']}")
    return Cost(float(total["total_bops"]), float(total["total_mem_w_bits"]),
                float(total["total_macs"]), float(total["total_mem_w_elems"]), discount_sparsity)


def model_cost(model: nn.Module, discount_sparsity: bool = True) -> Cost:
    """Export `model` to a temporary QONNX file and score it."""
    from .onnx_export import export_qonnx_file

    with tempfile.TemporaryDirectory(prefix="amc-cost-") as d:
        return onnx_cost(export_qonnx_file(model, Path(d) / "model.onnx"), discount_sparsity)
