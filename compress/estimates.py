"""FINN's estimates of a VGG10 configuration, per layer, computed once and cached.

The folding search of the build (build/folding.py) picks, for each folding unit of the
specialised dataflow graph, its cheapest legal setting within the target cycles, from
FINN's own per-node cycle and resource estimates. Before FINN minimises bit widths those
estimates depend only on a unit's shapes, datatypes and folding, never on the weights'
values (tests/test_hw_search.py checks a trained and a fresh model give the same figures).
So a unit's candidate list is a function of its weight layer's *signature*

    (layer index, input channels, output channels, input bits, weight bits, output bits)

(the padding and window generator before a layer's MVAU read its inputs; the pool after
it reads its outputs; the final layer owns the output scale and bias). A configuration's
estimate at any rate is the build's own `choose` over the cached units of its ten
signatures: no conversion at all once they are known.

With `impl_search` (the max-utilisation objective) the graph has standalone thresholds and each
unit's options are those of the build's --impl search: every MVAU and thresholding layer HLS or
RTL, an HLS MVAU's weights in BRAM or LUTRAM (build.folding.impl_candidates); a thresholding
layer belongs to the weight layer that feeds it.

Filling the cache converts a freshly initialised model of a configuration through the
export's FINN steps and the build's conversion, partition and specialisation (a few
seconds, no checks: the values do not matter) and stores every layer's units. Moves that
change disjoint sets of layers are packed into one configuration (`fill`): one
conversion serves several candidates, and the conversions of one fill run in parallel processes
(`workers`; FINN's graph transformations are single-threaded Python). The cache is a JSON file, keyed by FPGA
part, typed and digested like every stage file (radioml/artifacts.py): an edited or corrupt figure is refused, never
used to steer a search.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from radioml.artifacts import ArtifactError, need, read_artifact, write_artifact
from radioml.classes import CLASSES

CACHE_FORMAT = "amc-layer-estimates/2"


@dataclass(frozen=True)
class Shape:
    """What FINN's estimates of a VGG10 depend on: widths of the 9 hidden groups, bits."""

    widths: tuple  # 7 conv blocks, then 2 hidden dense layers
    weight_bits: tuple  # 10 weight layers
    act_bits: tuple  # 9 activations (after each hidden group)
    input_bits: int
    polyphase: int = 1  # the front end (train/model.py): it changes the first blocks' lengths and pools

    @classmethod
    def of(cls, mcfg) -> "Shape":
        return cls(tuple(mcfg.convs) + tuple(mcfg.denses), tuple(mcfg.weight_bits_each), tuple(mcfg.act_bits_each),
                   mcfg.input_bits, mcfg.polyphase)

    def model_config(self, like):
        """The ModelConfig of this shape (range and block count from `like`)."""
        import dataclasses

        n = like.conv_blocks
        return dataclasses.replace(like, conv_widths=self.widths[:n], dense_widths=self.widths[n:],
                                   layer_weight_bits=self.weight_bits, layer_act_bits=self.act_bits,
                                   input_bits=self.input_bits, polyphase=self.polyphase)

    def signature(self, k: int) -> str:
        """Weight layer k's key: index, in/out channels, in/weight/out bits (and a polyphase front end's P)."""
        cin = 2 * self.polyphase if k == 0 else self.widths[k - 1]
        cout = self.widths[k] if k < len(self.widths) else len(CLASSES)
        bin_ = self.input_bits if k == 0 else self.act_bits[k - 1]
        bout = self.act_bits[k] if k < len(self.act_bits) else 0
        front = f"P{self.polyphase}:" if self.polyphase > 1 else ""
        return f"{front}L{k}:{cin}>{cout}:i{bin_}w{self.weight_bits[k]}a{bout}"

    def signatures(self) -> list[str]:
        return [self.signature(k) for k in range(len(self.weight_bits))]

    def with_change(self, field: str, index: int, value: int) -> "Shape":
        if field == "polyphase":
            return Shape(**{**self.__dict__, field: value})
        vals = list(getattr(self, field))
        vals[index] = value
        return Shape(**{**self.__dict__, field: tuple(vals)})

    def touched(self, field: str, index: int) -> set[int]:
        """Weight layers whose signature a change of widths[i] / act_bits[i] / weight_bits[i] / the front end moves."""
        if field == "polyphase":
            return set(range(len(self.weight_bits)))
        return {index} if field == "weight_bits" else {index, index + 1}


