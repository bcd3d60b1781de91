"""`python -m build.results MODELS`: the shipped results table and plots, regenerated from MODELS without retraining.

Rows: the dense width ladder (MODELS/ladder/fN, `python -m train.ladder`) and the compressed models of
MODELS/compression (`python -m train.compare` from the ladder's 64-filter model), each as soon as its run has
finished; runs still training are named under the table. Each model is exported
with every check and estimated by FINN on --board at each --rates (LUT, DSP, BRAM18; the layers' estimates,
no FIFOs or DMA). Every compressed model is set beside the dense ladder at its accuracy: the cost and LUTs the
ladder would need for the same mean accuracy over 10..30 dB, interpolated between its rungs.

Writes --out (default MODELS/results): results.json, results.md (the table), accuracy_vs_cost.png and
accuracy_vs_lut.png (the ladder drawn as the baseline curve), learning_curves.png (every run, per epoch),
built aside and published by rename; an
existing --out is replaced only with --force and only if it holds nothing but an earlier table's files.
Exports and builds are cached under --work (reused while the model and settings are the same).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from radioml.atomic import write_json, write_text
from radioml.cli import run_main
from radioml.publish import check_target, output_lock, publish, work_dir

from .boards import BOARDS

RATES = (50_000, 240_000)
COMMAND = "python -m build.results"


def ladder_rows(models: Path) -> list[dict]:
    """The finished rungs of MODELS/ladder, narrowest first."""
    from train.results import read_metrics

    rungs = sorted((d for d in (models / "ladder").glob("f*") if (d / "metrics.json").is_file()),
                   key=lambda d: int(d.name[1:]))
    return [{"name": f"dense {d.name[1:]} filters", "kind": "ladder", "run_dir": str(d), "metrics": read_metrics(d)}
            for d in rungs]


def _strategy_dirs(models: Path) -> list[Path]:
    """The strategy runs of MODELS/compression (not its dense start or reference rows): the sweep's order where
    its compare.json says it, then any other in name order (a sweep still running has no compare.json)."""
    from train.compare import parse_strategy
    from train.results import read_compare

    root = models / "compression"

    def is_strategy(d: Path) -> bool:
        try:
            parse_strategy(d.name)
        except ValueError:
            return False
        return d.is_dir()

    swept = read_compare(root)["rows"] if (root / "compare.json").is_file() else []
    order = [root / Path(r["run_dir"]).name for r in swept]
    rest = sorted(d for d in root.glob("*") if d not in order) if root.is_dir() else []
    return [d for d in order + rest if is_strategy(d)]


def compression_rows(models: Path) -> list[dict]:
    """Every finished strategy run of MODELS/compression (its metrics.json written), whether or not the sweep
    that trains them has finished."""
    from train.compare import continued_from
    from train.results import read_metrics

    rows = [{"name": d.name, "kind": "compressed", "run_dir": str(d), "metrics": read_metrics(d)}
            for d in _strategy_dirs(models) if (d / "metrics.json").is_file()]
    # a hybrid's budget and eq. 3 count the filter run it continued, as its eta measured does
    by_name = {r["name"]: r for r in rows}
    for r in rows:
        first = continued_from(r["name"], list(by_name))
        if first is not None:
            r["continues"] = {"name": first, "metrics": by_name[first]["metrics"]}
    return rows


def unfinished_runs(models: Path) -> list[str]:
    """The strategy runs of MODELS/compression that have started and not finished (no metrics.json yet)."""
    return [d.name for d in _strategy_dirs(models) if not (d / "metrics.json").is_file()]


def interpolate(x: float, points: list[tuple[float, float]]):
    """y at x on the piecewise-linear curve through `points` (sorted by x); None outside it."""
    pts = sorted(points)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[0][1] if len(pts) == 1 and pts[0][0] == x else None


def row_figures(row: dict, hw: dict) -> dict:
    """One table row: accuracy, compression, cost, training time and the FINN estimates at each rate."""
    from train.compare import compact_widths, high_snr_accuracy

    m = row["metrics"]
    out = {
        "name": row["name"], "kind": row["kind"], "run_dir": row["run_dir"],
        "widths": f"{compact_widths(m['widths']['conv'])} / {compact_widths(m['widths']['dense'])}",
        "accuracy": m["accuracy"], "accuracy_10_30db": high_snr_accuracy(m), "cost": m["cost"]["cost"],
        "weights_kept": m["weights_kept"], "eta_measured": m["eta_measured"], "eta_eq3": m["eta_eq3_all_rounds"],
        "epochs": m["epochs"], "train_seconds": sum(h["seconds"] for h in m["history"]),
    }
    if "continues" in row:
        first = row["continues"]["metrics"]
        out["continues"] = row["continues"]["name"]
        out["eta_eq3"] *= first["eta_eq3_all_rounds"]
        out["epochs"] += first["epochs"]
        out["train_seconds"] += sum(h["seconds"] for h in first["history"])
    for rate, b in hw.items():
        r = b["resources"]
        out[f"at_{rate}"] = {"LUT": r["LUT"], "DSP": r["DSP"], "BRAM_18K": r["BRAM_18K"],
                             "meets_target": b["meets_target"], "fits": b["fits"]}
    return out


def against_ladder(rows: list[dict], rate: int) -> None:
    """Give each compressed row the dense ladder's cost and LUTs at its accuracy (None beyond the ladder)."""
    ladder = [r for r in rows if r["kind"] == "ladder"]
    for r in rows:
        if r["kind"] != "compressed":
            continue
        acc = r["accuracy_10_30db"]
        r["ladder_cost_at_accuracy"] = interpolate(acc, [(x["accuracy_10_30db"], x["cost"]) for x in ladder])
        r["ladder_lut_at_accuracy"] = interpolate(acc, [(x["accuracy_10_30db"], x[f"at_{rate}"]["LUT"]) for x in ladder])


