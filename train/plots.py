"""PNG figures of a run, like the FMP paper's Figs. 2-4, and the pruning trajectory."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter  # noqa: E402
import numpy as np  # noqa: E402

from radioml.atomic import atomic_path  # noqa: E402


def save_figure(fig, path: Path) -> None:
    """Write `fig` as a PNG at `path` atomically (a reader never sees half a file) and free it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_confusion(m: dict, path: Path):
    conf = np.array(m["confusion"], float)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9, 8))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(m["classes"])), m["classes"], rotation=90)
    ax.set_yticks(range(len(m["classes"])), m["classes"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix, all SNRs (accuracy {m['accuracy']:.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    save_figure(fig, path)


def plot_accuracy_vs_snr(m: dict, path: Path):
    snr = [int(s) for s in m["accuracy_per_snr"]]
    acc = list(m["accuracy_per_snr"].values())
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(snr, acc, "o-")
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"Accuracy vs SNR ({m.get('strategy', '')}, overall {m['accuracy']:.3f})")
    save_figure(fig, path)


def plot_class_accuracy_vs_snr(m: dict, path: Path):
    """A class x SNR heatmap: 24 lines in one axis reuse colours and cannot be told apart."""
    classes = list(m["accuracy_per_class_snr"])
    snrs = sorted({int(s) for per in m["accuracy_per_class_snr"].values() for s in per})
    grid = np.full((len(classes), len(snrs)), np.nan)
    for i, cls in enumerate(classes):
        for s, v in m["accuracy_per_class_snr"][cls].items():
            grid[i, snrs.index(int(s))] = v
    fig, ax = plt.subplots(figsize=(11, 7.5))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(snrs)), [str(s) for s in snrs])
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(snrs)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j] * 100:.0f}", ha="center", va="center", fontsize=5.5,
                        color="white" if grid[i, j] < 0.6 else "black")
    ax.set_xlabel("SNR (dB)")
    ax.set_title("Accuracy per modulation and SNR (%, test split)")
    fig.colorbar(im, ax=ax, fraction=0.03, label="accuracy")
    save_figure(fig, path)


STYLES = [("o", "-", 7), ("s", "--", 5), ("D", "-.", 5), ("^", ":", 6), ("v", (0, (5, 1)), 6), ("P", "-", 5)]


def plot_trajectory(runs: dict, path: Path):
    """Cost, accuracy and eta of each model that met the floor, by pruning step; one line per strategy.

    Strategies share their first steps (same start, same seed), so each gets its own marker and
    line style, drawn larger-first, and a star marks the model each one ended with; the legend
    gives its rollbacks and why it stopped."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for i, (name, m) in enumerate(runs.items()):
        r = m.get("rounds", [])
        if not r:
            continue
        marker, ls, size = STYLES[i % len(STYLES)]
        color = plt.get_cmap("tab10")(i % 10)
        final = next((rec for rec in reversed(r) if rec["prunes"] == m.get("pruning_steps_kept")), r[-1])
        label = f"{name} ({m.get('rollbacks', 0)} rollbacks; {m.get('stop_reason') or 'stopped'})"
        x = [rec["prunes"] for rec in r]
        series = [(axes[1], "accuracy"), (axes[2], "eta_measured")]
        if "cost" in r[0]:
            series.insert(0, (axes[0], "cost"))
        for ax, key in series:
            ax.plot(x, [rec[key] for rec in r], marker=marker, ls=ls, ms=size, color=color, alpha=0.85,
                    label=label if key == "accuracy" else None)
            ax.plot([final["prunes"]], [final[key]], marker="*", ms=14, color=color, mec="k", ls="none")
        if m.get("floor") is not None:
            axes[1].axhline(m["floor"], color=color, ls=":", lw=1, label=f"{name}: floor {m['floor']:.3f}")
    etas = [rec["eta_measured"] for m in runs.values() for rec in m.get("rounds", [])]
    if etas and max(etas) > 20:  # log only where eta spans decades; a log axis over 1..3 has one labelled tick
        axes[2].set_yscale("log")
        axes[2].yaxis.set_major_formatter(ScalarFormatter())  # 10, 100 rather than 10^1, 10^2
        axes[2].yaxis.set_minor_formatter(NullFormatter())
    for ax, t in zip(axes, ("challenge cost", "feedback accuracy (star: final model)", "eta (weights / kept weights)")):
        ax.set_xlabel("pruning steps in the model")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole
        ax.set_title(t)
        ax.grid(alpha=0.3)
    if axes[1].get_legend_handles_labels()[0]:
        fig.legend(*axes[1].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8,
                   bbox_to_anchor=(0.5, -0.12))
    save_figure(fig, path)


def plot_run(m: dict, run_dir: Path):
    run_dir = Path(run_dir)
    plot_confusion(m, run_dir / "confusion.png")
    plot_accuracy_vs_snr(m, run_dir / "accuracy_vs_snr.png")
    plot_class_accuracy_vs_snr(m, run_dir / "accuracy_per_class_vs_snr.png")
    name = m.get("strategy", "run")
    if m.get("structure", "unstructured") != "unstructured":
        name = f"{name}-{m['structure']}"
    plot_trajectory({name: m}, run_dir / "trajectory.png")
