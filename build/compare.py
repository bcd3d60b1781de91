"""`python -m build.compare RUNS`: FINN estimates for every model of a `python -m train.compare` run.

For each row of RUNS/compare.json (dense start, IMP, FMP, FMP-filters, hybrid, the
dense reference topology): export the run's model (`export.to_finn`, every check),
then two estimate builds on the board, each with the build's default fit (every layer HLS
or RTL, the largest share of the part over LUT, BRAM18 and DSP minimal): folded for one
common --target-fps (LUT, BRAM18, DSP and the largest share at the same rate), and
--max-fps (the highest frames/s whose folding fits --util-cap of the part). Unstructured
sparsity leaves the accelerator
as large as the dense one (FINN stores and multiplies every zero); only fewer
channels (or bits) shrink it, which is what the table shows.

Writes RUNS/hardware/<row>/{export,build-target,build-max}, RUNS/hardware.json,
RUNS/hardware.txt and RUNS/accuracy_vs_lut.png (test accuracy against LUTs at the
common target, the accuracy/LUT frontier drawn). An export is reused only if it holds the
same model (the digest of its tensors) checked on the same data and frames, a build only if
its recorded inputs (board, clock, rate or cap, folding, the export's graph) are this run's:
an interrupted run resumes, a retrained model or another --board is redone.

With --executor ray each row (its export and both builds) is a Ray task of one CPU (the stage
computes on CPUs), writing only RUNS/hardware/<row>; a task retried after its worker died reuses
what the dead one finished. The table, JSON and plot are written here, in the rows' order.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from radioml.atomic import write_json, write_text
from radioml.cli import run_main
from train.executor import Unit, add_executor_flags, connect, run_units

from .boards import BOARDS
from .config import BuildConfig, fraction


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def _reusable_export(out: Path, model_digest: str, data: str, check_frames: int) -> bool:
    """An earlier export of the same model's tensors, checked on the same data and number of frames."""
    from radioml.artifacts import ArtifactError

    from .flow import check_export_dir

    try:
        io = check_export_dir(out)
    except (ArtifactError, ValueError):
        return False
    return (io.model_digest, io.data, io.check_frames) == (model_digest, str(data), check_frames)


def export_checked(run_dir: str, out: Path, data: str, check_frames: int, log) -> Path:
    """`run_dir`'s model exported to `out` with every check (an earlier export of the same tensors is reused)."""
    from export.config import ExportConfig
    from export.to_finn import export
    from train.saved_model import load_model, tensor_digest

    model, _, _ = load_model(run_dir)
    if _reusable_export(out, tensor_digest(model.state_dict()), data, check_frames):
        return out
    return export(ExportConfig(run=run_dir, out=str(out), data=data, check_frames=check_frames, force=True), log=log)


def estimate(export_dir: Path, out: Path, board: str, log, **kw) -> dict:
    """The build of `export_dir` with these settings: reused only if its recorded inputs are the same."""
    from radioml.artifacts import ArtifactError

    from .flow import build
    from .report import BuildReport, build_inputs

    cfg = BuildConfig(export_dir=str(export_dir), out=str(out), board=board, force=True, **kw)
    try:
        old = BuildReport.read(out)
    except ArtifactError:
        old = None
    if old is None or old["inputs"] != build_inputs(cfg):
        build(cfg, log=log)
    return BuildReport.read(out).body


def hardware_row(row: dict, metrics: dict, at_target: dict, at_max: dict) -> dict:
    r = at_target["resources"]
    return {
        "strategy": row["strategy"], "widths": row["widths"], "accuracy": metrics["accuracy"],
        "cost": row["cost"], "weights_kept": metrics["weights_kept"],
        "lut": r["LUT"], "bram_18k": r["BRAM_18K"], "dsp": r["DSP"], "share": max(at_target["utilisation"].values()),
        "target_fps": at_target["target_fps"], "meets_target": at_target["meets_target"],
        "fits_at_target": at_target["fits"], "max_fps": at_max["estimated_fps"],
        "lut_at_max": at_max["resources"]["LUT"], "lut_util_at_max": at_max["utilisation"]["LUT"],
        "folded_verified": all(b["folded_verification"]["ok"] for b in (at_target, at_max)),
        "verified_frames": min(b["folded_verification"]["frames"] for b in (at_target, at_max)),
    }


