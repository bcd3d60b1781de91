"""PYNQ-compatible runtime of the accelerator, with the API of FINN's generated FINNExampleOverlay.

`AMCOverlay(bundle_dir, batch_size, backend=...)`: quantise float RadioML frames into the
accelerator's input integers, fold and bit-pack them as FINN streams them, move them
through the DMA engines, unpack and unfold the outputs. Everything about the layout comes
from `driver_io.json` (written by `python -m build`): FINN's io_shape_dict keys (idt, odt,
ishape/oshape normal/folded/packed, DMA names), the input quantiser and the class names.

Backends move the packed bytes: `PynqBackend` (pynq Overlay + zynq-iodma registers, pynq
imported only when used) or `EmulatedBackend` (driver/emulate.py: no board, the golden model
computes the output), so everything but the bitfile runs anywhere numpy does.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from radioml.artifacts import ArtifactError, DriverIO
from radioml.finn_settings import read_bundle_io

from .packing import pack, unpack


class DriverError(ValueError):
    """A bundle, bitfile or request that the driver cannot use."""


def load_io(bundle_dir) -> DriverIO:
    """The bundle's driver_io.json, verified (radioml.artifacts.DriverIO: format, digest, every field)."""
    try:
        return read_bundle_io(bundle_dir)
    except ArtifactError as e:
        raise DriverError(str(e)) from None


class PynqBackend:
    """The real board: loads the bitfile (Zynq) or xclbin (Alveo), allocates DMA buffers and drives
    FINN's DMA engines as FINN's own driver (finn-plus-driver's FINNDMAOverlay) does.

    Zynq (platform zynq-iodma): cacheable buffers, flushed before and invalidated after a run; the
    output DMA must be idle (ap_idle, bit 2 of register 0x00) before a start; each IODMA gets the
    buffer address (low word 0x10, high word 0x14), the frame count (0x1C) and ap_start (0x00 = 1),
    the output DMA first; then ap_done (bit 1 of 0x00) of the output DMA is polled, with a timeout.
    Alveo: non-cacheable buffers synced with flush/invalidate, the input kernel started before the
    output kernel, whose completion is awaited (with the same timeout).
    """

    def __init__(self, bundle_dir, io: dict, timeout_s: float = 10.0, timeout_s_per_frame: float = 1e-3):
        bundle_dir = Path(bundle_dir)
        name = io.bitfile
        if not name:
            raise DriverError(f"{bundle_dir / 'driver_io.json'}: names no bitfile (an estimate-only build: "
                              f"build with --bitfile in docker/, or validate with --emulate)")
        bit = bundle_dir / name
        if not bit.is_file():
            others = sorted(p.name for ext in ("*.bit", "*.xclbin") for p in bundle_dir.rglob(ext))
            raise DriverError(f"{bit}: bitfile missing (driver_io.json names {name!r}"
                              + (f"; the bundle has {', '.join(others)}" if others else "") + ")")
        self.alveo = io.platform == "alveo"
        if not self.alveo and not bit.with_suffix(".hwh").is_file():
            raise DriverError(f"{bit.with_suffix('.hwh')}: hardware handoff file missing beside the bitfile")
        from pynq import Overlay, allocate  # only on the board

        self._allocate = allocate
        self.timeout_s, self.timeout_s_per_frame = timeout_s, timeout_s_per_frame
        self.ol = Overlay(str(bit))
        d = io.io_shape_dict
        self.idma_name = d.get("idma_names", d.get("input_dma_name"))[0]
        self.odma_name = d.get("odma_names", d.get("output_dma_name"))[0]
        for dma in (self.idma_name, self.odma_name):
            if not hasattr(self.ol, dma):
                raise DriverError(f"{bit}: the overlay has no DMA engine {dma!r} (driver_io.json and bitfile "
                                  f"from different builds?)")
        self.idma = getattr(self.ol, self.idma_name)
        self.odma = getattr(self.ol, self.odma_name)

    def allocate(self, shape):
        # FINN's driver: cacheable buffers on Zynq (explicit flush/invalidate), device buffers on Alveo
        return self._allocate(shape=tuple(shape), dtype=np.uint8, cacheable=not self.alveo)

    def _timeout(self, batch: int) -> float:
        return self.timeout_s + self.timeout_s_per_frame * batch

    def run(self, ibuf, obuf, batch: int) -> None:
        ibuf.flush()
        if self.alveo:
            self._run_alveo(ibuf, obuf, batch)
        else:
            self._run_zynq(ibuf, obuf, batch)
        obuf.invalidate()

    def _run_alveo(self, ibuf, obuf, batch):
        self.idma.start(ibuf, batch)
        handle = self.odma.start(obuf, batch)
        if not hasattr(handle, "done"):  # a PYNQ whose wait handle cannot be polled: no timeout possible
            handle.wait()
            return
        deadline = time.monotonic() + self._timeout(batch)
        while not handle.done:
            if time.monotonic() > deadline:
                raise DriverError(f"{self.odma_name} did not finish a batch of {batch} frames within "
                                  f"{self._timeout(batch):.1f} s: accelerator stalled")
            time.sleep(1e-4)
        handle.wait()

    def _run_zynq(self, ibuf, obuf, batch):
        if self.odma.read(0x00) & 0x4 == 0:
            raise DriverError(f"{self.odma_name} is not idle (ap_idle clear): a previous run did not finish; "
                              f"reload the overlay")
        for dma, buf in ((self.odma, obuf), (self.idma, ibuf)):
            addr = int(buf.device_address)
            dma.write(0x10, addr & 0xFFFFFFFF)
            dma.write(0x14, (addr >> 32) & 0xFFFFFFFF)
            dma.write(0x1C, batch)
            dma.write(0x00, 1)
        deadline = time.monotonic() + self._timeout(batch)
        while self.odma.read(0x00) & 0x2 == 0:  # ap_done
            if time.monotonic() > deadline:
                raise DriverError(f"{self.odma_name} raised no ap_done for a batch of {batch} frames within "
                                  f"{self._timeout(batch):.1f} s: accelerator stalled (wrong bitfile or clock?)")