def table(rows: list[dict], board: str, rates, unfinished=()) -> str:
    """The results as a markdown table (and the runs not in it because they are still training)."""
    def res(r, rate):
        a = r[f"at_{rate}"]
        note = "" if a["meets_target"] and a["fits"] else (" (slower)" if not a["meets_target"] else " (no fit)")
        return f"{a['LUT']:,.0f} / {a['DSP']:,.0f} / {a['BRAM_18K']:,.0f}{note}"

    def vs(r, key, fmt):
        v = r.get(key)
        return "" if r["kind"] != "compressed" else ("beyond ladder" if v is None else fmt(v))

    head = ["model", "conv / dense widths", "test acc", "acc 10..30 dB", "cost", "weights", "eta (meas. / eq. 3)",
            *[f"LUT / DSP / BRAM18 @{rate:,}/s" for rate in rates], "ladder cost at same acc",
            f"ladder LUT @{rates[-1]:,}/s at same acc", "epochs", "train time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], r["widths"], f"{r['accuracy']:.2%}", f"{r['accuracy_10_30db']:.2%}", f"{r['cost']:.4f}",
                 f"{r['weights_kept']:,}", f"{r['eta_measured']:.2f} / {r['eta_eq3']:.2f}",
                 *[res(r, rate) for rate in rates], vs(r, "ladder_cost_at_accuracy", lambda v: f"{v:.4f}"),
                 vs(r, "ladder_lut_at_accuracy", lambda v: f"{v:,.0f}"), str(r["epochs"]),
                 f"{r['train_seconds'] / 60:.0f} min"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = "".join(f"\n\n{r['name']}: eq. 3, epochs and train time count both phases, {r['continues']} and then "
                      "unstructured FMP from its model." for r in rows if r.get("continues"))
    notes += f"\n\nStill training, not in the table: {', '.join(unfinished)}." if unfinished else ""
    return f"FINN estimates on {board} (layers only)\n\n" + "\n".join(lines) + notes


def plot(rows: list[dict], path: Path, x: str, xlabel: str, log_x: bool = False, rate: int | None = None) -> None:
    """Accuracy over 10..30 dB against `x`: the dense ladder as the baseline curve, each compressed model a marker;
    with `rate`, a model whose accelerator does not fit the part at that rate is drawn hollow and says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from train.plots import save_figure

    value = (lambda r: r[x]) if "." not in x else (lambda r: r[x.split(".")[0]][x.split(".")[1]])
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ladder = [r for r in rows if r["kind"] == "ladder"]
    ladder.sort(key=value)
    ax.plot([value(r) for r in ladder], [100 * r["accuracy_10_30db"] for r in ladder], "-o", color="0.3", lw=2,
            label="dense width ladder (same recipe)", zorder=2)
    no_fit = (lambda r: not r[f"at_{rate}"]["fits"]) if rate else (lambda r: False)
    for r in ladder:
        ax.annotate(r["widths"].split("x")[0] + (" (does not fit)" if no_fit(r) else ""),
                    (value(r), 100 * r["accuracy_10_30db"]), textcoords="offset points", xytext=(4, -10), fontsize=8,
                    color="0.3")
        if no_fit(r):
            ax.scatter(value(r), 100 * r["accuracy_10_30db"], s=90, facecolors="white", edgecolors="0.3", zorder=3)
    markers = "sD^vP*X"
    for i, r in enumerate(r for r in rows if r["kind"] == "compressed"):
        hollow = {"facecolors": "none", "edgecolors": f"C{i}", "linewidths": 1.5} if no_fit(r) else {"color": f"C{i}"}
        ax.scatter(value(r), 100 * r["accuracy_10_30db"], marker=markers[i % len(markers)], s=70, zorder=3,
                   label=f"{r['name']} ({r['widths']})" + (", does not fit" if no_fit(r) else ""), **hollow)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean test accuracy over 10..30 dB (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def plot_learning_curves(rows: list[dict], path: Path) -> None:
    """Per epoch, from each run's history: the ladder's training and validation accuracy (where each rung's
    plateau rule stopped it, its best epoch starred), and each compression run's validation accuracy against
    its floor with the fraction of weights it keeps (rollbacks drawn as open circles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from train.plots import save_figure

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(x for x in rows if x["kind"] == "ladder"):
        h, c = r["metrics"]["history"], colours[i % len(colours)]
        ep = [e["epoch"] for e in h]
        left.plot(ep, [100 * e["feedback_accuracy"] for e in h], "-", color=c, lw=1.8, label=f"{r['name']}: validation")
        left.plot(ep, [100 * e["train_accuracy"] for e in h], "--", color=c, lw=1, alpha=0.7)
        best = max(h, key=lambda e: e["feedback_accuracy"])
        left.plot(best["epoch"], 100 * best["feedback_accuracy"], "*", color=c, ms=12, mec="k")
    left.plot([], [], "--", color="0.4", lw=1, label="training (running mean of the epoch)")
    left.set_title("dense ladder: accuracy per epoch\n(star: best epoch, the rung's model)")
    comp = [x for x in rows if x["kind"] == "compressed"]
    twin = right.twinx() if comp else None
    for i, r in enumerate(comp):
        m, c = r["metrics"], colours[(i + 5) % len(colours)]
        h = m["history"]
        ep = [e["epoch"] for e in h]
        right.plot(ep, [100 * e["feedback_accuracy"] for e in h], "-o", color=c, ms=3, lw=1.5, label=f"{r['name']}")
        back = [e for e in h if "rollback" in e["action"]]
        right.plot([e["epoch"] for e in back], [100 * e["feedback_accuracy"] for e in back], "o", mfc="none",
                   mec=c, ms=9)
        twin.plot(ep, [100 * e["kept_fraction"] for e in h], ":", color=c, lw=1.2)
        right.axhline(100 * m["floor"], color=c, lw=0.8, ls="-.", alpha=0.6)
        kept = 1 / m["eta_measured"]  # the run's model: the last epoch at its kept fraction that met the floor
        final = [e for e in h if abs(e["kept_fraction"] - kept) < 1e-4 and e["feedback_accuracy"] >= m["floor"]]
        if final:
            right.plot(final[-1]["epoch"], 100 * final[-1]["feedback_accuracy"], "*", color=c, ms=12, mec="k")
    if twin is not None:
        twin.set_ylabel("weights kept (%, dotted)")
        twin.set_ylim(0, 105)
    right.set_title("compression from the 64-filter rung: validation accuracy\n(dash-dot: floor; star: the run's "
                    "model; open circle: a round rolled back)")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def results(models: Path, out: Path, work: Path, board: str, rates, data: str | None, check_frames: int,
            force: bool = False, log=print) -> list[dict]:
    """Estimate every shipped model and publish the table, JSON and plots as the directory `out`."""
    inputs = [models / "ladder", models / "compression", work, data]
    check_target(out, COMMAND, inputs, force)  # before any work; again under the lock, before publishing
    rows = ladder_rows(models) + compression_rows(models)
    if not rows:
        raise ValueError(f"{models}: no finished model (ladder/f*/metrics.json or compression/*/metrics.json)")
    with output_lock(out):
        check_target(out, COMMAND, inputs, force)
        return _results(rows, out, work, board, rates, data, check_frames, log, unfinished_runs(models))


def _results(rows, out: Path, work: Path, board: str, rates, data, check_frames: int, log,
             unfinished=()) -> list[dict]:
    from train.config import load_config

    from .compare import estimate, export_checked, slug

    quiet = lambda *_: None  # noqa: E731
    out_rows = []
    for row in rows:
        hw_dir = work / slug(row["name"])
        log(f"{row['name']}: export and FINN estimates -> {hw_dir}")
        src = data or load_config(Path(row["run_dir"]) / "config.json").data.path
        exp = export_checked(row["run_dir"], hw_dir / "export", src, check_frames, quiet)
        hw = {rate: estimate(exp, hw_dir / f"build-{rate}", board, quiet, target_fps=rate) for rate in rates}
        out_rows.append(row_figures(row, hw))
    against_ladder(out_rows, rates[-1])
    text = table(out_rows, board, rates, unfinished)
    tmp = work_dir(out)
    write_json(tmp / "results.json", {"board": board, "rates": list(rates), "rows": out_rows,
                                      "still_training": list(unfinished)})
    write_text(tmp / "results.md", text + "\n")
    plot(out_rows, tmp / "accuracy_vs_cost.png", "cost", "inference cost (ITU-ML5G-PS-007, qonnx; log)", log_x=True)
    plot(out_rows, tmp / "accuracy_vs_lut.png", f"at_{rates[-1]}.LUT",
         f"FINN estimated LUTs at {rates[-1]:,} frames/s on {board} (hollow: over 80% of a resource of the part)",
         rate=rates[-1])
    plot_learning_curves(rows, tmp / "learning_curves.png")
    publish(tmp, out, COMMAND)
    log(text)
    log(f"wrote {out}")
    return out_rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m build.results", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", help="the shipped models' directory (holds ladder/ and compression/)")
    p.add_argument("--out", default=None, help="directory the table and plots are published as (default: MODELS/results)")
    p.add_argument("--force", action="store_true", help="replace an existing --out written by this command")
    p.add_argument("--work", default="runs/results", help="cache of the exports and builds (default: %(default)s)")
    p.add_argument("--board", default="ZCU104", choices=sorted(BOARDS), help="target board (default: %(default)s)")
    p.add_argument("--data", default=None, help="RadioML-layout file for the export checks (default: each run's data.path)")
    p.add_argument("--check-frames", type=int, default=32, help="test frames each export check runs (default: %(default)s)")
    a = p.parse_args(argv)
    from export.finn_env import XilinxToolMissing
    from export.golden import ExportCheckFailed

    def work():
        if a.check_frames < 1:
            raise ValueError(f"--check-frames must be >= 1, got {a.check_frames}")
        models = Path(a.models)
        results(models, Path(a.out) if a.out else models / "results", Path(a.work), a.board, RATES, a.data,
                a.check_frames, a.force)

    return run_main(work, (ValueError, OSError, RuntimeError, XilinxToolMissing, ExportCheckFailed))


if __name__ == "__main__":
    sys.exit(main())
