"""FMP (Algorithm 2) and IMP (Algorithm 1) on scripted accuracy sequences."""
import pytest

from train.schedulers import FMP, IMP, NoPruning

FLOOR = 0.56
HI, LO = 0.60, 0.50


def drive(s, accs):
    return [(a.kind, round(a.amount, 6), a.met_floor) for a in map(s.step, accs)]


def test_fmp_p_trajectory_rollbacks_and_stop():
    s = FMP(FLOOR, epochs_per_round=3)
    # round at p=0.2: floor met at epoch 2 -> prune 0.2 (save first), counter resets
    assert drive(s, [LO, HI]) == [("keep", 0, False), ("prune", 0.2, True)]
    assert s.epoch_in_round == 0 and s.p == 0.2
    # next round fails for 3 epochs -> p = 0.1 and roll back to the model saved above
    assert drive(s, [LO, LO, LO]) == [("keep", 0, False), ("keep", 0, False), ("rollback", 0, False)]
    assert s.p == pytest.approx(0.1) and s.epoch_in_round == 0
    # the reloaded model meets the floor again -> prune by the new p
    assert drive(s, [HI]) == [("prune", 0.1, True)]
    # fails again: counter had reset, so 3 more epochs -> p = 0.05 (still >= p_min) -> roll back
    assert drive(s, [LO, LO, LO])[-1] == ("rollback", 0, False)
    assert s.p == pytest.approx(0.05)
    assert drive(s, [HI, LO, HI]) == [("prune", 0.05, True), ("keep", 0, False), ("prune", 0.05, True)]
    # p = 0.025 < 0.05 -> stop; the final model is the last one that met the floor
    last = drive(s, [LO, LO, LO])[-1]
    assert last[0] == "stop" and s.p == pytest.approx(0.025) and s.done
    assert s.prunes == 4
    with pytest.raises(RuntimeError):
        s.step(HI)


def test_fmp_counter_resets_on_every_prune():
    s = FMP(FLOOR, epochs_per_round=2)
    kinds = [a[0] for a in drive(s, [LO, HI, LO, HI, LO, HI])]
    assert kinds == ["keep", "prune", "keep", "prune", "keep", "prune"]  # never 2 misses in a row
    assert s.p == 0.2


def test_fmp_without_a_good_model_decays_but_cannot_roll_back():
    s = FMP(FLOOR, epochs_per_round=1)
    a = s.step(LO)
    assert a.kind == "keep" and s.p == pytest.approx(0.1) and not s.has_good
    s.step(LO)
    assert s.step(LO).kind == "stop"


def test_fmp_state_round_trip():
    s = FMP(FLOOR, 3, p0=0.3, divisor=3, p_min=0.02)
    drive(s, [HI, LO, LO, LO])
    t = FMP(FLOOR, 3)
    t.load_state_dict(s.state_dict())
    assert vars(t) == vars(s)
    assert drive(t, [HI]) == drive(s, [HI])


def test_imp_with_accuracy_criterion():
    s = IMP(FLOOR, epochs_per_round=3)
    assert drive(s, [LO, HI, HI, LO, LO, HI]) == [
        ("keep", 0, False), ("prune", 0.2, True), ("prune", 0.2, True),
        ("keep", 0, False), ("keep", 0, False), ("prune", 0.2, True)]
    last = drive(s, [LO, LO, LO])
    assert last[-1][0] == "stop" and s.p == 0.2  # p never changes, no rollback
    assert s.prunes == 3


def test_imp_to_convergence_decides_at_round_end_only():
    s = IMP(FLOOR, epochs_per_round=3, converge=True)
    assert [a[0] for a in drive(s, [HI, HI, HI])] == ["keep", "keep", "prune"]
    assert [a[0] for a in drive(s, [HI, HI, LO])] == ["keep", "keep", "stop"]


def test_max_rounds_stops_after_saving():
    s = IMP(FLOOR, 5, max_rounds=2)
    acts = drive(s, [HI, HI, HI])
    assert [a[0] for a in acts] == ["prune", "prune", "stop"] and acts[-1][2]


def test_no_pruning_runs_its_epochs():
    s = NoPruning(FLOOR, 3)
    acts = [s.step(x) for x in (LO, HI, LO)]
    assert [a.kind for a in acts] == ["keep", "keep", "stop"] and acts[-1].final == "current"


def test_no_pruning_with_patience_stops_at_the_plateau_and_keeps_the_best():
    s = NoPruning(FLOOR, 10, patience=2)
    acts = [s.step(x) for x in (0.3, 0.5, 0.45, 0.5)]
    assert [a.kind for a in acts] == ["keep", "keep", "keep", "stop"]
    assert [a.met_floor for a in acts] == [True, True, False, False]  # the loop snapshots each improvement
    assert acts[-1].final == "last_good" and "plateau" in acts[-1].reason and s.best == 0.5


def test_no_pruning_with_patience_ends_with_its_epochs():
    s = NoPruning(FLOOR, 3, patience=5)
    acts = [s.step(x) for x in (0.3, 0.4, 0.5)]
    assert [a.kind for a in acts] == ["keep", "keep", "stop"] and acts[-1].met_floor and acts[-1].final == "last_good"