def table(rows: list[dict], board: str, target_fps: int, util_cap: float) -> str:
    head = ("strategy", "conv / dense widths", "test acc", "cost", "weights", f"LUT @{target_fps:,}/s",
            "BRAM18", "DSP", "largest share", f"max frames/s (<= {util_cap:.0%})", "LUT @max", "folded graph")
    lines = [head]
    for r in rows:
        lines.append((r["strategy"], r["widths"], f"{r['accuracy']:.4f}", f"{r['cost']:.4f}", f"{r['weights_kept']:,}",
                      f"{r['lut']:,.0f}" + ("" if r["meets_target"] else " (target not met)"),
                      f"{r['bram_18k']:,.0f}", f"{r['dsp']:,.0f}", f"{r['share']:.1%}", f"{r['max_fps']:,.0f}",
                      f"{r['lut_at_max']:,.0f}",
                      f"bit-exact ({r['verified_frames']} frames)" if r["folded_verified"] else "DIVERGES"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    fmt = lambda line: "  ".join(str(c).rjust(w) for c, w in zip(line, widths))  # noqa: E731
    return "\n".join([f"FINN estimates on {board}"] + [fmt(lines[0]), fmt(["-" * w for w in widths])]
                     + [fmt(x) for x in lines[1:]])


def frontier(rows: list[dict], accuracy: str = "accuracy", size: str = "lut") -> list[dict]:
    """Rows no other row beats on both `size` (LUTs, or another figure: smaller) and `accuracy` (higher), by size."""
    best, out = -1.0, []
    for r in sorted(rows, key=lambda r: (r[size], -r[accuracy])):
        if r[accuracy] > best:
            out.append(r)
            best = r[accuracy]
    return out


def plot_accuracy_vs_lut(rows: list[dict], path: Path, board: str, target_fps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from train.plots import save_figure

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    markers = "osD^vP*X"
    for i, r in enumerate(rows):
        ax.scatter(r["lut"] / 1e3, r["accuracy"], marker=markers[i % len(markers)], s=60, zorder=3,
                   label=f"{r['strategy']} ({r['widths']})")
    f = frontier(rows)
    ax.plot([r["lut"] / 1e3 for r in f], [r["accuracy"] for r in f], color="0.2", lw=2.5, alpha=0.35, zorder=2,
            marker="o", ms=16, mfc="none", label=f"frontier: {len(f)} of {len(rows)} models (fewer LUTs, higher "
                                                f"accuracy)")
    part = BOARDS[board]
    ax.axvline(part.lut / 1e3, color="k", ls="--", lw=1, label=f"{board}: {part.lut:,} LUT")
    ax.axvline(0.8 * part.lut / 1e3, color="k", ls=":", lw=1, label="80% of the part")
    ax.set_xlim(left=0)
    ax.set_xlabel(f"estimated LUTs (thousands) at {target_fps:,} frames/s on {board}")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title("Accuracy against accelerator size")
    save_figure(fig, path)


def hardware_unit(row: dict, runs: Path, board: str, target_fps: int, util_cap: float, data: str | None,
                  check_frames: int, log=None) -> dict:
    """One row of compare.json exported and estimated (at the target, at max) into its own directory; its
    hardware_row. A unit of work (train.executor): a rerun reuses a finished export and builds."""
    from train.config import load_config
    from train.results import read_metrics

    quiet = lambda *_: None  # noqa: E731
    run_dir = Path(row["run_dir"])
    metrics = read_metrics(run_dir)
    cfg = load_config(run_dir / "config.json")
    hw = runs / "hardware" / slug(row["strategy"])
    (log or quiet)(f"{row['strategy']}: export and FINN estimates -> {hw}")
    exp = export_checked(str(run_dir), hw / "export", data or cfg.data.path, check_frames, quiet)
    at_target = estimate(exp, hw / "build-target", board, quiet, target_fps=target_fps)
    at_max = estimate(exp, hw / "build-max", board, quiet, max_fps=True, util_cap=util_cap)
    return hardware_row(row, metrics, at_target, at_max)


def compare_hardware(runs: Path, board: str, target_fps: int, util_cap: float, data: str | None = None,
                     check_frames: int = 32, log=print, executor: str = "local", address: str | None = None
                     ) -> list[dict]:
    """Export and estimate every row of runs/compare.json; write the table, JSON and plot."""
    from train.results import read_compare

    runs = Path(runs)
    if check_frames < 1:
        raise ValueError(f"--check-frames must be >= 1, got {check_frames}")
    if target_fps < 1:
        raise ValueError(f"--target-fps must be >= 1, got {target_fps}")
    cmp_ = read_compare(runs)
    connect(executor, address)  # before any work: Ray there and its cluster reachable
    here = {"log": log} if executor == "local" else {}  # a Ray worker's output goes nowhere
    units = [Unit(slug(row["strategy"]), hardware_unit, (row, runs, board, target_fps, util_cap, data, check_frames),
                  kwargs=here) for row in cmp_["rows"]]
    rows = run_units(units, executor, address)
    text = table(rows, board, target_fps, util_cap)
    write_json(runs / "hardware.json", {"board": board, "target_fps": target_fps, "util_cap": util_cap, "rows": rows})
    write_text(runs / "hardware.txt", text + "\n")
    plot_accuracy_vs_lut(rows, runs / "accuracy_vs_lut.png", board, target_fps)
    log(text)
    return rows


def main(argv=None) -> int:
    d = BuildConfig()
    p = argparse.ArgumentParser(prog="python -m build.compare", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", help="output directory of python -m train.compare (holds compare.json)")
    p.add_argument("--board", default=d.board, choices=sorted(BOARDS), help="target board (default: %(default)s)")
    p.add_argument("--target-fps", type=int, default=d.target_fps,
                   help="the common frame rate every model is folded for (default: %(default)s)")
    p.add_argument("--util-cap", type=fraction, default=d.util_cap,
                   help="max-fps builds: fraction of the part's LUT, BRAM18 and DSP the layers may use (default: %(default)s)")
    p.add_argument("--data", default=None, help="RadioML-layout file for the export checks (default: each run's data.path)")
    p.add_argument("--check-frames", type=int, default=32, help="test frames each export check runs (default: %(default)s)")
    add_executor_flags(p)
    a = p.parse_args(argv)
    from export.finn_env import XilinxToolMissing
    from export.golden import ExportCheckFailed

    return run_main(lambda: compare_hardware(Path(a.runs), a.board, a.target_fps, a.util_cap, a.data,
                                             a.check_frames, executor=a.executor, address=a.ray_address) and None,
                    (ValueError, OSError, RuntimeError, XilinxToolMissing, ExportCheckFailed))


if __name__ == "__main__":
    sys.exit(main())
