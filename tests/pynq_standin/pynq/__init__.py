"""A register-level stand-in for the board's `pynq` package (which cannot exist off the board).

It implements the part of PYNQ's API that FINN's driver and driver/ use, with the behaviour of
the hardware behind it:

* `allocate(shape, dtype, cacheable=..., target=None)` returns an ndarray with `device_address`
  (placed above 4 GiB, as on a ZynqMP's high DDR), `flush()` and `invalidate()`. A cacheable Zynq
  buffer or an Alveo buffer has separate host and device copies: what the host writes reaches the
  device only through `flush()`, what the device writes reaches the host only through
  `invalidate()`. A non-cacheable Zynq buffer is one memory.
* `Overlay(bitfile)` needs the .hwh beside a .bit (as PYNQ does) and exposes the DMA engines named
  by the bundle's driver_io.json. Zynq: FINN's IODMA AXI-lite registers (0x00 control: ap_start
  bit 0, ap_done bit 1 (clear on read), ap_idle bit 2; 0x10/0x14 buffer address low/high word;
  0x1C frame count); when both engines have been started, the device reads the input buffer at the
  64-bit address, runs `DEVICE.compute(in_bytes, frames) -> out_bytes` and writes the output
  buffer, then raises ap_done. Alveo: kernels with `start(buffer, frames)` returning a wait handle
  (`done`, `wait()`), the output computed once the output kernel has been started after the input.

`Bitstream(path, dtbo, partial)` is PYNQ's bitstream file (it must exist; `download()` logs the
load). `pynq.ps.Clocks` holds the PL clock FINN's driver sets (`Clocks.fclk0_mhz`), each set logged.

Tests set `DEVICE.compute` (the export's golden model on unpacked bytes) and read `DEVICE.log`,
the sequence of register reads/writes, buffer flushes/invalidates and kernel starts.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["Bitstream", "Overlay", "allocate", "DEVICE"]


class _Device:
    def __init__(self):
        self.reset()

    def reset(self):
        self.log = []  # (event, *details)
        self.compute = None  # (input bytes (frames, ...), frames) -> output bytes
        self.buffers = {}  # device address -> buffer
        self.next_address = 0x8_0000_0000  # ZynqMP high DDR: addresses need the 0x14 high word
        self.hang = False  # the accelerator never finishes (for timeout tests)
        self.busy = False  # the output DMA is not idle before a start

    def buffer_at(self, address: int, nbytes: int):
        buf = self.buffers.get(address)
        if buf is None or buf.nbytes < nbytes:
            raise RuntimeError(f"DMA to unmapped address {address:#x} ({nbytes} bytes): bus error")
        return buf


DEVICE = _Device()


class PynqBuffer(np.ndarray):
    """Host view of a DMA buffer; `_device` is the memory the accelerator sees."""

    def __array_finalize__(self, obj):
        for k in ("device_address", "cacheable", "_separate", "_device"):
            setattr(self, k, getattr(obj, k, None))

    def _host_bytes(self) -> np.ndarray:
        return np.asarray(self).reshape(-1).view(np.uint8)

    def flush(self):
        DEVICE.log.append(("flush", self.device_address))
        if self._separate:
            self._device[...] = self._host_bytes()

    def invalidate(self):
        DEVICE.log.append(("invalidate", self.device_address))
        if self._separate:
            self._host_bytes()[...] = self._device

    def device_view(self) -> np.ndarray:
        """The bytes the accelerator reads and writes."""
        return self._device if self._separate else self._host_bytes()

    @property
    def physical_address(self):
        return self.device_address


def allocate(shape, dtype="u4", target=None, cacheable=False, **kwargs):
    shape = tuple(shape) if not np.isscalar(shape) else (shape,)
    host = np.zeros(shape, dtype)
    buf = host.view(PynqBuffer)
    buf.device_address = DEVICE.next_address
    buf.cacheable = bool(cacheable)
    buf._separate = bool(cacheable) or _Overlay_state.alveo
    buf._device = np.zeros(host.nbytes, np.uint8) if buf._separate else None
    DEVICE.buffers[buf.device_address] = buf
    DEVICE.next_address += (host.nbytes + 0xFFF) & ~0xFFF or 0x1000
    DEVICE.log.append(("allocate", shape, np.dtype(dtype).str, bool(cacheable)))
    return buf


class _Overlay_state:
    alveo = False


class _IODMA:
    """FINN's IODMA_hls AXI-lite control (zynq-iodma)."""

    def __init__(self, name, role, accel):
        self.name, self.role, self.accel = name, role, accel
        self.regs = {0x10: 0, 0x14: 0, 0x1C: 0}
        self.started = self.done = False

    def read(self, offset=0):
        DEVICE.log.append(("read", self.name, offset))
        if offset == 0x00:
            idle = not self.started and not (DEVICE.busy and self.role == "out")
            value = (0x2 if self.done else 0) | (0x4 if idle else 0) | (0x1 if self.started else 0)
            self.done = False  # ap_done clears on read
            return value
        return self.regs[offset]

    def write(self, offset, value):
        DEVICE.log.append(("write", self.name, offset, int(value)))
        if offset == 0x00:
            if value & 1:
                self.started = True
                self.accel.kick()
        else:
            if not 0 <= int(value) <= 0xFFFFFFFF:
                raise ValueError(f"{self.name}: register {offset:#x} is 32 bits wide, got {value:#x}")
            self.regs[offset] = int(value)

    @property
    def address(self):
        return self.regs[0x10] | (self.regs[0x14] << 32)


