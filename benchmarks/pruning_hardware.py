"""Filter pruning against unstructured pruning, in FINN's LUTs: the demo's comparison and hardware table in one run.

Trains (or reuses) the demo's models, dense start, IMP, FMP, FMP on filters, the
hybrid and the dense 32-filter reference, on the demo data with the demo's seed and
floor, then exports every model and estimates its FINN accelerator on ZCU104: LUT,
BRAM18 and DSP at one common frame rate and the highest frame rate that fits 80% of
the part. Unstructured FMP keeps a few percent of the weights and gets the dense
model's accelerator; FMP on filters gets a smaller one.

    python -m benchmarks.pruning_hardware [--out runs/bench-hardware] [--target-fps 50000]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pruning_hardware", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/bench-hardware", help="runs and tables (reused if present) (default: %(default)s)")
    p.add_argument("--config", default="configs/demo.json", help="training config (default: %(default)s)")
    p.add_argument("--target-fps", type=int, default=50_000, help="the common frame rate (default: %(default)s)")
    p.add_argument("--board", default="ZCU104", help="board (default: %(default)s)")
    a = p.parse_args(argv)

    from build.compare import compare_hardware
    from train.compare import main as compare_main

    rc = compare_main(["--config", a.config, "--out", a.out, "--pretrain-epochs", "4", "--floor-relative", "1.0",
                       "--strategies", "imp,fmp,fmp-filters,fmp-hybrid", "--reference-filters", "32"])
    if rc:
        return rc
    rows = {r["strategy"]: r for r in compare_hardware(Path(a.out), a.board, a.target_fps, 0.8)}
    dense, fmp, filt = rows["dense (start)"], rows["fmp"], rows["fmp-filters"]
    print(f"\nunstructured FMP: {dense['weights_kept'] / fmp['weights_kept']:.1f}x fewer weights, "
          f"{dense['lut'] / fmp['lut']:.2f}x fewer LUTs; FMP on filters: "
          f"{dense['weights_kept'] / filt['weights_kept']:.1f}x fewer weights, {dense['lut'] / filt['lut']:.2f}x fewer "
          f"LUTs, max {filt['max_fps']:,.0f} frames/s against the dense model's {dense['max_fps']:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
