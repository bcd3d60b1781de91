"""Typed configuration of the FINN build stage."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class BuildConfig:
    export_dir: str = "exports/model"  # output of `python -m export.to_finn`
    out: str = "builds/model"
    board: str = "ZCU104"
    clock_ns: Optional[float] = None  # default: the board's
    target_fps: int = 100_000
    max_fps: bool = False  # instead of target_fps: the highest frames/s whose search folding fits util_cap
    util_cap: float = 0.8  # max_fps: fraction of the part's LUT, BRAM and DSP the estimated layers may use
    folding: str = "search"  # search (the fit's best folding meeting target_fps) | finn (FINN's) | PATH.json
    # the search's objective: lut (fewest LUT) | max-utilisation (smallest largest share of the part) | auto
    # (max-utilisation with --folding search; other foldings choose nothing)
    fit: str = "auto"
    # finn (FINN's specialisation) | search (each MVAU/thresholding HLS or RTL, chosen by the fit) | auto (search under
    # the max-utilisation search without --specialize-layers, else finn)
    impl: str = "auto"
    specialize_layers: Optional[str] = None  # FINN's specialize-layers JSON (node name -> preferred_impl_style)
    standalone_thresholds: bool = False  # thresholds as their own layers: MVAUs become RTL (DSPs, no HLS stream cap)
    output: str = "logits"  # logits (24 scores a frame) | class (FINN's LabelSelect: the top-1 class index a frame)
    cppsim: bool = False  # also verify the folded graph in FINN's C++ simulation (needs finn-hlslib, Vitis HLS)
    finn_verify: bool = True  # --bitfile: FINN's folded cppsim and stitched-IP rtlsim verification steps
    verify_frames: Optional[int] = None  # check frames the folded graph is verified on (default: all the export's)
    codegen: bool = False  # also run step_hw_codegen (HLS/RTL sources; synthesis needs Vivado)
    bitfile: bool = False  # full flow to a bitfile and driver bundle: Vivado/Vitis only (Docker)
    force: bool = False
    start_step: Optional[str] = None  # resume the kept work directory of a failed or stopped build from this step
    stop_step: Optional[str] = None  # stop after this step, keeping the work directory for --start-step

    def __post_init__(self):
        if self.fit == "auto":
            self.fit = "max-utilisation" if self.folding == "search" else "lut"
        if self.impl == "auto":
            self.impl = "search" if self.fit == "max-utilisation" and not self.specialize_layers else "finn"
        if self.impl == "search":  # an RTL MVAU cannot hold its thresholds: the search needs them standalone
            self.standalone_thresholds = True


def fraction(text: str) -> float:
    """argparse type of a utilisation cap: a number in (0, 1]."""
    import argparse

    v = float(text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return v