def hw_graph(mcfg, board, seed: int = 0, impl_search: bool = False):
    """The specialised dataflow graph of a freshly initialised model of `mcfg`, as the build has it
    before folding (the export's FINN steps, then the build's conversion, partition, specialisation); with
    `impl_search` (plain graph, {"hls": graph, "rtl": graph}) as the build's --impl search has them."""
    import torch

    from export.finn_env import prepare
    from radioml.classes import FRAME_LENGTH
    from train.model import build_vgg10

    prepare()
    torch.manual_seed(seed)
    model = build_vgg10(mcfg).train()
    with torch.no_grad():  # activation scales from a few batches: any values do, the estimates ignore them
        for _ in range(4):
            model(torch.randn(8, 2, FRAME_LENGTH) * 0.7)
    model.eval()
    logging.disable(logging.WARNING)  # FINN logs its conversion notes once per candidate shape
    try:
        return _convert(model, board, impl_search)
    finally:
        logging.disable(logging.NOTSET)


def _convert(model, board, impl_search: bool = False):
    """The build's whole FINN flow up to specialisation (export/runner.py), in a scratch directory, unverified."""
    from qonnx.transformation.general import GiveUniqueNodeNames

    from build.config import BuildConfig
    from build.flow import FINN_FLOW, graph_ctx, impl_variants
    from export import steps
    from export.runner import run

    with tempfile.TemporaryDirectory(prefix="amc-estimate-") as tmp, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):  # FINN's conversion notes, once per candidate shape
        ctx = graph_ctx(BuildConfig(export_dir=tmp, board=board.name, fit="lut", impl="finn",
                                     standalone_thresholds=impl_search), Path(tmp))
        g = steps.step_integer_input(steps.step_export_qonnx(model, ctx), ctx)
        if not impl_search:
            return run(g, FINN_FLOW, ctx, stop="step_specialize")
        plain = run(g, FINN_FLOW, ctx, stop="step_partition").transform(GiveUniqueNodeNames())
        return plain, impl_variants(plain, ctx)


def units_by_layer(model, part: str, n_layers: int) -> list[list]:
    """The build's folding candidates of a specialised graph (or hw_graph's impl_search pair), grouped by
    weight layer: [[ [unit name, [[setting, cycles, LUT, BRAM18, DSP(, impl)], ...]], ... ] per layer]."""
    from build.folding import candidates, impl_candidates

    cands_by_unit = impl_candidates(model[0], model[1], part, memories=True) if isinstance(model, tuple) else \
        candidates(model, part)
    out = [[] for _ in range(n_layers)]
    mvaus = 0
    for name, cands in cands_by_unit.items():
        nodes = name.split("+")
        if any(n.startswith("MVAU") for n in nodes):
            layer = mvaus
            mvaus += 1
        elif any(n.startswith("Thresholding") for n in nodes):  # standalone: the activation of the layer before
            layer = mvaus - 1
        elif len(nodes) == 2:  # a pool's window generator and the pool: the previous layer's outputs
            layer = mvaus - 1
        else:  # padding and window generator of the next layer, or the output scale/bias after the last
            layer = min(mvaus, n_layers - 1)
        out[layer].append([name, [list(c) for c in cands]])
    if mvaus != n_layers:
        raise RuntimeError(f"expected {n_layers} matrix-vector layers in the dataflow graph, found {mvaus}")
    return out


def _candidate_ok(c) -> bool:
    """[setting, cycles, LUT, BRAM18, DSP] or, from an impl search, [..., {node: "hls" | "rtl"}]."""
    if not (isinstance(c, list) and len(c) in (5, 6) and isinstance(c[1], int) and c[1] >= 1):
        return False
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in c[2:5]):
        return False
    return len(c) == 5 or (isinstance(c[5], dict) and all(v in ("hls", "rtl") for v in c[5].values()))


