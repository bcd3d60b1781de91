"""frontier.json (one writer, one reader) and frontier.png: every kept step of a search, at the target rate.

A point is a model that held the floor: its feedback and test accuracy, the FINN-estimated
LUT, BRAM18 and DSP of the folding the build's search would choose at the target rate,
whether that folding reaches the rate, the highest rate within the utilisation cap, and
the model.pt `python -m export.to_finn --run` takes. `on_frontier` marks the points no
other point beats on both size and feedback accuracy, among those that reach the rate; size is
the LUTs, or with the max-utilisation objective the largest share of the part (`worst_share`).
Alternatives (another trained model, e.g. finn-examples' 32-filter topology) are scored the
same way on the same frames, and listed apart.
"""
from __future__ import annotations

import math
from pathlib import Path

from radioml.artifacts import need, read_artifact, write_artifact

FORMAT = "amc-frontier/1"
POINT_FIELDS = ("name", "model", "widths", "weight_bits", "act_bits", "feedback_accuracy", "test_accuracy", "lut",
                "bram_18k", "dsp", "meets_target", "fps", "max_fps", "fits")


def _acc(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 1


def check(body: dict, path) -> dict:
    for k in ("board", "target_fps", "util_cap", "floor", "points", "alternatives", "capacity_lut"):
        need(k in body, path, k, "missing")
    need(_acc(body["floor"]), path, "floor", "not in [0, 1]")
    for where in ("points", "alternatives"):
        need(isinstance(body[where], list), path, where, "not a list")
        for i, p in enumerate(body[where]):
            for k in POINT_FIELDS:
                need(k in p, path, f"{where}[{i}].{k}", "missing")
            for k in ("feedback_accuracy", "test_accuracy"):
                need(_acc(p[k]), path, f"{where}[{i}].{k}", f"{p[k]!r} is not in [0, 1]")
            need(isinstance(p["lut"], (int, float)) and p["lut"] >= 0, path, f"{where}[{i}].lut", "not a count")
            if size_key(body) != "lut":
                need(isinstance(p.get("worst_share"), (int, float)) and p["worst_share"] >= 0, path,
                     f"{where}[{i}].worst_share", "missing or not a share")
    return body


def size_key(body: dict) -> str:
    """The point field the search made small: lut, or worst_share (max-utilisation)."""
    return "worst_share" if body.get("fit", "lut") == "max-utilisation" else "lut"


def mark_frontier(points: list[dict], size: str = "lut") -> list[dict]:
    """Set on_frontier: reaches the rate, and no such point is smaller and has a higher feedback accuracy."""
    from build.compare import frontier

    on = {id(p) for p in frontier([p for p in points if p["meets_target"]], "feedback_accuracy", size)}
    for p in points:
        p["on_frontier"] = id(p) in on
    return points


def write_frontier(out: Path, body: dict) -> Path:
    mark_frontier(body["points"], size_key(body))
    return write_artifact(Path(out) / "frontier.json", FORMAT, check(body, Path(out) / "frontier.json"))


def read_frontier(out: Path) -> dict:
    path = Path(out) / "frontier.json"
    return check(read_artifact(path, FORMAT), path)


def table(body: dict) -> str:
    share = size_key(body) == "worst_share"
    head = ("point", "conv / dense widths", "w bits", "a bits", "feedback", "test", f"LUT @{body['target_fps']:,}/s",
            "BRAM18", "DSP") + (("largest share", "RTL layers") if share else ()) + \
        (f"max fps (<= {body['util_cap']:.0%})",)
    rows = [head]
    for p in body["points"] + body["alternatives"]:
        n = len(p["widths"]) - 2
        rows.append((p["name"] + (" *" if p.get("on_frontier") else ""),
                     (f"P{p['polyphase']}: " if p.get("polyphase", 1) > 1 else "")
                     + f"{','.join(map(str, p['widths'][:n]))} / {','.join(map(str, p['widths'][n:]))}",
                     "".join(map(str, p["weight_bits"])), "".join(map(str, p["act_bits"])),
                     f"{p['feedback_accuracy']:.4f}", f"{p['test_accuracy']:.4f}",
                     f"{p['lut']:,.0f}" + ("" if p["meets_target"] else f" (reaches {p['fps']:,.0f}/s)"),
                     f"{p['bram_18k']:,.0f}", f"{p['dsp']:,.0f}")
                    + ((f"{p['worst_share']:.1%}", str(p["rtl_layers"])) if share else ())
                    + (f"{p['max_fps']:,.0f}",))
    w = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(c).rjust(x) if i else str(c).ljust(x) for i, (c, x) in enumerate(zip(r, w)))  # noqa
    return "\n".join([f"frontier on {body['board']} at {body['target_fps']:,} frames/s (floor {body['floor']:.4f}; "
                      f"* on the frontier; part: {body['capacity_lut']:,} LUT; FINN's layer estimates as the folding "
                      f"sees them, before bit widths are minimised: a build reports a few % fewer LUTs, mostly in "
                      f"thresholds)", fmt(rows[0]),
                      fmt(["-" * x for x in w])] + [fmt(r) for r in rows[1:]])


def plot_frontier(body: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from train.plots import save_figure

    fig, ax = plt.subplots(figsize=(8, 4.8))
    pts = body["points"]
    share = size_key(body) == "worst_share"
    k = (lambda p: p["worst_share"] * 100) if share else (lambda p: p["lut"] / 1e3)  # noqa: E731
    ax.plot([k(p) for p in pts], [p["feedback_accuracy"] for p in pts], color="0.75", lw=1, zorder=1,
            label="search steps kept, in order")
    for met, style in ((True, dict(color="C0")), (False, dict(facecolors="none", edgecolors="C0"))):
        sel = [p for p in pts if p["meets_target"] == met]
        if sel:
            ax.scatter([k(p) for p in sel], [p["feedback_accuracy"] for p in sel], s=28, zorder=3, **style,
                       label="kept step" + ("" if met else f" (misses {body['target_fps']:,}/s)"))
    f = sorted((p for p in pts if p.get("on_frontier")), key=k)
    if f:
        ax.step([k(p) for p in f], [p["feedback_accuracy"] for p in f], where="post", color="C0", lw=2, zorder=2,
                label="frontier (" + ("smallest share of the part" if share else "fewest LUTs") + " for the accuracy)")
    for i, a in enumerate(body["alternatives"]):
        ax.scatter([k(a)], [a["feedback_accuracy"]], marker="D^sv"[i % 4], s=60, color=f"C{i + 1}", zorder=4,
                   label=f"{a['name']}" + ("" if a["meets_target"] else f" (reaches {a['fps']:,.0f}/s)"))
    ax.axhline(body["floor"], color="C3", ls=":", label=f"floor {body['floor']:.3f}")
    cap = 100.0 if share else body["capacity_lut"] / 1e3
    ax.axvline(cap, color="k", ls="--", lw=1, label=f"{body['board']}: " +
               ("the whole part" if share else f"{body['capacity_lut']:,} LUT"))
    ax.axvline(cap * body["util_cap"], color="k", ls=":", lw=1, label=f"{body['util_cap']:.0%} of the part")
    ax.set_xlabel(("largest FINN-estimated share of the part over LUT, BRAM18, DSP (%)" if share else
                   "FINN-estimated LUTs (thousands)") + f" at {body['target_fps']:,} frames/s, {body['board']}")
    ax.set_ylabel("feedback (validation) accuracy")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Hardware-aware compression: accuracy against accelerator size")
    save_figure(fig, path)
