"""Golden-reference checks of every export stage on real frames.

Reference: the PyTorch (Brevitas) model; for a QONNX file given as the source (a model
this project did not build), the QONNX graph executed by qonnx. Compared on the same frames:
  qonnx           QONNX graph executed by qonnx (float input, input quantiser inside; not
                  a check when it is the reference)
  qcdq_ort        QCDQ graph in onnxruntime (ORT_ENABLE_BASIC: ALL fuses QDQ pairs into
                  integer kernels and changes results)
  finn/<step>     each saved FINN-side graph, executed by FINN on host-quantised integers

For each: max |logit difference| and top-1 agreement. For the FINN graphs also the
integer domain: every MultiThreshold output (activations as integers) must equal
the matching QONNX activation Quant output divided by its scale, bit for bit; the
first node that differs is named. A failure raises ExportCheckFailed naming the
first diverging stage and node, never a warning.

Rounding ties. Two correct float implementations may sum a layer in different orders,
so a pre-activation that sits exactly on a rounding boundary (x / scale = k + 0.5 to
within float32 noise) can round up in one and down in the other; FINN's thresholds
(x >= t) also round such a tie up where QONNX's Quant rounds it to even. QAT puts values
there on purpose: a latent value oscillates around its rounding boundary (Nagel et al.,
2022), e.g. the BatchNorm bias of a channel pruning has nearly emptied. So:
  * integers may differ by one at positions where the QONNX input is within float32 noise of a
    boundary (is_tie: TIE_STEPS, or 4 ulps of the value, which matters for 8-bit activations up to
    255), in the first layer of a frame where they differ; that frame's later layers
    are not compared (the flipped value propagates); anywhere else they must be equal;
  * a frame whose logits disagree is excused only if its QONNX activations hold a tie, and
    at most a third of the frames (one always) may be excused: a conversion bug changes the integers
    away from ties, or most frames, and still fails. The report counts excused frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radioml.golden_session import golden_session
from radioml.quant import InputQuant

from .runner import short_name, step_file
from .steps import FINN_STEPS, INPUT_LAYOUT, finn_settings, phases_of, to_layout


class ExportCheckFailed(RuntimeError):
    """An export stage disagrees with the golden reference."""


@dataclass
class StageResult:
    stage: str
    max_abs_diff: float
    top1_agreement: float
    integer_exact: bool | None = None  # None: no integer-domain comparison for this stage
    first_diverging_node: str | None = None
    detail: str = ""
    ok: bool = True
    tie_frames: int = 0  # frames whose logits disagree through an activation at a rounding tie (excused)
    excused: list = field(default_factory=list)  # their positions among the check frames

    def to_dict(self):
        return dict(vars(self))


@dataclass
class CheckReport:
    frames: int
    frame_indices: list
    stages: list = field(default_factory=list)
    reference_logits: np.ndarray | None = None  # what every stage was judged against

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.stages)

    def first_failure(self) -> StageResult | None:
        return next((s for s in self.stages if not s.ok), None)

    def agreeing_frame(self, logits: np.ndarray | None = None) -> int:
        """Position of the check frame FINN's own verification steps compare on: the first one no
        stage excused (every stage agrees on it without a rounding tie), preferring, given the
        golden `logits`, one without a logit of exactly 0. FINN's `verify_step` divides its mean
        relative error by machine epsilon where an expected value is 0, so a 0 that the graph
        computes as 4e-9 fails the check although it is within its element-wise tolerance."""
        excused = {i for s in self.stages for i in s.excused}
        agreeing = [i for i in range(self.frames) if i not in excused]
        if logits is not None:
            return next((i for i in agreeing if np.all(logits[i] != 0)), agreeing[0])
        return agreeing[0]


def _exec(model, x: np.ndarray, full: bool = False):
    from finn.core.onnx_exec import execute_onnx

    ctx = execute_onnx(model, {model.graph.input[0].name: x}, return_full_exec_context=full)
    return ctx if full else ctx[model.graph.output[0].name]


def _activation_quants(model, ctx):
    """(node name, input / scale, output / scale) of every activation Quant node, the input's first."""
    for n in model.graph.node:
        if n.op_type == "Quant" and model.get_initializer(n.input[0]) is None:
            scale = ctx[n.input[1]] if n.input[1] in ctx else model.get_initializer(n.input[1])
            yield n.name, ctx[n.input[0]] / scale, ctx[n.output[0]] / scale


def _activation_ints_qonnx(model, ctx) -> list[tuple[str, np.ndarray]]:
    """Integer activations of the QONNX graph: outputs of activation Quant nodes / scale, in order.

    The first activation quantiser (the input's) is skipped: the FINN graphs take its integers as input.
    """
    return [(name, ints) for name, _, ints in _activation_quants(model, ctx)][1:]