def read_cache(path: Path, part: str, impl_search: bool = False) -> dict:
    """The layers of an estimate cache for `part` (and the impl search or not), verified: digest, then every
    candidate's figures."""
    try:
        body = read_artifact(path, CACHE_FORMAT)
    except ArtifactError as e:
        raise ArtifactError(f"{e}; pass another --estimate-cache") from None
    need(body.get("part") == part, path, "part", f"{body.get('part')!r}, not {part}; pass another --estimate-cache")
    need(bool(body.get("impl_search", False)) == impl_search, path, "impl_search",
         f"{body.get('impl_search', False)!r}: estimates for the {'LUT' if impl_search else 'max-utilisation'} "
         f"objective; pass another --estimate-cache")
    layers = body.get("layers")
    need(isinstance(layers, dict), path, "layers", "not an object")
    for sig, units in layers.items():
        for unit in units if isinstance(units, list) else [None]:
            ok = isinstance(unit, list) and len(unit) == 2 and isinstance(unit[0], str) and isinstance(unit[1], list)
            need(ok and unit[1], path, f"layers.{sig}", "not a list of [unit name, candidates]")
            for c in unit[1]:
                need(_candidate_ok(c) and (len(c) == 6) == impl_search, path, f"layers.{sig}.{unit[0]}",
                     f"{c!r} is not [setting, cycles, LUT, BRAM18, DSP{', impl' if impl_search else ''}]")
    return layers


def _one_thread() -> None:
    """A conversion worker's torch uses one thread: the workers already share the cores."""
    import torch

    torch.set_num_threads(1)


def layer_units(mcfg, board, n_layers: int, impl_search: bool = False) -> list[list]:
    """units_by_layer of a fresh model of `mcfg` (one conversion; what a worker process returns)."""
    return units_by_layer(hw_graph(mcfg, board, impl_search=impl_search), board.part, n_layers)


