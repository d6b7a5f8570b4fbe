"""Figure builders: the traces, annotations, axis titles and numbers a reader sees."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from cxrlib.viz import dataset as dataset_figures
from cxrlib.viz import figures

from cxrlib import evaluation as metrics
from cxrlib.core.classes import CLASSES


@pytest.fixture(scope="module")
def predictions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 240)
    logits = rng.normal(size=(240, 3))
    logits[np.arange(240), y] += 1.5
    return y, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def axis_titles(fig: go.Figure) -> tuple[str, str]:
    return fig.layout.xaxis.title.text, fig.layout.yaxis.title.text


def test_confusion_heatmap_counts_and_normalised(predictions):
    y, probs = predictions
    conf = metrics.evaluate(y, probs, CLASSES)["confusion"]
    counts = np.array(conf["counts"])
    fig = figures.confusion_heatmap(conf, CLASSES)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    assert axis_titles(fig) == ("Predicted class", "True class")
    assert len(fig.layout.annotations) == 9
    cell = {(a.y, a.x): a.text for a in fig.layout.annotations}
    assert cell[("Normal", "COVID-19")] == str(counts[1, 0])  # row = true, column = predicted
    assert list(fig.data[0].x) == list(CLASSES)

    norm = figures.confusion_heatmap(counts, CLASSES, normalised=True)
    row = counts[2] / counts[2].sum()
    assert np.allclose(norm.data[0].z[2], row)
    text = {(a.y, a.x): a.text for a in norm.layout.annotations}[("Viral Pneumonia", "Viral Pneumonia")]
    assert text.startswith(f"{row[2]:.1%}") and f"({counts[2, 2]})" in text
    assert "row-normalised" in norm.layout.title.text


def test_roc_figure_traces_and_legend(predictions):
    y, probs = predictions
    curves = metrics.roc_curves(y, probs, CLASSES)
    fig = figures.roc_figure(curves)
    assert len(fig.data) == 3 + 2 + 1  # classes, micro and macro, chance
    names = [t.name for t in fig.data]
    assert names[0] == f"COVID-19 (AUC {curves['per_class']['COVID-19']['auc']:.3f})"
    assert names[4].startswith("macro-average (AUC") and names[5].startswith("chance")
    assert list(fig.data[-1].x) == [0, 1] and list(fig.data[-1].y) == [0, 1]
    assert axis_titles(fig) == ("False positive rate (1 − specificity)", "True positive rate (sensitivity)")
    assert fig.layout.xaxis.tickformat == ".0%"
    # Fixed colour per class, distinct across classes.
    assert fig.data[0].line.color == figures.CLASS_COLOURS["COVID-19"]
    assert len({t.line.color for t in fig.data[:3]}) == 3


def test_pr_figure(predictions):
    y, probs = predictions
    curves = metrics.pr_curves(y, probs, CLASSES)
    fig = figures.pr_figure(curves)
    assert len(fig.data) == 3 + 1  # classes and micro-average
    assert f"AP {curves['per_class']['Normal']['ap']:.3f}" in fig.data[1].name
    assert len(fig.layout.shapes) == 3  # prevalence (no-skill) line per class
    assert axis_titles(fig) == ("Recall (sensitivity)", "Precision (positive predictive value)")


def test_reliability_figure(predictions):
    y, probs = predictions
    cal = metrics.calibration(y, probs, n_bins=10)
    fig = figures.reliability_figure(cal)
    assert [type(t).__name__ for t in fig.data] == ["Bar", "Scatter", "Scatter"]
    assert len(fig.data[0].x) == 10
    assert f"ECE {cal['ece']:.1%}" in fig.layout.title.text
    assert axis_titles(fig) == ("Confidence of the predicted class", "Accuracy")


def test_training_curves_figure_marks_best_epoch():
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "loss": [1.0, 0.8, 0.6, 0.5], "accuracy": [0.5, 0.6, 0.7, 0.8],
                            "val_loss": [1.1, 0.7, 0.75, 0.9], "val_accuracy": [0.5, 0.65, 0.7, 0.68],
                            "lr": [1e-3] * 4})
    fig = figures.training_curves_figure(history)
    assert len(fig.data) == 5  # loss and accuracy for train and validation, the best-epoch star
    assert fig.data[-1].x == (2,) and fig.data[-1].y == (0.7,)
    assert "epoch 2" in fig.layout.title.text
    assert len(fig.layout.shapes) == 2  # a vertical line at the best epoch in each panel
    assert [a.text for a in fig.layout.annotations] == ["Loss", "Accuracy"]
    assert fig.layout.xaxis.title.text == "Epoch" and fig.layout.yaxis2.title.text == "Accuracy"
    # A history without validation columns still draws, without a best epoch.
    train_only = figures.training_curves_figure(history[["epoch", "loss", "accuracy"]])
    assert len(train_only.data) == 2 and len(train_only.layout.shapes) == 0


def test_histogram_figure_normalises_each_histogram():
    before = np.zeros(256, dtype=np.int64)
    before[:128] = 1000  # 128 000 pixels
    after = np.zeros(256, dtype=np.int64)
    after[100] = 50
    fig = figures.histogram_figure(before, after)
    assert len(fig.data) == 2 and len(fig.data[0].x) == 256
    assert fig.data[0].y[0] == pytest.approx(1 / 128) and fig.data[1].y[100] == pytest.approx(1.0)
    assert fig.layout.barmode == "overlay"
    assert axis_titles(fig) == ("Grey level (0–255)", "Share of pixels")
    raw = figures.histogram_figure(before, after, normalise=False)
    assert raw.data[0].y[0] == 1000 and raw.layout.yaxis.title.text == "Pixels"
    with pytest.raises(ValueError):
        figures.histogram_figure(np.ones(10), after)


def test_class_counts_figure():
    stats = pd.DataFrame({"label": list(CLASSES), "images": [100, 300, 100], "patients": [90, 300, 80]})
    fig = dataset_figures.class_counts_figure(stats)
    assert len(fig.data) == 2 and list(fig.data[0].x) == list(CLASSES)
    assert fig.data[0].text[1] == "300 (60%)"
    assert axis_titles(fig) == ("Class", "Count")
    indexed = dataset_figures.class_counts_figure(stats.drop(columns=["patients"]).set_index("label"))
    assert len(indexed.data) == 1 and list(indexed.data[0].x) == list(CLASSES)


def test_size_scatter_figure_samples_large_manifests():
    rng = np.random.default_rng(0)
    n = 7000
    manifest = pd.DataFrame({"label": rng.choice(["Normal", "COVID-19", "Viral Pneumonia"], n),
                             "width": rng.integers(200, 3000, n), "height": rng.integers(200, 3000, n),
                             "rel_path": [f"f{i}.png" for i in range(n)]})
    fig = dataset_figures.size_scatter_figure(manifest)
    assert [t.name for t in fig.data] == list(CLASSES)  # task order whatever the manifest order
    assert sum(len(t.x) for t in fig.data) == dataset_figures.MAX_SCATTER_POINTS
    assert "5,000 of 7,000" in fig.layout.title.text
    assert axis_titles(fig) == ("Width (px)", "Height (px)")
    again = dataset_figures.size_scatter_figure(manifest)
    assert list(again.data[0].x) == list(fig.data[0].x)  # seeded sample
    small = dataset_figures.size_scatter_figure(manifest.head(50))
    assert sum(len(t.x) for t in small.data) == 50


def test_size_scatter_spreads_films_of_one_size():
    """Issue 26: hundreds of films of one size sat on one dot. Jittered, they spread by about
    2 % around their size (the hover keeps the true size)."""
    manifest = pd.DataFrame({"label": ["Normal"] * 300, "width": [224] * 300, "height": [224] * 300})
    trace = dataset_figures.size_scatter_figure(manifest).data[0]
    x = np.asarray(trace.x, float)
    assert len(np.unique(x)) == 300 and np.all(np.abs(np.log(x / 224)) < 0.1)
    assert np.std(np.log(x)) == pytest.approx(dataset_figures.SIZE_JITTER, rel=0.25)
    assert set(np.asarray(trace.customdata)[:, 0]) == {"224 × 224 px"}


def test_bootstrap_ci_figure(predictions):
    y, probs = predictions
    ci = metrics.bootstrap_ci(y, probs, CLASSES, n_boot=100, seed=0)
    fig = figures.bootstrap_ci_figure(ci)
    assert len(fig.data) == 1
    trace = fig.data[0]
    assert len(trace.y) == len(ci["metrics"]) == 8 and trace.y[0] == "accuracy"
    acc = ci["metrics"]["accuracy"]
    assert trace.error_x.array[0] == pytest.approx(acc["high"] - acc["estimate"])
    assert trace.error_x.arrayminus[0] == pytest.approx(acc["estimate"] - acc["low"])
    assert "95%" in fig.layout.title.text and "240 images" in fig.layout.title.text
    assert axis_titles(fig) == ("Value", "Metric")


def test_no_streamlit_or_tensorflow_import():
    code = ("import sys, cxrlib.evaluation.metrics, cxrlib.viz.figures; "
            "print(any(m.split('.')[0] in ('streamlit', 'tensorflow', 'keras') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False"


def test_dark_theme_recolours_backgrounds_and_reference_marks():
    from cxrlib.viz.figures import INK, THEMES, themed

    y = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[[0, 1, 2, 1, 1, 0]] * 0.8 + 0.2 / 3
    fig = figures.reliability_figure(metrics.calibration(y, probs, n_bins=5))
    diagonal = [t for t in fig.data if t.name == "perfect calibration"][0]
    assert diagonal.line.color == INK
    themed(fig, "dark")
    assert fig.layout.paper_bgcolor == THEMES["dark"]["paper"] != "#FFFFFF"
    assert diagonal.line.color == THEMES["dark"]["ink"]
    assert all(getattr(t.line, "color", None) != INK for t in fig.data if hasattr(t, "line"))
    with pytest.raises(ValueError, match="unknown theme"):
        themed(fig, "sepia")