class AMCOverlay:
    """FINNExampleOverlay-style driver: execute(), batch_size, throughput_test()."""

    def __init__(self, bundle_dir, batch_size: int = 1, backend=None, max_batch: int | None = None):
        self.bundle_dir = Path(bundle_dir)
        self.io = load_io(self.bundle_dir)
        self.io_shape_dict = self.io.io_shape_dict
        self.input_quant = self.io.input_quant
        self.classes = list(self.io.classes)
        self.backend = backend if backend is not None else PynqBackend(self.bundle_dir, self.io)
        self.max_batch = max_batch
        self._batch_size = 0
        self.batch_size = batch_size

    # -- FINN's io_shape_dict accessors, with the batch dimension set --------------------------
    def _shape(self, key, batch=None):
        s = list(self.io_shape_dict[key][0])
        s[0] = self._batch_size if batch is None else batch
        return tuple(s)

    @property
    def idt(self):
        return self.io_shape_dict["idt"][0]

    @property
    def odt(self):
        return self.io_shape_dict["odt"][0]

    ishape_normal = property(lambda self: self._shape("ishape_normal"))
    ishape_folded = property(lambda self: self._shape("ishape_folded"))
    ishape_packed = property(lambda self: self._shape("ishape_packed"))
    oshape_normal = property(lambda self: self._shape("oshape_normal"))
    oshape_folded = property(lambda self: self._shape("oshape_folded"))
    oshape_packed = property(lambda self: self._shape("oshape_packed"))

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, n: int):
        if n < 1:
            raise DriverError(f"batch size must be >= 1, got {n}")
        if self.max_batch is not None and n > self.max_batch:
            raise DriverError(f"batch size {n} is larger than the {self.max_batch} frames the buffers hold")
        if n != self._batch_size:
            self._batch_size = n
            self.ibuf = self.backend.allocate(self.ishape_packed)
            self.obuf = self.backend.allocate(self.oshape_packed)

    # -- host-side data movement -----------------------------------------------------------------
    def quantize(self, frames: np.ndarray) -> np.ndarray:
        """Float frames (N, 2, 1024) or (N, 1024, 2) -> integers in the accelerator's input layout."""
        x = np.asarray(frames, np.float32)
        if x.ndim != 3 or 2 not in x.shape[1:]:
            raise DriverError(f"expected frames of shape (N, 2, 1024) or (N, 1024, 2), got {x.shape}")
        if x.shape[1] == 2 and x.shape[2] != 2:
            x = x.transpose(0, 2, 1)
        q = self.input_quant.quantize(x)  # (N, 1024, 2)
        return q.reshape((len(q),) + tuple(self.io_shape_dict["ishape_normal"][0][1:]))

    def fold_input(self, x):
        return x.reshape(self._shape("ishape_folded", len(x)))

    def pack_input(self, x):
        return pack(x, self.idt)

    def unpack_output(self, p):
        return unpack(p, self.odt, self._shape("oshape_folded", len(p)))

    def unfold_output(self, y):
        return y.reshape(self._shape("oshape_normal", len(y)))

    def execute_on_buffers(self, batch: int | None = None):
        self.backend.run(self.ibuf, self.obuf, batch or self._batch_size)

    def execute(self, input_normal: np.ndarray) -> np.ndarray:
        """Integer input in ishape_normal (batch = self.batch_size) -> output in oshape_normal."""
        if input_normal.shape != self.ishape_normal:
            raise DriverError(f"input shape {input_normal.shape} != {self.ishape_normal}")
        self.ibuf[:] = self.pack_input(self.fold_input(input_normal))
        self.execute_on_buffers()
        return self.unfold_output(self.unpack_output(np.asarray(self.obuf)))

    def full_batch(self, q: np.ndarray) -> np.ndarray:
        """A last, short batch padded with zero frames to batch_size (the buffers' fixed size)."""
        if len(q) >= self._batch_size:
            return q
        return np.concatenate([q, np.zeros((self._batch_size - len(q),) + q.shape[1:], q.dtype)])

    @property
    def outputs_class_index(self) -> bool:
        """The accelerator ends in FINN's LabelSelect (build --output class): one class index a frame."""
        return self.io.output == "class"

    def top1(self, out: np.ndarray) -> np.ndarray:
        """Top-1 class per frame of unfolded outputs (N, ...): the argmax of the scores, or the index itself."""
        out = np.asarray(out).reshape(len(out), -1)
        return out[:, 0].astype(np.int64) if self.outputs_class_index else out.argmax(1)

    def classify(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float frames -> (outputs, top-1 indices), in batches of batch_size; the outputs are the class scores
        (N, 24), or for a class-index accelerator the indices (N, 1)."""
        q = self.quantize(frames)
        outs = []
        for a in range(0, len(q), self._batch_size):
            n = min(self._batch_size, len(q) - a)
            outs.append(self.execute(self.full_batch(q[a:a + self._batch_size]))[:n].reshape(n, -1))
        s = np.concatenate(outs)
        return s, self.top1(s)

    def throughput_test(self, repeats: int = 5) -> dict:
        """Frames/s of the accelerator alone (DMA in and out) and with host packing, as FINN reports."""
        x = np.zeros(self.ishape_normal, np.float32)
        t = time.perf_counter()
        for _ in range(repeats):
            self.execute_on_buffers()
        dev = (time.perf_counter() - t) / repeats
        t = time.perf_counter()
        for _ in range(repeats):
            self.execute(x)
        full = (time.perf_counter() - t) / repeats
        return {"batch_size": self._batch_size, "runtime_s": dev, "throughput_fps": self._batch_size / dev,
                "runtime_with_packing_s": full, "throughput_with_packing_fps": self._batch_size / full}