class LayerEstimates:
    """Per-layer folding candidates by signature, on one part, persisted in a JSON file (optional).

    `workers`: processes that convert at once (0: one per CPU core; 1: in this process only); `fit`: the
    build's folding objective (build.folding.OBJECTIVES), max-utilisation with the --impl search's options."""

    def __init__(self, board, like, path: str | Path | None = None, log=lambda *_: None, workers: int = 1,
                 fit: str = "lut"):
        from build.folding import OBJECTIVES

        if fit not in OBJECTIVES:
            raise ValueError(f"unknown folding objective {fit!r}; known: {', '.join(OBJECTIVES)}")
        self.board, self.like, self.log, self.fit = board, like, log, fit
        self.impl_search = fit == "max-utilisation"
        self.path = Path(path) if path else None
        self.layers: dict[str, list] = {}
        self.conversions = 0
        self.workers = workers or len(os.sched_getaffinity(0)) or 1
        self._pool = None
        if self.path and self.path.is_file():
            self.layers = read_cache(self.path, board.part, self.impl_search)

    def missing(self, shape: Shape) -> list[str]:
        return [s for s in shape.signatures() if s not in self.layers]

    def _store(self, shape: Shape, units: list[list]) -> None:
        for sig, u in zip(shape.signatures(), units):
            self.layers[sig] = u
        self.conversions += 1
        self.save()

    def convert(self, shape: Shape) -> None:
        """One conversion of `shape`, every layer stored."""
        self._store(shape, layer_units(shape.model_config(self.like), self.board, len(shape.weight_bits),
                                       self.impl_search))

    def convert_all(self, shapes: list[Shape]) -> None:
        """Convert `shapes`, up to `workers` at once (spawned processes: FINN and torch are not fork-safe);
        each result is stored (and saved) as it arrives, so an interrupted fill keeps what it finished."""
        if self.workers <= 1 or len(shapes) <= 1:
            for shape in shapes:
                self.convert(shape)
            return
        import concurrent.futures as cf
        import multiprocessing

        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_one_thread)
        jobs = {self._pool.submit(layer_units, s.model_config(self.like), self.board, len(s.weight_bits),
                                  self.impl_search): s for s in shapes}
        stored = set()
        try:
            for job in cf.as_completed(jobs):
                self._store(jobs[job], job.result())
                stored.add(job)
        except BaseException:
            for job in jobs:  # keep what finished, then drop the pool (a dead worker breaks it for good)
                if job not in stored and job.done() and not job.cancelled() and job.exception() is None:
                    self._store(jobs[job], job.result())
            self.close()
            raise

    def close(self) -> None:
        """Stop the worker processes (if any were started)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def save(self) -> None:
        if self.path:
            write_artifact(self.path, CACHE_FORMAT, {"part": self.board.part, "layers": self.layers,
                                                     **({"impl_search": True} if self.impl_search else {})})

    def fill(self, base: Shape, changes: list[tuple[str, int, int]]) -> None:
        """Make every signature of `base` with one of `changes` (field, index, value) applied known,
        packing changes that touch disjoint layers into one conversion each."""
        if self.missing(base):
            self.convert(base)
        wanted = [c for c in changes if self.missing(base.with_change(*c))]
        todo, planned = list(wanted), set()
        shapes = []
        while todo:
            shape, used, rest = base, set(), []
            for field, i, v in todo:
                t = base.touched(field, i)
                if t & used:
                    rest.append((field, i, v))
                    continue
                shape, used = shape.with_change(field, i, v), used | t
            shapes.append(shape)
            planned.update(shape.signatures())
            todo = [c for c in rest if set(self.missing(base.with_change(*c))) - planned]
        if not shapes:
            return
        self.log(f"  FINN estimates of {len(wanted)} candidate layer shapes ({len(shapes)} conversions, "
                 f"{min(self.workers, len(shapes))} at a time)")
        self.convert_all(shapes)
        if any(self.missing(base.with_change(*c)) for c in wanted):
            raise RuntimeError(f"converting {len(shapes)} packed shapes did not give the layer signatures they were "
                               f"packed for")

    def candidates(self, shape: Shape) -> dict[str, list[tuple]]:
        """The build's folding candidates of the whole configuration, as build.folding.candidates gives them (with
        the max-utilisation objective, build.folding.impl_candidates)."""
        if self.missing(shape):
            self.convert(shape)
        out = {}
        for k, sig in enumerate(shape.signatures()):
            for name, cands in self.layers[sig]:
                out[f"L{k}/{name}"] = [tuple(c) for c in cands]
        return out

    def _pick(self):
        from build.folding import chooser

        return chooser(self.fit, self.board.resources())

    def at_rate(self, shape: Shape, fps: float, clock_ns: float) -> dict:
        """LUT, BRAM18, DSP of the folding the build's search chooses for `fps`, whether it meets it, its largest
        share of the part ("worst") and, with the impl search, how many layers it makes RTL."""
        from build.folding import totals

        cycles = int(1e9 / clock_ns / fps)
        choices = self._pick()(self.candidates(shape), cycles)
        t = totals(choices)
        res = self.board.resources()
        return {**t, "meets": all(c.meets for c in choices), "target_cycles": cycles,
                "fps": 1e9 / clock_ns / max(c.cycles for c in choices),
                "worst": max(t[k] / res[k] for k in t if res.get(k)),
                "rtl_layers": sum(style == "rtl" for c in choices for style in c.impl.values())}

    def max_fps(self, shape: Shape, clock_ns: float, util_cap: float) -> float:
        """The highest frames/s whose chosen folding fits util_cap of the part (0 when none fits)."""
        from build.folding import max_rate

        res = self.board.resources()
        try:
            cycles, _ = max_rate(self.candidates(shape), {k: util_cap * res[k] for k in ("LUT", "BRAM_18K", "DSP")},
                                 self._pick())
        except ValueError:
            return 0.0
        return 1e9 / clock_ns / cycles
