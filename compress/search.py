"""The hardware-aware search: channels and bits together, driven by FINN's estimates at a fixed rate.

From a trained model and a target (board, frames/s, clock), each step (compress/schedule.py
decides, this module measures and trains):

  1. lists the last good model's moves (one group's channels, one layer's weight or
     activation bits), and gets FINN's estimate of every resulting configuration from the
     per-layer cache (compress/estimates.py; a few packed conversions fill it);
  2. measures each move's hardware saving at the target rate, and its accuracy cost on
     `probe_frames` feedback frames right after the move; the schedule picks one;
  3. fine-tunes the moved model (distillation from the start model, compress/finetune.py)
     for up to `epochs_per_step` epochs; it is kept as soon as the feedback accuracy meets the
     floor, otherwise rolled back.

Hardware: the LUTs of the folding the build's search chooses at the target rate, or with
--fit max-utilisation the largest share of the part over LUT, BRAM18 and DSP of the build's
--impl search (each layer's HLS or RTL implementation is then a free move, taken by the solver
at every step). A configuration that cannot reach the rate at all is charged that figure times
the factor by which it falls short (cycles of its slowest layer / target cycles), and while the
last good model misses the rate only the moves that raise the rate it reaches are taken (when
there are any): the search first removes what holds the rate back.

Everything is written to OUT as it happens: search.json (the schedule's state and the
points, after each step, atomically), points/NN/model.pt (each kept model),
frontier.json/png, the estimate cache. A killed search rerun with the same command goes on
from its last finished step: seeds depend on (seed, step), and the kept model is reloaded
from its model.pt in both cases, so the resumed frontier equals an uninterrupted one.

The units of work (train.executor) are each candidate's probe accuracy and the chosen move's
fine-tuning: here one after another (--executor local), or as Ray tasks (ray). They read the last
kept model.pt and the data file and write nothing; the estimates and every file stay with the search.
"""
from __future__ import annotations

import copy
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from radioml.artifacts import ArtifactError, need, read_artifact, write_artifact
from radioml.atomic import write_text
from train.executor import Unit, connect, run_units

from .config import NON_SEMANTIC, SearchConfig, absent_defaults, validate
from .estimates import LayerEstimates, Shape
from .moves import Move, apply_move
from .schedule import FeedbackSearch

STATE_FORMAT = "amc-hw-search/1"
OWN_BEFORE_STATE = {"layer_estimates.json", "points"}  # what a search writes before its first search.json
log = logging.getLogger("compress")


_DATA: dict = {}  # this process's open data files: opening one scans every label (a Ray worker runs many units)
_MODEL: dict = {}  # the last model a unit of this process read: every probe of a step starts from it


def _dataset(path: str):
    from radioml.dataset import RadioMLFile

    if path not in _DATA:
        _DATA[path] = RadioMLFile(path)
    return _DATA[path]


def _close_dataset(path: str) -> None:
    ds = _DATA.pop(path, None)
    if ds is not None:
        ds.close()


def _last_good(path: str):
    """(model, ModelConfig) of a kept model.pt; reread only when the file changed. apply_move leaves it as it was."""
    from train.saved_model import load_model

    st = Path(path).stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _MODEL:
        _MODEL.clear()
        _MODEL[key] = load_model(path)[:2]
    return _MODEL[key]


def probe_accuracy(model_path: str, move: Move, data: str, probe: np.ndarray, threads: int) -> float:
    """A unit: the accuracy on the probe frames right after `move`, before any fine-tuning."""
    from .finetune import accuracy

    if threads > 0:  # the serial run's thread count: the same sums, the same accuracy
        torch.set_num_threads(threads)
    model, mcfg = _last_good(model_path)
    moved, _ = apply_move(model, mcfg, move)
    return accuracy(moved, _dataset(data), probe)