TIE_STEPS = 1e-5  # |x / scale - (k + 0.5)| below this is a rounding tie (float32 noise: ~1e-6 steps) ...
TIE_RELATIVE = 2.0 ** -21  # ... or below 4 float32 ulps of x / scale: 8-bit levels reach 255, one ulp 1.5e-5 there
MAX_TIE_FRAMES = 1 / 3  # most frames a stage may have excused by ties (one always may be: a 2-frame check)


def is_tie(v: np.ndarray) -> np.ndarray:
    """Where a quantiser input (in steps) sits on a rounding boundary k + 0.5, to within float32 noise."""
    return np.abs(v - np.floor(v) - 0.5) < np.maximum(TIE_STEPS, TIE_RELATIVE * np.abs(v))


def _activation_ties(model, ctx) -> list[np.ndarray]:
    """Per activation Quant (the input's first): where its input sits on a rounding boundary."""
    return [is_tie(v) for _, v, _ in _activation_quants(model, ctx)]


def _activation_ints_finn(model, ctx) -> list[tuple[str, np.ndarray]]:
    return [(n.name, ctx[n.output[0]]) for n in model.graph.node if n.op_type == "MultiThreshold"]


def _to_ncw(a: np.ndarray, ref_shape) -> np.ndarray:
    """Bring a FINN activation (N,C,W,1), (N,W,1,C) or (N,C) to the QONNX (N,C,W) / (N,C) shape."""
    if a.shape == tuple(ref_shape):
        return a
    if a.ndim == 4 and a.shape[-1] == 1:
        return a[..., 0]
    if a.ndim == 4 and a.shape[2] == 1:
        return np.transpose(a[:, :, 0, :], (0, 2, 1))
    return a.reshape(ref_shape)


def judge(stage: str, logits: np.ndarray, ref_logits: np.ndarray, tol: float, tie_frames=None,
          **kw) -> StageResult:
    """One stage against the reference logits (PyTorch's or the QONNX graph's): top-1 (logit ties forgiven), max |diff| and
    integer exactness; frames that disagree and hold an activation at a rounding tie (`tie_frames`, a boolean per
    frame) are excused, up to MAX_TIE_FRAMES."""
    scale = max(1.0, float(np.abs(ref_logits).max()))
    per_frame = np.abs(logits - ref_logits).max(1)
    top1 = _top1_agreement(logits, ref_logits, tol * scale)
    r, keep = _excuse(stage, top1, top1 & (per_frame <= tol * scale), tie_frames, **kw)
    r.max_abs_diff = float(per_frame[keep].max()) if keep.any() else 0.0
    problems = _problems(r, len(logits), "top-1 agrees")
    if r.max_abs_diff > tol * scale:
        problems.append(f"max |logit diff| {r.max_abs_diff:.3g} > {tol * scale:.3g}")
    if r.integer_exact is False:
        problems.append(f"integer activations differ first at {r.first_diverging_node}")
    return _verdict(r, problems)


def judge_classes(stage: str, indices: np.ndarray, ref_logits: np.ndarray, tol: float, tie_frames=None) -> StageResult:
    """A stage that outputs the top-1 class index (FINN's LabelSelect) against the reference logits: the index must be
    the reference's top class, or one whose reference logit ties it within tol (relative, as judge); frames that
    disagree and hold an activation at a rounding tie are excused, up to MAX_TIE_FRAMES."""
    scale = max(1.0, float(np.abs(ref_logits).max()))
    picked = ref_logits[np.arange(len(ref_logits)), np.asarray(indices).reshape(-1).astype(np.int64)]
    top1 = picked >= ref_logits.max(1) - tol * scale
    r, _ = _excuse(stage, top1, top1, tie_frames)
    return _verdict(r, _problems(r, len(indices), "the class index is the top-1 class"))


def _excuse(stage: str, top1: np.ndarray, agrees: np.ndarray, tie_frames, **kw) -> tuple[StageResult, np.ndarray]:
    """The stage's result (top-1 agreement over the frames kept) with the frames that do not agree and hold a
    rounding tie excused; (result, frames kept)."""
    ties = np.zeros(len(agrees), bool) if tie_frames is None else np.asarray(tie_frames, bool)
    excused = ties & ~agrees
    keep = ~excused
    agree = float(top1[keep].mean()) if keep.any() else 0.0
    return StageResult(stage, 0.0, agree, tie_frames=int(excused.sum()),
                       excused=[int(i) for i in np.flatnonzero(excused)], **kw), keep


def _problems(r: StageResult, n: int, agreement: str) -> list[str]:
    problems = []
    if r.tie_frames > max(1, MAX_TIE_FRAMES * n):
        problems.append(f"{r.tie_frames} of {n} frames disagree through rounding ties (more than {MAX_TIE_FRAMES:.0%})")
    if r.top1_agreement < 1.0:
        problems.append(f"{agreement} on {r.top1_agreement:.2%} of frames")
    return problems


def _verdict(r: StageResult, problems: list[str]) -> StageResult:
    r.ok = not problems
    r.detail = "; ".join(problems)
    return r


