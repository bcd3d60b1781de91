"""The hardware-aware search's frontier beside the obvious alternative, in one run.

Runs (or resumes) `python -m compress` from the dense 64-filter reference on the demo data
for ZCU104 at 240,000 frames/s, with finn-examples' 32-filter topology (the 32-filter
reference, dense) scored on the same frames and target; prints the frontier table, then
re-estimates every point for a second target (default Pynq-Z2 at 90,000 frames/s, 100 MHz)
with whether it fits 80% of that part.

    python -m benchmarks.hw_frontier [--out runs/bench-frontier] [--max-steps 8]
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hw_frontier", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/bench-frontier", help="search directory (resumed if present) "
                                                                "(default: %(default)s)")
    p.add_argument("--data", default="data/synthetic.hdf5", help="RadioML-layout file (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=8, help="moves the search may try (default: %(default)s)")
    p.add_argument("--second-board", default="Pynq-Z2", help="board of the second target (default: %(default)s)")
    p.add_argument("--second-fps", type=int, default=90_000,
                   help="frames/s of the second target (default: %(default)s)")
    a = p.parse_args(argv)

    from compress.__main__ import main as search_main

    rc = search_main(["--out", a.out, "--data", a.data, "--max-steps", str(a.max_steps), "--threads", "2",
                      "--alternatives", "models/reference/vgg10-w4a4-f32/model.pt"])
    if rc:
        return rc
    print(second_target(a.out, a.second_board, a.second_fps))
    return 0


def second_target(out: str, board_name: str, fps: int) -> str:
    """Every point of a frontier re-estimated for another board and rate."""
    from pathlib import Path

    from build.boards import board
    from compress.estimates import LayerEstimates, Shape
    from compress.frontier import read_frontier
    from train.saved_model import load_model

    body = read_frontier(out)
    b = board(board_name)
    est = None
    lines = [f"\nthe same points on {b.name} at {fps:,} frames/s ({1e3 / b.clock_ns:.0f} MHz; 80% of the part: "
             f"{0.8 * b.lut:,.0f} LUT)", f"{'point':<34}{'feedback':>10}{'LUT':>12}{'reaches':>12}  fits 80%"]
    for p in body["points"] + body["alternatives"]:
        _, mcfg, _ = load_model(p["model"])
        est = est or LayerEstimates(b, mcfg, Path(out) / f"layer_estimates-{b.name}.json")
        r = est.at_rate(Shape.of(mcfg), fps, b.clock_ns)
        fits = all(r[k] <= 0.8 * b.resources()[k] for k in ("LUT", "BRAM_18K", "DSP"))
        lines.append(f"{p['name']:<34}{p['feedback_accuracy']:>10.4f}{r['LUT']:>12,.0f}{r['fps']:>12,.0f}  "
                     f"{'yes' if fits and r['meets'] else 'no'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
