"""The run plots read as described: a class x SNR heatmap, whole-step axes, a labelled floor, a readable eta axis."""
import numpy as np
import pytest

from radioml.classes import CLASSES, SNRS_DB
from train import plots


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions would write (their axes, before saving)."""
    caught = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: caught.append(fig))
    return caught


def _rounds(etas):
    return [{"prunes": i, "accuracy": 0.55 - 0.01 * i, "eta_measured": e, "cost": 0.26 / e} for i, e in enumerate(etas)]


def test_per_class_accuracy_is_one_heatmap_of_classes_by_snr(figures):
    m = {"accuracy_per_class_snr": {c: {str(s): (i + j) % 10 / 10 for j, s in enumerate(SNRS_DB)}
                                    for i, c in enumerate(CLASSES)}}
    plots.plot_class_accuracy_vs_snr(m, None)
    ax = figures[0].axes[0]
    assert len(ax.images) == 1 and ax.images[0].get_array().shape == (len(CLASSES), len(SNRS_DB))
    assert not ax.lines and [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)
    assert np.isclose(ax.images[0].get_array()[1, 2], 0.3)


@pytest.mark.parametrize("etas, scale", [([1, 1.25, 1.6, 2.3], "linear"), ([1, 4, 16, 64, 256], "log")])
def test_trajectory_has_whole_steps_a_labelled_floor_and_a_readable_eta_axis(figures, etas, scale):
    m = {"rounds": _rounds(etas), "floor": 0.531, "pruning_steps_kept": len(etas) - 1, "rollbacks": 2,
         "stop_reason": "p < p_min"}
    plots.plot_trajectory({"fmp": m}, None)
    fig = figures[0]
    cost, acc, eta = fig.axes[:3]
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in acc.get_xticks())
    assert any("floor 0.531" in t.get_text() for t in fig.legends[0].get_texts())
    assert eta.get_yscale() == scale
    labelled = [t.get_text() for t in eta.get_yticklabels() if t.get_text()]
    assert len(labelled) >= 3, labelled  # a log axis over 1..2.3 labels only "1"