class _Kernel:
    """A Vitis compute unit (Alveo): start(buffer, frames) -> wait handle."""

    class Handle:
        def __init__(self, kernel):
            self.kernel = kernel

        @property
        def done(self):
            return self.kernel.finished

        def wait(self):
            while not self.done:
                if DEVICE.hang:
                    raise RuntimeError("stand-in: waiting forever on a hung kernel")

    def __init__(self, name, role, accel):
        self.name, self.role, self.accel = name, role, accel
        self.buf, self.frames, self.started, self.finished = None, 0, False, False

    def start(self, buf, frames):
        DEVICE.log.append(("start", self.name, int(buf.device_address), int(frames)))
        self.buf, self.frames, self.started, self.finished = buf, int(frames), True, False
        self.accel.kick()
        return _Kernel.Handle(self)


class _Accelerator:
    def __init__(self, io, alveo):
        d = io["io_shape_dict"]
        self.in_packed, self.out_packed = list(d["ishape_packed"][0][1:]), list(d["oshape_packed"][0][1:])
        cls = _Kernel if alveo else _IODMA
        self.idma = cls(d["idma_names"][0], "in", self)
        self.odma = cls(d["odma_names"][0], "out", self)
        self.alveo = alveo

    def kick(self):
        i, o = self.idma, self.odma
        if not (i.started and o.started) or DEVICE.hang:
            return
        if self.alveo:
            if DEVICE.log.index(("start", i.name, int(i.buf.device_address), i.frames)) > \
                    DEVICE.log.index(("start", o.name, int(o.buf.device_address), o.frames)):
                return  # output started first: the input stream never starts (FINN starts the input first)
            n, src, dst = i.frames, i.buf, o.buf
        else:
            n = i.regs[0x1C]
            if o.regs[0x1C] != n:
                raise RuntimeError(f"frame counts differ: {i.name} {n}, {o.name} {o.regs[0x1C]}")
            src = DEVICE.buffer_at(i.address, n * int(np.prod(self.in_packed)))
            dst = DEVICE.buffer_at(o.address, n * int(np.prod(self.out_packed)))
        x = src.device_view()[: n * int(np.prod(self.in_packed))].reshape([n] + self.in_packed)
        y = np.asarray(DEVICE.compute(x.copy(), n), np.uint8).reshape(-1)
        dst.device_view()[: y.size] = y
        for dma in (i, o):
            dma.started = False
            if self.alveo:
                dma.finished = True
            else:
                dma.done = True


class Overlay:
    def __init__(self, bitfile_name, download=True, device=None):
        bit = Path(bitfile_name)
        if not bit.is_file():
            raise IOError(f"{bit} does not exist")
        alveo = bit.suffix == ".xclbin"
        if not alveo and not bit.with_suffix(".hwh").is_file():
            raise ValueError(f"Cannot find HWH or TCL file for {bit}.")
        _Overlay_state.alveo = alveo
        io = json.loads((bit.parent.parent / "driver_io.json").read_text())  # the bundle's, as the hwh would say
        self._accel = _Accelerator(io, alveo)
        self.ip_dict = {self._accel.idma.name: {}, self._accel.odma.name: {}}
        self.device = device
        self.bitfile_name = str(bit)
        DEVICE.log.append(("overlay", bit.name))

    def __getattr__(self, key):
        accel = self.__dict__.get("_accel")
        if accel is not None:
            for dma in (accel.idma, accel.odma):
                if dma.name == key:
                    return dma
        raise AttributeError(f"Could not find IP or hierarchy {key} in overlay")


class Bitstream:
    """A bitstream file to load into the PL (PYNQ: pynq.Bitstream); partial ones for reconfigurable regions."""

    def __init__(self, bitfile_name, dtbo=None, partial=False, device=None):
        if not Path(bitfile_name).is_file():
            raise IOError(f"Bitstream file {bitfile_name} does not exist.")
        self.bitfile_name, self.dtbo, self.partial = str(bitfile_name), dtbo, bool(partial)

    def download(self, parser=None):
        DEVICE.log.append(("download", Path(self.bitfile_name).name, self.partial))
