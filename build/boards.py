"""Target boards: FPGA part, FINN shell flow and the part's resources (for the fit check).

Resources are the device totals from AMD/Xilinx product tables (LUT, FF, BRAM as
18 Kb blocks, URAM blocks, DSP slices).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Board:
    name: str  # FINN's board name
    part: str
    shell: str  # vivado_zynq | vitis_alveo
    clock_ns: float  # default target clock
    lut: int
    ff: int
    bram_18k: int
    uram: int
    dsp: int
    vitis_platform: str | None = None

    def resources(self) -> dict:
        return {"LUT": self.lut, "FF": self.ff, "BRAM_18K": self.bram_18k, "URAM": self.uram, "DSP": self.dsp}

    def to_dict(self) -> dict:
        return asdict(self)


BOARDS: dict[str, Board] = {
    "ZCU104": Board("ZCU104", "xczu7ev-ffvc1156-2-e", "vivado_zynq", 4.0, 230_400, 460_800, 624, 96, 1_728),
    "RFSoC2x2": Board("RFSoC2x2", "xczu28dr-ffvg1517-2-e", "vivado_zynq", 5.0, 425_280, 850_560, 2_160, 80, 4_272),
    "Pynq-Z2": Board("Pynq-Z2", "xc7z020clg400-1", "vivado_zynq", 10.0, 53_200, 106_400, 280, 0, 220),
    "U250": Board("U250", "xcu250-figd2104-2L-e", "vitis_alveo", 4.0, 1_728_000, 3_456_000, 5_376, 1_280, 12_288,
                  vitis_platform="xilinx_u250_gen3x16_xdma_4_1_202210_1"),
}


def board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known: {', '.join(BOARDS)}") from None
