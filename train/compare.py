"""`python -m train.compare`: IMP vs FMP from the same dense start and seed, as the paper's Tables 1-3.

1. Trains the dense quantised model (strategy none) for --pretrain-epochs: the shared start
   (and, with --reference-filters 32, the dense topology finn-examples deploys, for comparison).
   With --init_from a trained model (models/reference/...), those epochs fine-tune it on this data;
   --reference-init does the same for the reference row.
2. Sets the accuracy floor: --prune.floor as given, or --floor-relative times the dense
   model's feedback accuracy (a synthetic set's ceiling is not RadioML's, so the
   paper's 56% floor means nothing there).
3. Runs each strategy from that start, each in its own run directory (resumable).
   With --executor ray each strategy is a Ray task (a hybrid in the same task as the filter run it
   continues), asking for --threads CPUs (a GPU where training runs on CUDA); the table is the serial one.
4. Prints and saves the table: strategy, bits, widths, pruning steps, eta, bit-ops %,
   weight-bits %, cost, accuracy; and one trajectory figure with every strategy.

A strategy is imp, imp-converge or fmp, optionally with a pruning structure:
fmp-filters (whole filters and neurons: a smaller FINN accelerator) or fmp-hybrid
(filters, then unstructured; when the -filters run is in the same comparison, the hybrid
continues from its final model instead of repeating the filter phase). FINN estimates for every row come from
`python -m build.compare OUT` (the build stage reads these runs from disk).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from pathlib import Path

from radioml.atomic import write_text
from radioml.cli import run_main

from .config import PruneConfig, add_config_flags, config_from_args
from .executor import Unit, add_executor_flags, connect, main_process, run_units
from .results import read_metrics, write_compare


STRUCTURED = ("filters", "hybrid")


def parse_strategy(name: str) -> tuple[str, str]:
    """'fmp-filters' -> ('fmp', 'filters'); 'imp' -> ('imp', 'unstructured')."""
    base, _, structure = name.rpartition("-")
    if structure in STRUCTURED and base in ("imp", "imp-converge", "fmp"):
        return base, structure
    if name in ("imp", "imp-converge", "fmp"):
        return name, "unstructured"
    raise ValueError(f"unknown strategy {name!r} in --strategies (imp, imp-converge or fmp, "
                     f"optionally -filters or -hybrid)")


def compact_widths(widths: list[int]) -> str:
    """[24, 24, 24, 20] -> '24x3,20'."""
    out, i = [], 0
    while i < len(widths):
        j = i
        while j < len(widths) and widths[j] == widths[i]:
            j += 1
        out.append(f"{widths[i]}x{j - i}" if j - i > 1 else str(widths[i]))
        i = j
    return ",".join(out)


def table(rows: list[dict]) -> str:
    """A fixed-width text table of comparison rows (as returned by `summary_row`)."""
    head = ("strategy", "bits", "conv / dense widths", "steps kept/all", "eta meas.", "eta eq.3 (all)", "bit-ops %",
            "weight-bits %", "cost", "test acc", "acc >= 10 dB", "feedback acc", "met floor")
    lines = [head]
    for r in rows:
        lines.append((r["strategy"], r["bits"], r["widths"], f"{r['steps_kept']}/{r['steps_all']}",
                      f"{r['eta_measured']:.2f}",
                      f"{r['eta_eq3_all']:.2f}", f"{r['bops_pct']:.3f}", f"{r['weight_bits_pct']:.3f}",
                      f"{r['cost']:.4f}", f"{r['accuracy']:.4f}", f"{r['accuracy_10db']:.4f}",
                      f"{r['feedback_accuracy']:.4f}",
                      "yes" if r["met_floor"] else "no"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    fmt = lambda line: "  ".join(str(c).rjust(w) for c, w in zip(line, widths))  # noqa: E731
    return "\n".join([fmt(lines[0]), fmt(["-" * w for w in widths])] + [fmt(x) for x in lines[1:]])


def budget_note(cfg) -> str:
    """What a round of the sweep trained on, said beside its table: a round that sees less than the whole
    training split each epoch is an illustration of the method, not a result."""
    e, sub = cfg.optim.epochs_per_round, cfg.data.train_subset
    what = "the whole training split" if sub >= 1 else (
        f"{sub:.0%} of the training split ({'a fresh draw' if cfg.data.resample_subset else 'the same frames'} "
        f"each epoch)")
    line = f"budget: each pruning round fine-tunes up to {e} epoch(s) of {what}, ending once the floor is met"
    if sub < 1:
        line += ("; a short-budget illustration (a round may see less than one pass over the training split): "
                 "results at a realistic budget are the shipped ones, models/README.md")
    return line


def high_snr_accuracy(m: dict, min_snr: float = 10.0) -> float:
    """Mean test accuracy over the SNRs >= min_snr (blocks are equal-sized: the frame-weighted mean)."""
    accs = [a for snr, a in m["accuracy_per_snr"].items() if float(snr) >= min_snr]
    return sum(accs) / len(accs)


def summary_row(name: str, m: dict, run_dir: Path) -> dict:
    b = m["bits"]
    fb = [h["feedback_accuracy"] for h in m["history"]]
    good = [r["accuracy"] for r in m.get("rounds", [])]
    return {
        "strategy": name, "bits": b["label"], "run_dir": str(run_dir),
        "structure": m.get("structure", "unstructured"),
        "widths": f"{compact_widths(m['widths']['conv'])} / {compact_widths(m['widths']['dense'])}",
        "steps_kept": m["pruning_steps_kept"], "steps_all": m["pruning_steps_all"],
        "eta_measured": m["eta_measured"], "eta_eq3_all": m["eta_eq3_all_rounds"],
        "eta_eq3_kept": m["eta_eq3_lineage"], "bops_pct": m["cost"]["bops_pct"],
        "weight_bits_pct": m["cost"]["weight_bits_pct"], "cost": m["cost"]["cost"],
        "accuracy": m["accuracy"], "accuracy_10db": high_snr_accuracy(m),
        "feedback_accuracy": good[-1] if good and m["strategy"] != "none" else fb[-1],
        "met_floor": m["met_floor"], "feedback_split": m["feedback_split"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", default="runs/compare", help="directory for the runs and table (default: %(default)s)")
    p.add_argument("--strategies", default="imp,fmp",
                   help="comma-separated: imp, imp-converge, fmp, each optionally -filters or -hybrid "
                        "(e.g. fmp-filters) (default: %(default)s)")
    p.add_argument("--reference-filters", type=int, default=0,
                   help="also train a dense model with this many conv filters (32: finn-examples' deployed "
                        "topology) as a reference row; 0: none (default: %(default)s)")
    p.add_argument("--reference-init", default=None,
                   help="model.pt the reference row starts from (e.g. models/reference/vgg10-w4a4-f32/model.pt); "
                        "default: trained from scratch")
    p.add_argument("--pretrain-epochs", type=int, default=5, help="dense epochs before pruning starts (default: %(default)s)")
    p.add_argument("--floor-relative", type=float, default=None,
                   help="floor = this x the dense model's feedback accuracy (overrides --prune.floor)")
    add_executor_flags(p)
    add_config_flags(p)
    a = p.parse_args(argv)

    def work():
        base = config_from_args(a)
        strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
        for s in strategies:
            parse_strategy(s)
        if a.reference_init is not None:  # before any training: it is needed last
            from .saved_model import load_model

            load_model(a.reference_init)
        if a.reference_filters < 0 or a.pretrain_epochs < 0:
            raise ValueError("--reference-filters and --pretrain-epochs must be >= 0")
        connect(a.executor, a.ray_address)  # before any work: Ray there and its cluster reachable
        from .process_group import torchrun_job

        with torchrun_job():
            result = run_comparison(base, Path(a.out), strategies, a.pretrain_epochs, a.floor_relative,
                                    a.reference_filters, a.reference_init, a.executor, a.ray_address)
        if main_process():
            print(f"\nfeedback split: {result['rows'][0]['feedback_split']}; floor {result['floor']:.4f}; runs in "
                  f"{a.out}")
            print(table(result["rows"]))
            print(budget_note(base))

    return run_main(work)


def _dense(base, run_dir: Path, epochs: int, init_from=None, **model_changes) -> dict:
    from .loop import train

    dense = copy.deepcopy(base)
    dense.init_from = init_from
    dense.prune = PruneConfig(strategy="none")  # pruning options do not shape a dense run
    dense.optim.epochs_per_round = epochs
    dense.model = dataclasses.replace(dense.model, **model_changes)
    dense.run_dir = str(run_dir)
    train(dense)
    return read_metrics(run_dir)


def continued_from(s: str, strategies: list[str]) -> str | None:
    """The filter-pruning run a hybrid strategy continues (unstructured, from its final model), if it ran first."""
    strategy, structure = parse_strategy(s)
    first = f"{strategy}-filters"
    return first if structure == "hybrid" and first in strategies[:strategies.index(s)] else None


def strategy_chains(strategies: list[str]) -> list[list[str]]:
    """The strategies as independent units: a hybrid runs after (in the same unit as) the filter run it continues."""
    chains: list[list[str]] = []
    for s in strategies:
        first = continued_from(s, strategies)
        chain = next((c for c in chains if first in c), None) if first else None
        if chain is not None:
            chain.append(s)
        else:
            chains.append([s])
    return chains


def run_chain(base, out: Path, chain: list[str], floor: float) -> dict:
    """Train (or resume, or find finished) each strategy of one chain from the dense start; their metrics."""
    from .loop import train

    metrics = {}
    for s in chain:
        cfg = copy.deepcopy(base)
        cfg.prune.strategy, cfg.prune.structure = parse_strategy(s)
        cfg.prune.floor = floor
        cfg.init_from, cfg.run_dir = str(out / "dense"), str(out / s)
        first = continued_from(s, chain)
        if first:  # the hybrid's filter phase is that run: continue from its final model, unstructured
            cfg.prune.structure, cfg.init_from = "unstructured", str(out / first)
        train(cfg)
        metrics[s] = read_metrics(out / s)
    return metrics


def run_comparison(base, out: Path, strategies: list[str], pretrain_epochs: int, floor_relative,
                   reference_filters: int = 0, reference_init=None, executor: str = "local",
                   address: str | None = None) -> dict:
    """Dense start, each strategy from it, and an optional dense reference; returns {floor, rows}."""
    from .plots import plot_trajectory

    md = _dense(base, out / "dense", pretrain_epochs, base.init_from)
    floor = base.prune.floor
    if floor_relative is not None:
        floor = floor_relative * md["history"][-1]["feedback_accuracy"]
    rows, metrics = [summary_row("dense (start)", md, out / "dense")], {}
    rows[0]["met_floor"] = rows[0]["feedback_accuracy"] >= floor  # judged against the floor just set
    units = [Unit(",".join(chain), run_chain, (base, out, chain, floor), cpus=max(1, base.threads),
                  gpu=base.resolved_device().type == "cuda") for chain in strategy_chains(strategies)]
    for done in run_units(units, executor, address):
        metrics.update(done)
    for s in strategies:
        rows.append(summary_row(s, metrics[s], out / s))
        if continued_from(s, strategies):  # count both phases
            first = next(r for r in rows if r["strategy"] == continued_from(s, strategies))
            rows[-1]["structure"] = "hybrid"
            for k in ("steps_kept", "steps_all"):
                rows[-1][k] += first[k]
            for k in ("eta_eq3_all", "eta_eq3_kept"):
                rows[-1][k] *= first[k]
    if reference_filters:
        name = f"dense-{reference_filters}f"
        mr = _dense(base, out / name, pretrain_epochs, reference_init,
                    conv_filters=reference_filters, conv_widths=None)
        rows.append(summary_row(f"dense {reference_filters} filters (reference)", mr, out / name))
        rows[-1]["met_floor"] = rows[-1]["feedback_accuracy"] >= floor
    result = {"floor": floor, "rows": rows}
    if main_process():
        plot_trajectory(metrics, out / "trajectory.png")
        write_compare(out, result)
        write_text(out / "table.txt", table(rows) + "\n" + budget_note(base) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(main())
