"""`python -m build --export DIR --out DIR --board ZCU104`: FINN dataflow build (estimates without Vivado).

Exit status: 0 the build met its target and fits --util-cap of the part; 3 it was written but misses its
frame-rate target or uses more of some resource than the cap (`--report-only`: 0 then too); 2 bad input or a
failed build."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from pathlib import Path

from radioml.cli import run_main

from .boards import BOARDS
from .class_output import OUTPUTS
from .config import BuildConfig, fraction
from .folding import AUTO, IMPLS, OBJECTIVES

# every step a build can run, in order (build/flow.py; codegen and bitfile only with --codegen / --bitfile)
STEP_NAMES = ("step_load", "step_to_hw", "step_partition", "step_specialize", "step_folding", "step_minimize",
              "step_verify_folded", "step_estimates", "step_codegen", "step_bitfile")


def main(argv=None) -> int:
    d = BuildConfig()
    p = argparse.ArgumentParser(prog="python -m build", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("--export", dest="export_dir", default=d.export_dir, help="export directory (default: %(default)s)")
    p.add_argument("--out", default=d.out, help="build directory (default: %(default)s)")
    p.add_argument("--board", default=d.board, choices=sorted(BOARDS), help="target board (default: %(default)s)")
    p.add_argument("--clock-ns", type=float, default=None, help="clock period in ns (default: the board's)")
    p.add_argument("--target-fps", type=int, default=d.target_fps, help="frames/s to fold for (default: %(default)s)")
    p.add_argument("--max-fps", action="store_true",
                   help="fold for the highest frames/s whose search folding (see --fit) fits --util-cap of the part "
                        "(instead of --target-fps; needs --folding search)")
    p.add_argument("--util-cap", type=fraction, default=d.util_cap,
                   help="fraction of each of the part's resources the layers may use (exit 3 above it; with "
                        "--max-fps the rate is chosen under it); the rest is left for FIFOs, DMAs and routing, "
                        "which the estimates do not cover (default: %(default)s)")
    p.add_argument("--folding", default=d.folding,
                   help="search (the --fit objective's best folding meeting the target), finn (FINN's target_fps), "
                        "or a folding JSON path (default: %(default)s)")
    p.add_argument("--fit", default=AUTO, choices=(AUTO,) + OBJECTIVES,
                   help="what --folding search minimises while meeting the rate: max-utilisation (the largest of the "
                        "LUT, BRAM18, URAM and DSP fractions of the part, solved exactly over all layers at once; "
                        "ties: fewest LUT) or lut (the fewest estimated LUTs, HLS MVAUs where FINN's rules allow: the "
                        "comparison); auto: max-utilisation with --folding search (default: %(default)s)")
    p.add_argument("--impl", default=AUTO, choices=(AUTO,) + IMPLS,
                   help="finn: FINN's specialisation of each layer to HLS or RTL (its rules, or --specialize-layers); "
                        "search: each MVAU and thresholding layer built as HLS or RTL, whichever the --fit "
                        "max-utilisation search finds best with its folding (needs --folding search and --fit "
                        "max-utilisation; implies --standalone-thresholds); auto: search under --fit max-utilisation "
                        "without --specialize-layers, else finn (default: %(default)s)")
    p.add_argument("--specialize-layers", default=None, metavar="FILE.json",
                   help="FINN's specialize-layers JSON: node name (before specialisation, e.g. MVAU_0) -> "
                        "{\"preferred_impl_style\": \"hls\" or \"rtl\"}; unknown node names are refused")
    p.add_argument("--standalone-thresholds", action="store_true",
                   help="FINN's standalone_thresholds: thresholds as their own layers, so FINN specialises the MVAUs "
                        "to RTL (DSP-based, without the HLS MVAU's 8,191-bit weight-stream cap; more DSPs, fewer LUTs)")
    p.add_argument("--output", default=d.output, choices=OUTPUTS,
                   help="what the accelerator streams out a frame: logits (the 24 class scores) or class (FINN's "
                        "LabelSelect: the top-1 class index, 1 byte; needs an integer last-layer bias, e.g. Brevitas "
                        "Int32Bias) (default: %(default)s)")
    p.add_argument("--verify-frames", type=int, default=None,
                   help="check frames of the export the folded graph is verified on, node by node (default: all)")
    p.add_argument("--cppsim", action="store_true",
                   help="also verify the folded graph with FINN's C++ simulation of every HLS layer (needs "
                        "finn-hlslib and Vitis HLS' headers, e.g. in the Docker image; skipped, with a message, "
                        "where they are missing)")
    p.add_argument("--no-finn-verify", dest="finn_verify", action="store_false",
                   help="with --bitfile: skip FINN's folded-cppsim and stitched-IP rtlsim verification steps "
                        "(they run by default, before synthesis)")
    p.add_argument("--codegen", action="store_true", help="also generate HLS/RTL sources (step_hw_codegen)")
    p.add_argument("--bitfile", action="store_true", help="continue to a bitfile (needs Vivado: use docker/)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing build directory (only a previous output of python -m build)")
    p.add_argument("--start-step", metavar="STEP", choices=STEP_NAMES,
                   help="resume the work directory a failed or stopped build of --out kept, from this step (its "
                        "inputs must be this command's); one of: " + ", ".join(STEP_NAMES))
    p.add_argument("--stop-step", metavar="STEP", choices=STEP_NAMES,
                   help="stop after this step, keeping the work directory beside --out for --start-step")
    p.add_argument("--report-only", action="store_true",
                   help="exit 0 even when the design misses its target or does not fit the part (the default is 3)")
    a = p.parse_args(argv)
    names = {f.name for f in fields(BuildConfig)}
    cfg = BuildConfig(**{k: v for k, v in vars(a).items() if k in names})
    from export.finn_env import XilinxToolMissing
    from .flow import build
    from .report import BuildReport

    def work():
        out = build(cfg)
        if cfg.stop_step and out != Path(cfg.out):  # stopped early: the work directory is kept, nothing published
            return 0
        r = BuildReport.read(out)
        over = [k for k, u in r["utilisation"].items() if u > cfg.util_cap]
        problems = ([] if r["meets_target"] else [f"misses its target ({r['estimated_fps']:,.0f} of "
                                                   f"{r['target_fps']:,.0f} frames/s)"]) + \
            (["does not fit the part"] if not r["fits"] else
             [f"uses more than {cfg.util_cap:.0%} of the part's {', '.join(over)} (the rest is for FIFOs, DMAs "
              f"and routing, which the estimates do not cover; --util-cap)"] if over else [])
        if problems and not a.report_only:
            print(f"error: {out}: the design {' and '.join(problems)}; the build is written (--report-only: exit 0)",
                  file=sys.stderr)
            return 3
        return 0

    return run_main(work, (ValueError, OSError, RuntimeError, XilinxToolMissing))


if __name__ == "__main__":
    sys.exit(main())
