"""Subgroup and leave-one-source-out figures draw exactly the numbers they are given."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlib.core.classes import CLASSES
from cxrlib.evaluation.subgroups import subgroup_analysis
from cxrlib.audit.loso import LosoResult
from cxrlib.viz.subgroups import (FLAG_COLOUR, loso_figure, subgroup_forest_figure,
                                  subgroup_recall_heatmap)


@pytest.fixture(scope="module")
def analysis():
    rng = np.random.default_rng(1)
    n = 150
    labels = rng.integers(0, 3, n)
    site = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    pred = np.where((site == "c") & (rng.random(n) < 0.7), (labels + 1) % 3, labels)
    frame = pd.DataFrame({"label": np.array(CLASSES)[labels], "site": site,
                          "patient_id": [f"p{i}" for i in range(n)]})
    for j, c in enumerate(CLASSES):
        frame[f"p_{c}"] = (pred == j).astype(float)
    return subgroup_analysis(frame, CLASSES, ["site"], n_boot=300)


def test_forest_plot_shows_accuracy_and_ci(analysis):
    fig = subgroup_forest_figure(analysis.table, analysis.overall["accuracy"])
    trace = fig.data[0]
    t = analysis.table
    np.testing.assert_allclose(trace.x, t["accuracy"])
    np.testing.assert_allclose(np.asarray(trace.x) + trace.error_x.array, t["ci_high"])
    np.testing.assert_allclose(np.asarray(trace.x) - trace.error_x.arrayminus, t["ci_low"])
    assert trace.y[0].startswith("site = c") and t["flagged"].iloc[0]
    assert trace.marker.color[0] == FLAG_COLOUR and FLAG_COLOUR not in trace.marker.color[1:]
    assert fig.layout.shapes[0].x0 == pytest.approx(analysis.overall["accuracy"])


def test_recall_heatmap_cells(analysis):
    fig = subgroup_recall_heatmap(analysis.table, CLASSES)
    z = np.asarray(fig.data[0].z, dtype=float)
    expected = analysis.table[[f"recall_{c}" for c in CLASSES]].astype(float).to_numpy()
    np.testing.assert_allclose(z, expected)
    assert list(fig.data[0].x) == list(CLASSES)


def test_loso_figure_bars_and_lines():
    table = pd.DataFrame({"source": ["x", "y"], "n": [10, 20], "classes": ["Normal (10)", "a; b"],
                          "single_class": [True, False], "held_out_accuracy": [0.2, 0.9],
                          "in_distribution_accuracy": [0.95, 0.9]})
    plain = LosoResult(table, 0.55, 0.67, 0.93)
    adv = LosoResult(table.assign(held_out_accuracy=[0.3, 0.8]), 0.55, 0.63, 0.93, adversarial=0.3)
    fig = loso_figure(plain, adv)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [list(b.y) for b in bars] == [[0.2, 0.9], [0.3, 0.8]]
    assert bars[0].x[0] == "x<br>(one class)"
    lines = {t.name: set(t.y) for t in fig.data if t.type == "scatter" and t.mode == "lines"}
    assert lines == {"expected at an unseen source: 55.0%": {0.55}, "test split: 93.0%": {0.93}}


def test_small_subgroups_are_marked_and_two_runs_share_order_and_scale():
    """Issue 26: a subgroup under 5 patients is marked († and a hollow marker); two runs' forest
    plots can be drawn in one order on one x scale."""
    import pandas as pd

    from cxrlib.viz.subgroups import subgroup_forest_figure

    def table(accs):
        return pd.DataFrame({"column": ["site"] * 3, "value": ["a", "b", "c"], "n": [40, 2, 30],
                             "patients": [20, 1, 15], "small": [False, True, False],
                             "accuracy": accs, "ci_low": [a - 0.1 for a in accs],
                             "ci_high": [min(1, a + 0.1) for a in accs], "flagged": [False] * 3})
    order = [("site", "c"), ("site", "a"), ("site", "b")]
    a = subgroup_forest_figure(table([0.9, 1.0, 0.5]), 0.8, order=order, x_start=0.3)
    b = subgroup_forest_figure(table([0.6, 0.7, 0.95]), 0.8, order=order, x_start=0.3)
    assert list(a.data[0].y) == list(b.data[0].y) and list(a.data[0].y)[0].startswith("site = c")
    assert a.layout.xaxis.range == b.layout.xaxis.range
    symbols = dict(zip(a.data[0].y, a.data[0].marker.symbol))
    assert symbols["site = b (n=2) †"] == "diamond-open" and symbols["site = a (n=40)"] == "diamond"
