"""The golden checks' rounding-tie rule (export/golden.py): flips only at ties, and never many."""
import numpy as np

from export.golden import MAX_TIE_FRAMES, _compare_integers, is_tie, judge


def acts(*layers):
    return [(f"Quant_{i}", np.asarray(a, dtype=np.float32)[None]) for i, a in enumerate(layers)]


def finn(*layers):
    return [(f"MultiThreshold_{i}", np.asarray(a, dtype=np.float32)[None]) for i, a in enumerate(layers)]


def ties(*layers):
    return [np.asarray(t, bool)[None] for t in layers]


NO_TIE = [False, False, False]


def test_integers_may_flip_by_one_only_where_the_input_sits_on_a_tie():
    q = [acts([1, 2, 3], [4, 5, 6])]
    tie_at_1 = [ties(NO_TIE, [False, True, False], NO_TIE)]  # input quantiser first
    assert _compare_integers(q, [finn([1, 3, 3], [4, 5, 6])], tie_at_1) == (True, None)
    ok, where = _compare_integers(q, [finn([2, 2, 3], [4, 5, 6])], tie_at_1)  # a flip away from the tie
    assert not ok and "MultiThreshold_0" in where and "1 of 3" in where
    ok, _ = _compare_integers(q, [finn([1, 4, 3], [4, 5, 6])], tie_at_1)  # two steps is no tie flip
    assert not ok
    ok, _ = _compare_integers(q, [finn([1, 3, 3], [4, 5, 6])], [ties(NO_TIE, NO_TIE, NO_TIE)])
    assert not ok  # without the tie the same flip fails


def test_a_flipped_frame_is_not_compared_in_later_layers_but_other_frames_are():
    q = [acts([1, 2, 3], [4, 5, 6]), acts([1, 2, 3], [4, 5, 6])]
    t = [ties(NO_TIE, [False, True, False], NO_TIE), ties(NO_TIE, NO_TIE, NO_TIE)]
    propagated = finn([1, 3, 3], [0, 9, 6])  # the flip moved the next layer anywhere
    assert _compare_integers(q, [propagated, finn([1, 2, 3], [4, 5, 6])], t) == (True, None)
    ok, where = _compare_integers(q, [propagated, finn([1, 2, 3], [4, 5, 7])], t)
    assert not ok and "MultiThreshold_1" in where and "frame 1" in where


def test_disagreeing_frames_are_excused_only_with_a_tie_and_only_a_few():
    ref = np.tile(np.eye(4, dtype=np.float32)[:2], (4, 1))  # 8 frames, classes 0 and 1
    bad = ref.copy()
    bad[0] = [0, 1, 0, 0]  # frame 0 picks another class
    with_tie = np.zeros(8, bool)
    with_tie[0] = True
    r = judge("s", bad, ref, 1e-4, with_tie)
    assert r.ok and r.tie_frames == 1 and r.top1_agreement == 1.0 and r.max_abs_diff == 0.0
    r = judge("s", bad, ref, 1e-4, np.zeros(8, bool))
    assert not r.ok and "top-1 agrees on 87.50%" in r.detail
    many = ref.copy()
    n = int(MAX_TIE_FRAMES * 8) + 1
    many[:n] = ref[:n] + 0.5
    r = judge("s", many, ref, 1e-4, np.ones(8, bool))
    assert not r.ok and f"{n} of 8 frames disagree through rounding ties" in r.detail
    assert judge("s", ref.copy(), ref, 1e-4, np.ones(8, bool)).tie_frames == 0  # agreeing frames need no excuse
    two = np.eye(4, dtype=np.float32)[[0, 1]]  # a 2-frame check may excuse its one tied frame, not both
    assert judge("s", two[[1, 1]], two, 1e-4, np.array([True, False])).ok
    assert not judge("s", two[[1, 0]], two, 1e-4, np.array([True, True])).ok


def test_finn_verifies_on_a_frame_no_stage_excused():
    from export.golden import CheckReport, StageResult

    rep = CheckReport(5, [10, 11, 12, 13, 14], [StageResult("a", 0, 1, excused=[0, 1]), StageResult("b", 0, 1, excused=[2])])
    assert rep.agreeing_frame() == 3
    logits = np.ones((5, 24), np.float32)
    logits[3, 7] = 0.0  # FINN's mean relative error divides by eps there: a computed 4e-9 would fail it
    assert rep.agreeing_frame(logits) == 4
    logits[4, 0] = 0.0
    assert rep.agreeing_frame(logits) == 3  # no frame without a 0: still one every stage agrees on


def test_a_tie_is_within_float32_noise_of_the_boundary_at_any_magnitude():
    """An 8-bit activation near 151.5 (the sandbox model's first layer): float32's spacing there is 1.5e-5,
    so 151.49998 is the exact tie 151.5 computed in another order; 151.4999 and 3.49998 are not ties."""
    v = np.array([151.49998, 151.5, 38.5, 3.4999995, 151.4999, 3.49998, 2.5001], dtype=np.float32)
    assert is_tie(v).tolist() == [True, True, True, True, False, False, False]