def finetune_move(model_path: str, move: Move, cfg: SearchConfig, k: int, floor: float) -> tuple[dict, object, list]:
    """A unit: step k's move fine-tuned with distillation until the feedback accuracy meets `floor` (at most
    cfg.epochs_per_step epochs); (its state dict, its ModelConfig, the feedback accuracy after each epoch).
    Seeded by (seed, k) alone: a task retried after its worker died repeats it exactly."""
    from train.saved_model import load_model

    from .finetune import accuracy, epoch_frames, train_epoch

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    ds = _dataset(cfg.data)
    split = ds.split(None, cfg.val_fraction)
    teacher, _, _ = load_model(cfg.start)
    for p in teacher.parameters():
        p.requires_grad_(False)
    torch.manual_seed(cfg.seed * 100_003 + k)
    model, mcfg = apply_move(*_last_good(model_path), move)
    opt, accs = None, []
    for e in range(cfg.epochs_per_step):
        frames = epoch_frames(split.train, cfg.train_subset, cfg.seed, k, e)
        opt, _ = train_epoch(model, teacher, ds, frames, lr=cfg.lr, batch_size=cfg.batch_size,
                             kd_weight=cfg.kd_weight, kd_temperature=cfg.kd_temperature, seed=cfg.seed * 1000 + k,
                             epoch_key=e, optimizer=opt, desc=f"step {k} epoch {e + 1}",
                             planned_epochs=cfg.epochs_per_step)
        accs.append(accuracy(model, ds, split.val))
        if accs[-1] >= floor:
            break
    return model.state_dict(), mcfg, accs


def _check_state(body: dict, path) -> dict:
    for k in ("config", "schedule", "points", "last_good", "history", "floor", "start_feedback_accuracy"):
        need(k in body, path, k, "missing")
    return body


