"""`pynq.ps`: the processing system's clocks, as FINN's driver sets them (the PL clock fclk0)."""
from __future__ import annotations

from . import DEVICE


class _ClocksType(type):
    """Setting `Clocks.fclk0_mhz` reprograms the PL clock on a board: here it is kept and logged."""

    _fclk0_mhz = 100.0

    @property
    def fclk0_mhz(cls) -> float:
        return cls._fclk0_mhz

    @fclk0_mhz.setter
    def fclk0_mhz(cls, value) -> None:
        DEVICE.log.append(("fclk0_mhz", float(value)))
        cls._fclk0_mhz = float(value)


class Clocks(metaclass=_ClocksType):
    pass
