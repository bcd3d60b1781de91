"""`python -m train.report RUN_DIR`: print a finished run's accuracy (overall, per SNR) and cost."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from radioml.cli import run_main

from .results import read_metrics


def format_run(m: dict) -> str:
    c = m["cost"]
    lines = [
        f"strategy {m['strategy']}, structure {m.get('structure', 'unstructured')}, "
        f"bits {m['bits']['label']} "
        f"(input/weight/activation), feedback on {m['feedback_split']}, floor {m['floor']:.4f}",
        f"test accuracy {m['accuracy']:.4f} over {m['frames']} frames",
        *([f"widths: conv {m['widths']['conv']}, dense {m['widths']['dense']}"] if "widths" in m else []),
        f"challenge cost {c['cost']:.4f}: bit-ops {c['bops']:,.0f} ({c['bops_pct']:.3f}% of baseline), "
        f"weight bits {c['weight_bits']:,.0f} ({c['weight_bits_pct']:.3f}%)",
        f"weights kept {m['weights_kept']:,}/{m['weights']:,} (eta measured {m['eta_measured']:.2f}; "
        f"eq. 3 over kept steps {m['eta_eq3_lineage']:.2f}, over all steps {m['eta_eq3_all_rounds']:.2f})",
        "accuracy per SNR (dB):",
    ]
    per = m["accuracy_per_snr"]
    keys = list(per)
    for i in range(0, len(keys), 13):
        lines.append("  " + " ".join(f"{k:>5}" for k in keys[i:i + 13]))
        lines.append("  " + " ".join(f"{per[k]:5.2f}" for k in keys[i:i + 13]))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.report", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("run_dir", type=Path, help="run directory (holds metrics.json)")
    a = p.parse_args(argv)
    return run_main(lambda: print(format_run(read_metrics(a.run_dir))), (ValueError, KeyError))


if __name__ == "__main__":
    sys.exit(main())