class Search:
    """One search's live objects; `run` steps it to the end."""

    def __init__(self, cfg: SearchConfig, log_fn=None):
        from build.boards import board
        from train.saved_model import load_model

        self.cfg = validate(cfg)
        self.say = log_fn or log.info
        self.out = Path(cfg.out)
        self.board = board(cfg.board)
        self.clock_ns = cfg.clock_ns or self.board.clock_ns
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.start_model, self.start_cfg, _ = load_model(cfg.start)
        self.ds = _dataset(cfg.data)  # shared with the units run in this process
        split = self.ds.split(None, cfg.val_fraction)
        self.feedback, self.test = split.val, split.test
        pick = np.linspace(0, len(self.feedback) - 1, min(cfg.probe_frames, len(self.feedback))).round().astype(int)
        self.probe = self.feedback[np.unique(pick)]
        self.est = None  # opened once the search's own settings are checked (open)

    # ---- measurements -------------------------------------------------------------------
    def hardware(self, shape: Shape) -> dict:
        r = self.est.at_rate(shape, self.cfg.target_fps, self.clock_ns)
        size = r["LUT"] if self.cfg.fit == "lut" else r["worst"]
        r["objective"] = size * max(1.0, self.cfg.target_fps / r["fps"])
        return r

    def accuracy(self, model, idx) -> float:
        from .finetune import accuracy

        return accuracy(model, self.ds, idx)

    def _run(self, units: list) -> list:
        return run_units(units, self.cfg.executor, self.cfg.ray_address)

    def _unit(self, name: str, fn, *args) -> Unit:
        return Unit(name, fn, args, cpus=max(1, self.cfg.threads))  # the units compute on CPUs (finetune.py)

    def point(self, name: str, model, mcfg, model_path: str, feedback: float | None = None) -> dict:
        shape = Shape.of(mcfg)
        hw = self.hardware(shape)
        res = self.board.resources()
        fits = all(hw[k] <= self.cfg.util_cap * res[k] for k in ("LUT", "BRAM_18K", "DSP"))
        return {"name": name, "model": model_path, "widths": list(shape.widths), "weight_bits": list(shape.weight_bits),
                "act_bits": list(shape.act_bits), "input_bits": shape.input_bits, "polyphase": shape.polyphase,
                "feedback_accuracy": feedback if feedback is not None else self.accuracy(model, self.feedback),
                "test_accuracy": self.accuracy(model, self.test), "lut": hw["LUT"], "bram_18k": hw["BRAM_18K"],
                "dsp": hw["DSP"], "meets_target": hw["meets"], "fps": hw["fps"], "objective": hw["objective"],
                "worst_share": hw["worst"], "rtl_layers": hw["rtl_layers"],
                "max_fps": self.est.max_fps(shape, self.clock_ns, self.cfg.util_cap), "fits": fits}

    # ---- state ----------------------------------------------------------------------------
    def _save_point(self, k: int, model, mcfg) -> str:
        from train.saved_model import save_model

        path = self.out / "points" / f"{k:02d}" / "model.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, mcfg, {"model": mcfg.to_dict(), "search": self.cfg.to_dict()}, path)
        return str(path)

    def _write_state(self) -> None:
        write_artifact(self.out / "search.json", STATE_FORMAT, self.state)

    def _write_frontier(self) -> None:
        from .frontier import plot_frontier, table, write_frontier

        body = {"board": self.board.name, "part": self.board.part, "clock_ns": self.clock_ns,
                "target_fps": self.cfg.target_fps, "util_cap": self.cfg.util_cap, "floor": self.state["floor"],
                "capacity_lut": self.board.lut, "start": self.cfg.start, "data": self.cfg.data, "fit": self.cfg.fit,
                "points": copy.deepcopy(self.state["points"]), "alternatives": self.state.get("alternatives", []),
                "done": self.schedule.done, "stop_reason": self.schedule.stop_reason}
        write_frontier(self.out, body)
        plot_frontier(body, self.out / "frontier.png")
        write_text(self.out / "frontier.txt", table(body) + "\n")

    def open(self) -> None:
        """Resume OUT's search, or start one (the start model scored as point 00)."""
        from train.saved_model import load_model

        self.schedule = FeedbackSearch(len(Shape.of(self.start_cfg).widths), self.cfg.p0, self.cfg.divisor,
                                       self.cfg.p_min, self.cfg.min_weight_bits, self.cfg.min_act_bits,
                                       self.cfg.max_steps, self.cfg.accuracy_eps)
        path = self.out / "search.json"
        if path.exists():
            try:
                self.state = _check_state(read_artifact(path, STATE_FORMAT), path)
            except ArtifactError as e:
                raise ValueError(str(e)) from None
            from train.config import semantic_diff

            diff = semantic_diff(self.state["config"], self.cfg.to_dict(), defaults=absent_defaults())
            diff = [d for d in diff if d not in NON_SEMANTIC]
            if diff:
                raise ValueError(f"{path}: a search with other settings (differs in {', '.join(diff)}); pass another "
                                 f"--out")
            self._open_estimates()
            self.schedule.load_state_dict(self.state["schedule"])
            self.schedule.max_steps = self.cfg.max_steps  # a larger budget continues a search that spent its own
            if self.schedule.stop_reason.startswith("reached max_steps") and self.schedule.steps < self.cfg.max_steps:
                self.schedule.done, self.schedule.stop_reason = False, ""
            self.model, self.mcfg, _ = load_model(self.state["last_good"])
            self.say(f"resumed {path}: {len(self.state['points'])} points, {self.schedule.steps} moves tried")
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self._open_estimates()
        self.model, self.mcfg = copy.deepcopy(self.start_model), self.start_cfg
        start_acc = self.accuracy(self.model, self.feedback)
        floor = self.cfg.floor if self.cfg.floor is not None else self.cfg.floor_relative * start_acc
        model_path = self._save_point(0, self.model, self.mcfg)
        self.state = {"config": self.cfg.to_dict(), "floor": floor, "start_feedback_accuracy": start_acc,
                      "points": [], "history": [], "last_good": model_path, "schedule": {}, "alternatives": []}
        self.state["points"].append(self.point("start", self.model, self.mcfg, model_path, start_acc))
        self.say(f"start {self.cfg.start}: feedback accuracy {start_acc:.4f} on {len(self.feedback):,} frames, "
                 f"floor {floor:.4f}; {self._hw_text(self.state['points'][0])}")
        self._commit()

    def _open_estimates(self) -> None:
        """The per-layer estimate cache (read now: a cache for the other objective is refused in one line)."""
        cfg = self.cfg
        self.est = LayerEstimates(self.board, self.start_cfg, cfg.estimate_cache or self.out / "layer_estimates.json",
                                  log=self.say, workers=cfg.estimate_workers, fit=cfg.fit)

    def _commit(self) -> None:
        self.state["schedule"] = self.schedule.state_dict()
        self._write_state()
        self._write_frontier()

    def _hw_text(self, p: dict) -> str:
        rate = "" if p["meets_target"] else f" (reaches only {p['fps']:,.0f} frames/s)"
        if self.cfg.fit == "lut":
            return f"{p['lut']:,.0f} LUT at {self.cfg.target_fps:,} frames/s{rate}"
        return (f"{p['worst_share']:.1%} of the part at most ({p['lut']:,.0f} LUT, {p['bram_18k']:,.0f} BRAM18, "
                f"{p['dsp']:,.0f} DSP; {p['rtl_layers']} layers RTL) at {self.cfg.target_fps:,} frames/s{rate}")

    def _saving_text(self, saving: float) -> str:
        return (f"{saving:,.0f} LUT-equivalents" if self.cfg.fit == "lut" else
                f"{saving * 100:.2f} points of the part's largest share")

    # ---- one step -------------------------------------------------------------------------
    def measure(self) -> list[tuple[Move, float, float]]:
        shape = Shape.of(self.mcfg)
        base_hw = self.hardware(shape)
        # the front end is a move only while the rate is out of reach: below one sample a clock it adds nothing
        # a standard design lacks, and its candidate shapes would cost a FINN conversion every step
        moves = self.schedule.moves(shape, 1 if base_hw["meets"] else self.cfg.max_polyphase)
        self.est.fill(shape, [m.change() for m in moves])
        base = base_hw["objective"]
        base_acc = self.accuracy(self.model, self.probe)
        after = [self.hardware(m.shape_after(shape)) for m in moves]
        savings = [base - h["objective"] for h in after]
        faster = [h["fps"] > base_hw["fps"] * (1 + 1e-9) for h in after]
        if not base_hw["meets"] and any(faster):  # what holds the rate back goes first: while the rate is missed,
            savings = [s if f else 0.0 for s, f in zip(savings, faster)]  # only the moves that raise it are taken
        probed = [i for i, saving in enumerate(savings) if saving > 0]  # a move that saves nothing is not taken
        k = self.schedule.steps + 1
        accs = dict(zip(probed, self._run([self._unit(f"step {k} probe {i}", probe_accuracy, self.state["last_good"],
                                                      moves[i], self.cfg.data, self.probe, self.cfg.threads)
                                           for i in probed])))
        return [(m, saving, base_acc - accs[i] if i in accs else 0.0)
                for i, (m, saving) in enumerate(zip(moves, savings))]

    def step(self) -> bool:
        """One move tried (kept or rolled back); False once the search is done."""
        from train.saved_model import load_model, model_from_state

        t0 = time.perf_counter()
        k = self.schedule.steps + 1
        shape = Shape.of(self.mcfg)
        measured = self.measure()
        move = self.schedule.pick(measured)
        if move is None:
            self.say(f"search done: {self.schedule.stop_reason}")
            self._commit()
            return False
        saving, drop = next((s, d) for m, s, d in measured if m == move)
        self.say(f"step {k}: {move.label(shape)} (saves {self._saving_text(saving)}, costs {drop:+.4f} probe "
                 f"accuracy before fine-tuning; {len(measured)} moves measured)")
        state, mcfg, accs = self._run([self._unit(f"step {k} fine-tune", finetune_move, self.state["last_good"], move,
                                                  self.cfg, k, self.state["floor"])])[0]
        kept = accs[-1] >= self.state["floor"]
        rec = {"step": k, "move": move.to_dict(), "label": move.label(shape), "saving": saving, "probe_drop": drop,
               "feedback": accs, "kept": kept, "seconds": round(time.perf_counter() - t0, 1)}
        if kept:
            self.schedule.kept(move)
            path = self._save_point(len(self.state["points"]), model_from_state(mcfg, state), mcfg)
            self.model, self.mcfg, _ = load_model(path)  # the same model a resumed search continues from
            self.state["last_good"] = path
            p = self.point(f"step {k}", self.model, self.mcfg, path, accs[-1])
            self.state["points"].append(p)
            self.say(f"  kept: feedback {accs[-1]:.4f} >= floor {self.state['floor']:.4f} after {len(accs)} epoch(s); "
                     f"{self._hw_text(p)}; test {p['test_accuracy']:.4f}")
        else:
            self.schedule.failed(move, shape)
            self.say(f"  rolled back: feedback {max(accs):.4f} < floor {self.state['floor']:.4f} after {len(accs)} "
                     f"epoch(s)")
        self.state["history"].append(rec)
        self._commit()
        return not self.schedule.done

    def score_alternatives(self) -> None:
        from train.saved_model import load_model

        have = {a["model"] for a in self.state.get("alternatives", [])}
        for path in self.cfg.alternatives or ():
            if path in have:
                continue
            model, mcfg, _ = load_model(path)
            name = f"{'x'.join(map(str, sorted(set(mcfg.convs))))}-filter dense ({Path(path).parent.name})"
            p = self.point(name, model, mcfg, str(path))
            self.state.setdefault("alternatives", []).append(p)
            self.say(f"alternative {path}: feedback {p['feedback_accuracy']:.4f}, {self._hw_text(p)}")
        self._commit()

    def run(self) -> dict:
        try:
            self.open()
            self.score_alternatives()
            while not self.schedule.done and self.step():
                pass
        finally:
            if self.est is not None:
                self.est.close()
            _close_dataset(self.cfg.data)
            _MODEL.clear()
        from .frontier import read_frontier, table

        body = read_frontier(self.out)
        self.say(table(body))
        return body


