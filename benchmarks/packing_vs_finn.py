"""Host-side packing + unpacking for one batch of 1024 frames: driver.packing vs FINN's data_packing.

Packs the input (INT4 by default, the folded shape the build wrote) and unpacks the
output (FLOAT32 logits) with both implementations, checks they are bit-identical, and
prints the times and the ratio.

    python -m benchmarks.packing_vs_finn [--bundle BUILD_DIR] [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _best(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", help="build directory with driver_io.json (default: the VGG10's usual shapes)")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    from export.finn_env import prepare

    prepare()
    from finn.util.data_packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy
    from qonnx.core.datatype import DataType

    from driver.packing import pack, unpack

    if a.bundle:
        from driver.overlay import load_io

        d = load_io(a.bundle).io_shape_dict
        idt, odt, ifold, ofold = d["idt"][0], d["odt"][0], d["ishape_folded"][0], d["oshape_folded"][0]
    else:
        idt, odt, ifold, ofold = "INT4", "FLOAT32", [1, 1024, 1, 1, 2], [1, 24, 1]
    ifold, ofold = [a.batch] + list(ifold[1:]), [a.batch] + list(ofold[1:])
    rng = np.random.default_rng(0)
    dt = DataType[idt]
    x = rng.integers(int(dt.min()), int(dt.max()) + 1, ifold).astype(np.float32)
    y = rng.standard_normal(ofold).astype(np.float32)
    yp = pack(y, odt)

    def finn():
        pi = np.ascontiguousarray(finnpy_to_packed_bytearray(x, dt, reverse_inner=True, reverse_endian=True))
        uo = packed_bytearray_to_finnpy(yp, DataType[odt], ofold, reverse_inner=True, reverse_endian=True)
        return pi, uo

    def ours():
        return pack(x, idt), unpack(yp, odt, ofold)

    tf, (fi, fo) = _best(finn, a.repeats)
    to, (oi, oo) = _best(ours, a.repeats)
    same = np.array_equal(fi, oi) and np.array_equal(np.asarray(fo, np.float32), oo)
    print(f"batch {a.batch}: input {idt} {ifold} -> {oi.nbytes:,} bytes, output {odt} {ofold}")
    print(f"{'':<24}{'pack + unpack ms':>18}")
    print(f"{'FINN data_packing':<24}{tf * 1e3:>18.2f}")
    print(f"{'driver.packing':<24}{to * 1e3:>18.2f}")
    print(f"speed-up {tf / to:.1f}x, bit-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
