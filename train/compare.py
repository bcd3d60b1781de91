"""`python -m train.compare`: IMP vs FMP from the same dense start and seed, as the paper's Tables 1-3.

1. Trains the dense quantised model (strategy none) for --pretrain-epochs: the shared start.
2. Sets the accuracy floor: --prune.floor as given, or --floor-relative times the dense
   model's feedback accuracy (a synthetic set's ceiling is not RadioML's, so the
   paper's 56% floor means nothing there).
3. Runs each strategy from that start, each in its own run directory (resumable).
4. Prints and saves the table: strategy, bits, pruning steps, eta, bit-ops %, weight-bits %,
   cost, accuracy; and one trajectory figure with every strategy.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from .config import PruneConfig, add_config_flags, config_from_args
from .results import read_metrics, write_json


def table(rows: list[dict]) -> str:
    """A fixed-width text table of comparison rows (as returned by `summary_row`)."""
    head = ("strategy", "bits", "steps kept/all", "eta meas.", "eta eq.3 (all)", "bit-ops %",
            "weight-bits %", "cost", "test acc", "feedback acc", "met floor")
    lines = [head]
    for r in rows:
        lines.append((r["strategy"], r["bits"], f"{r['steps_kept']}/{r['steps_all']}", f"{r['eta_measured']:.2f}",
                      f"{r['eta_eq3_all']:.2f}", f"{r['bops_pct']:.3f}", f"{r['weight_bits_pct']:.3f}",
                      f"{r['cost']:.4f}", f"{r['accuracy']:.4f}", f"{r['feedback_accuracy']:.4f}",
                      "yes" if r["met_floor"] else "no"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    fmt = lambda line: "  ".join(str(c).rjust(w) for c, w in zip(line, widths))  # noqa: E731
    return "\n".join([fmt(lines[0]), fmt(["-" * w for w in widths])] + [fmt(x) for x in lines[1:]])


def summary_row(name: str, m: dict) -> dict:
    b = m["bits"]
    fb = [h["feedback_accuracy"] for h in m["history"]]
    good = [r["accuracy"] for r in m.get("rounds", [])]
    return {
        "strategy": name, "bits": f"{b['input']}/{b['weight']}/{b['activation']}",
        "steps_kept": m["pruning_steps_kept"], "steps_all": m["pruning_steps_all"],
        "eta_measured": m["eta_measured"], "eta_eq3_all": m["eta_eq3_all_rounds"],
        "eta_eq3_kept": m["eta_eq3_lineage"], "bops_pct": m["cost"]["bops_pct"],
        "weight_bits_pct": m["cost"]["weight_bits_pct"], "cost": m["cost"]["cost"],
        "accuracy": m["accuracy"], "feedback_accuracy": good[-1] if good and m["strategy"] != "none" else fb[-1],
        "met_floor": m["met_floor"], "feedback_split": m["feedback_split"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", default="runs/compare", help="directory for the runs and table (default: %(default)s)")
    p.add_argument("--strategies", default="imp,fmp", help="comma-separated: imp, imp-converge, fmp (default: %(default)s)")
    p.add_argument("--pretrain-epochs", type=int, default=5, help="dense epochs before pruning starts (default: %(default)s)")
    p.add_argument("--floor-relative", type=float, default=None,
                   help="floor = this x the dense model's feedback accuracy (overrides --prune.floor)")
    add_config_flags(p)
    a = p.parse_args(argv)
    try:
        base = config_from_args(a)
        strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
        for s in strategies:
            if s not in ("imp", "imp-converge", "fmp"):
                raise ValueError(f"unknown strategy {s!r} in --strategies")
        rows, runs = run_comparison(base, Path(a.out), strategies, a.pretrain_epochs, a.floor_relative)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"\nfeedback split: {rows[0]['feedback_split']}; floor {runs['floor']:.4f}; runs in {a.out}")
    print(table(rows))
    return 0


def run_comparison(base, out: Path, strategies: list[str], pretrain_epochs: int, floor_relative):
    from .loop import train
    from .plots import plot_trajectory

    dense = copy.deepcopy(base)
    dense.prune = PruneConfig(strategy="none")  # pruning options do not shape the dense start
    dense.optim.epochs_per_round = pretrain_epochs
    dense.run_dir = str(out / "dense")
    train(dense)
    md = read_metrics(out / "dense")
    floor = base.prune.floor
    if floor_relative is not None:
        floor = floor_relative * md["history"][-1]["feedback_accuracy"]
    rows, metrics = [summary_row("dense (start)", md)], {}
    rows[0]["met_floor"] = rows[0]["feedback_accuracy"] >= floor  # judged against the floor just set
    for s in strategies:
        cfg = copy.deepcopy(base)
        cfg.prune.strategy, cfg.prune.floor = s, floor
        cfg.init_from, cfg.run_dir = str(out / "dense"), str(out / s)
        train(cfg)
        metrics[s] = read_metrics(out / s)
        rows.append(summary_row(s, metrics[s]))
    plot_trajectory(metrics, out / "trajectory.png")
    write_json({"floor": floor, "rows": rows}, out / "compare.json")
    (out / "table.txt").write_text(table(rows) + "\n")
    return rows, {"floor": floor}


if __name__ == "__main__":
    sys.exit(main())