def refuse_foreign_out(out: Path) -> None:
    """A search writes only into a new directory, or one a search wrote (it has search.json, or only what a
    search writes before that): never among someone else's files."""
    if not out.is_dir() or (out / "search.json").exists():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OWN_BEFORE_STATE and not p.name.startswith("."))
    if foreign:
        raise ValueError(f"{out}: holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''} and no "
                         f"search.json: not a search directory; pass a new or empty --out")


def check_inputs(cfg: SearchConfig) -> None:
    """What the flags, the board and the data file say together, before --out is touched."""
    from build.boards import board
    from radioml.dataset import RadioMLFile

    validate(cfg)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("compress under torchrun: every rank would run the same search into the same --out; run it "
                         "once (its fine-tunes are single-process; --executor ray spreads its units over a cluster)")
    clock_ns = cfg.clock_ns or board(cfg.board).clock_ns
    if int(1e9 / clock_ns / cfg.target_fps) < 1:
        raise ValueError(f"--target-fps {cfg.target_fps:,}: more than one frame per {clock_ns:g} ns clock cycle")
    with RadioMLFile(cfg.data) as ds:
        feedback = len(ds.split(None, cfg.val_fraction).val)
    if cfg.probe_frames > feedback:
        raise ValueError(f"--probe-frames {cfg.probe_frames:,}: {cfg.data} has {feedback:,} feedback frames at "
                         f"--val-fraction {cfg.val_fraction}")
    refuse_foreign_out(Path(cfg.out))


def search(cfg: SearchConfig, log_fn=None) -> dict:
    """Run (or resume) the search in cfg.out; a second process on the same directory is refused."""
    from radioml.publish import dir_lock

    check_inputs(cfg)
    connect(cfg.executor, cfg.ray_address)  # before --out is touched: Ray there and its cluster reachable
    with dir_lock(Path(cfg.out), "--out"):
        return Search(cfg, log_fn).run()