def qonnx_logits(path, frames: np.ndarray) -> np.ndarray:
    """The QONNX graph at `path` executed by qonnx, frame by frame (its batch is 1): the reference for a QONNX source."""
    from qonnx.core.modelwrapper import ModelWrapper

    finn_settings()
    q = ModelWrapper(str(path))
    return np.concatenate([_exec(q, f[None]) for f in frames]).reshape(len(frames), -1)


def run_checks(work_dir: Path, ref_logits: np.ndarray | None, frames: np.ndarray, indices, iq: InputQuant,
               tol: float = 1e-4, reference: str = "pytorch") -> CheckReport:
    """Compare every stage saved in `work_dir` with the reference logits of `frames` (N, 2, 1024): PyTorch's, or
    with reference "qonnx" the QONNX graph's, computed here in the same pass (pass None; its own stage is then not
    judged). The report carries the reference logits."""
    from qonnx.core.modelwrapper import ModelWrapper

    finn_settings()
    work_dir = Path(work_dir)
    rep = CheckReport(len(frames), [int(i) for i in indices])

    # QONNX, executed per frame, with the full context for the integer-domain reference
    q = ModelWrapper(str(work_dir / "model_qonnx.onnx"))
    q_ctx = [_exec(q, f[None], full=True) for f in frames]
    q_logits = np.concatenate([c[q.graph.output[0].name] for c in q_ctx])
    q_ties = [_activation_ties(q, c) for c in q_ctx]
    tie_frames = np.array([any(t.any() for t in ties) for ties in q_ties])
    if reference == "qonnx":
        ref_logits = q_logits.reshape(len(frames), -1)
    else:
        rep.stages.append(judge("qonnx", q_logits, ref_logits, tol, tie_frames))
    rep.reference_logits = ref_logits
    q_acts = [_activation_ints_qonnx(q, c) for c in q_ctx]

    sess = golden_session(work_dir / "model_qcdq.onnx")
    rep.stages.append(judge("qcdq_ort", sess.run(None, {sess.get_inputs()[0].name: frames})[0], ref_logits, tol,
                            tie_frames))

    ints = iq.quantize(frames)
    for i, step in enumerate(FINN_STEPS, start=1):  # the graphs the runner saved, read back
        name = short_name(step)
        m = ModelWrapper(str(work_dir / "steps" / step_file(i, step)))
        x = to_layout(ints, INPUT_LAYOUT[step], phases_of(m, INPUT_LAYOUT[step]))
        ctxs = [_exec(m, x[k:k + 1], full=True) for k in range(len(frames))]
        logits = np.concatenate([c[m.graph.output[0].name] for c in ctxs]).reshape(ref_logits.shape)
        exact, node = _compare_integers(q_acts, [_activation_ints_finn(m, c) for c in ctxs], q_ties)
        rep.stages.append(judge(f"finn/{name}", logits, ref_logits, tol, tie_frames, integer_exact=exact,
                                first_diverging_node=node))
    return rep


def _top1_agreement(logits: np.ndarray, ref: np.ndarray, tie: float) -> np.ndarray:
    """Per frame: the stage picks the reference's class, or one whose reference logit ties the
    reference's top logit within `tie`. A quantised network's integer accumulators can tie
    exactly; which of two equal logits argmax returns is then decided by rounding noise, and
    says nothing about the stage."""
    picked = ref[np.arange(len(ref)), logits.argmax(1)]
    return (logits.argmax(1) == ref.argmax(1)) | (picked >= ref.max(1) - tie)


def _compare_integers(q_acts, f_acts, q_ties=None) -> tuple[bool | None, str | None]:
    """Bit-exact comparison of activation integers, frame by frame, layer by layer. With `q_ties`
    (per frame, per activation Quant, the input's first: where the QONNX input sits on a rounding
    tie), a frame's values may differ by one at the tie positions of its first layer with a tie;
    later layers of that frame are not compared (the flipped value propagates), nor any layer
    of a frame whose input quantiser met a tie."""
    if not f_acts[0]:
        return None, None
    if len(f_acts[0]) != len(q_acts[0]):
        return False, f"{len(f_acts[0])} MultiThreshold nodes for {len(q_acts[0])} activation quantisers"
    done = [False if q_ties is None else bool(q_ties[f][0].any()) for f in range(len(q_acts))]
    for layer in range(len(q_acts[0])):
        for frame in range(len(q_acts)):
            if done[frame]:
                continue
            qname, qa = q_acts[frame][layer]
            fname, fa = f_acts[frame][layer]
            fa = _to_ncw(fa, qa.shape)
            tie = np.zeros(qa.shape, bool) if q_ties is None else q_ties[frame][layer + 1].reshape(qa.shape)
            differ = np.round(qa) != fa
            allowed = tie & (np.abs(np.round(qa) - fa) <= 1)
            if (differ & ~allowed).any() or not np.allclose(qa, np.round(qa), atol=1e-3):
                bad = int(np.sum(differ & ~allowed))
                return False, f"{fname} (QONNX {qname}; {bad} of {qa.size} values differ, frame {frame})"
            done[frame] = bool(tie.any())
    return True, None
