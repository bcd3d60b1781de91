"""`python -m train.table3`: the FMP paper's Table 3 (FMP at several bit widths) in one command.

For each bit width in --bits (e.g. 8 7 6 5 4), from one seed and one start model
(--init_from, a trained model whose float weights and scales are requantised to that
width, or trained from scratch for --pretrain-epochs):

  1. the dense start at that width (--pretrain-epochs of training; 0 scores it as loaded);
  2. FMP to the floor.

The floor is one for every row, as in the paper: --prune.floor, or --floor-relative
times the feedback accuracy of the dense start at the lowest width (every row can reach
it). Then the IMP row at the lowest width, and, unless --no-mixed, the mixed-precision
row: the precision search (train/precision.py) from the lowest-width FMP model, lowering
one layer's bits at a time while the floor holds.

Prints bits, eta (measured, and eq. 3 over all steps), bit-ops %, weight-bits %, cost
and test accuracy per row; writes OUT/table3.json, OUT/table3.txt, OUT/cost_vs_bits.png,
and OUT/compare.json, so `python -m build.compare OUT` adds FINN estimates of every row.
Each run is resumable in its own directory: re-running the command continues.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from pathlib import Path

from radioml.atomic import write_json, write_text
from radioml.cli import run_main

from .compare import _dense, summary_row, table
from .config import add_config_flags, config_from_args
from .executor import Unit, add_executor_flags, connect, main_process, run_units
from .results import read_metrics, write_compare


def _at_bits(base, bits: int):
    cfg = copy.deepcopy(base)
    cfg.model = dataclasses.replace(cfg.model, input_bits=bits, weight_bits=bits, act_bits=bits,
                                    layer_weight_bits=None, layer_act_bits=None)
    return cfg


def _pruned(cfg, out: Path, name: str, strategy: str, floor: float, init_from: str) -> dict:
    from .loop import train

    cfg = copy.deepcopy(cfg)
    cfg.prune.strategy, cfg.prune.structure, cfg.prune.floor = strategy, "unstructured", floor
    cfg.init_from, cfg.run_dir = init_from, str(out / name)
    train(cfg)
    return summary_row(name, read_metrics(out / name), out / name)


def run_rows(base, out: Path, specs: list[tuple], floor: float) -> list[dict]:
    """Train (or resume, or find finished) the rows of one unit, in order: (bits, name, strategy, init_from)."""
    return [_pruned(_at_bits(base, b), out, name, strategy, floor, init) for b, name, strategy, init in specs]


def run_table3(base, out: Path, bits: list[int], pretrain_epochs: int, floor_relative,
               imp: bool = True, mixed: bool = True, executor: str = "local", address: str | None = None) -> dict:
    """Every row of the table; returns {floor, rows} (rows as train.compare's, plus `row` and `start`)."""
    order = sorted(set(bits))  # the lowest width first: it sets the floor
    lowest = order[0]
    starts, floor = {}, base.prune.floor
    for b in order:
        md = _dense(_at_bits(base, b), out / f"dense-{b}b", pretrain_epochs, base.init_from)
        starts[b] = summary_row(f"dense {b}-bit", md, out / f"dense-{b}b")
        if b == lowest and floor_relative is not None:
            floor = floor_relative * md["history"][-1]["feedback_accuracy"]
    # the pruned rows as independent units (train.executor): each FMP width, the IMP row, and the precision
    # search in the unit of the lowest width's FMP run that it starts from
    fmp = {b: (b, f"fmp-{b}b", "fmp", str(out / f"dense-{b}b")) for b in bits}
    chains = [[fmp[b]] + ([(lowest, f"fmp-{lowest}b-mixed", "precision", str(out / f"fmp-{lowest}b"))]
                          if b == lowest and mixed else []) for b in reversed(order)]
    if imp:
        chains.append([(lowest, f"imp-{lowest}b", "imp", str(out / f"dense-{lowest}b"))])
    units = [Unit(",".join(spec[1] for spec in chain), run_rows, (base, out, chain, floor),
                  cpus=max(1, base.threads), gpu=base.resolved_device().type == "cuda") for chain in chains]
    done = {row["strategy"]: row for result in run_units(units, executor, address) for row in result}
    rows = [{**done[f"fmp-{b}b"], "row": f"FMP {b}-bit", "start": starts[b]} for b in reversed(order)]
    if imp:
        rows.append({**done[f"imp-{lowest}b"], "row": f"IMP {lowest}-bit", "start": starts[lowest]})
    if mixed:
        row = done[f"fmp-{lowest}b-mixed"]
        fmp_row = next(r for r in rows if r["strategy"] == f"fmp-{lowest}b")
        for k in ("steps_kept", "steps_all", "eta_measured", "eta_eq3_all", "eta_eq3_kept"):
            row[k] = fmp_row[k]  # no weights pruned in the precision stage: the FMP model's figures
        rows.append({**row, "row": f"FMP {lowest}-bit + precision search", "start": starts[lowest]})
    for r in rows:
        r["met_floor"] = r["met_floor"] and r["feedback_accuracy"] >= floor
    result = {"floor": floor, "bits": order, "rows": rows}
    if main_process():
        write_json(out / "table3.json", result)
        write_compare(out, {"floor": floor, "rows": [{k: v for k, v in r.items() if k != "start"} for r in rows]})
        write_text(out / "table3.txt", table3_text(result) + "\n")
        plot_cost_vs_bits(result, out / "cost_vs_bits.png")
    return result


def table3_text(result: dict) -> str:
    rows = [{**r, "strategy": r["row"]} for r in result["rows"]]
    return f"floor {result['floor']:.4f} (one for every row)\n" + table(rows)


def plot_cost_vs_bits(result: dict, path: Path) -> None:
    """Cost against uniform bit width (FMP line, dense starts, IMP), the mixed model as its own marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import save_figure

    fmp = sorted((int(r["strategy"].split("-")[1][:-1]), r) for r in result["rows"]
                 if r["strategy"].startswith("fmp-") and r["strategy"].endswith("b"))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot([b for b, _ in fmp], [r["start"]["cost"] for _, r in fmp], "s--", color="0.5", label="dense start")
    ax.plot([b for b, _ in fmp], [r["cost"] for _, r in fmp], "o-", color="C0", label="FMP")
    for r in result["rows"]:
        if r["strategy"].startswith("imp-"):
            ax.plot(int(r["strategy"].split("-")[1][:-1]), r["cost"], "^", color="C1", ms=9, label=r["row"])
        elif r["strategy"].endswith("-mixed"):
            ax.axhline(r["cost"], color="C2", ls=":", lw=1.5)
            ax.plot(min(result["bits"]), r["cost"], "*", color="C2", ms=13,
                    label=f"{r['row']} ({r['bits']})")
    ax.set_yscale("log")
    ax.set_xlabel("bits (input / weight / activation)")
    ax.set_ylabel("challenge cost (normalised, log)")
    ax.set_title("Table 3: cost against bit width at one floor")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.table3", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", default="runs/table3", help="directory for the runs and the table (default: %(default)s)")
    p.add_argument("--bits", type=int, nargs="+", default=[8, 7, 6, 5, 4],
                   help="uniform bit widths of the FMP rows (default: %(default)s)")
    p.add_argument("--pretrain-epochs", type=int, default=5,
                   help="dense epochs at each width before pruning; 0 scores the --init_from model as loaded "
                        "(default: %(default)s)")
    p.add_argument("--floor-relative", type=float, default=None,
                   help="floor = this x the lowest width's dense feedback accuracy (overrides --prune.floor)")
    p.add_argument("--no-imp", action="store_true", help="leave out the IMP row")
    p.add_argument("--no-mixed", action="store_true", help="leave out the mixed-precision row")
    add_executor_flags(p)
    add_config_flags(p)
    a = p.parse_args(argv)

    def work():
        if min(a.bits) < 2:
            raise ValueError(f"--bits: every width must be >= 2, got {a.bits}")
        connect(a.executor, a.ray_address)  # before any work: Ray there and its cluster reachable
        from .process_group import torchrun_job

        with torchrun_job():
            result = run_table3(config_from_args(a), Path(a.out), a.bits, a.pretrain_epochs, a.floor_relative,
                                not a.no_imp, not a.no_mixed, a.executor, a.ray_address)
        if main_process():
            print()
            print(table3_text(result))
            print(f"runs, table3.json, cost_vs_bits.png in {a.out}; FINN estimates: python -m build.compare {a.out}")

    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
