"""Plotly figure builders for the dashboard: evaluation, training, preprocessing and dataset views.

Each builder takes plain results (from :mod:`cxrlib.evaluation.metrics`, a history or manifest frame, or
arrays) and returns a ``plotly.graph_objects.Figure``; none draws anything or imports streamlit.
Classes keep the task order and one colour each everywhere, from the Okabe-Ito palette, which
stays distinguishable under the common colour-vision deficiencies.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cxrlib.core.classes import BACTERIAL, COVID, NORMAL, VIRAL
from cxrlib.evaluation.history import best_epoch, training_curves

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
CLASS_COLOURS = {COVID: "#D55E00", NORMAL: "#0072B2", VIRAL: "#009E73", BACTERIAL: "#CC79A7"}
SPLIT_COLOURS = {"train": "#0072B2", "validation": "#E69F00"}
INK = "#000000"
"""The neutral colour of reference marks (diagonals, the best-epoch star, the micro average);
:func:`themed` turns it into the theme's text colour."""
AVERAGE_STYLE = {"micro": dict(color=INK, dash="dash"), "macro": dict(color="#7F7F7F", dash="dot")}
TEMPLATE = "plotly_white"
THEMES = {
    "light": {"template": "plotly_white", "ink": INK, "paper": "#FFFFFF", "plot": "#FFFFFF"},
    "dark": {"template": "plotly_dark", "ink": "#E4E9EF", "paper": "#11161D", "plot": "#1B232D"},
}
"""Figure themes; ``dark`` matches the app's theme (.streamlit/config.toml)."""


def themed(fig: go.Figure, theme: str = "light") -> go.Figure:
    """``fig`` drawn for a light or dark surround: template, backgrounds and the :data:`INK`
    marks recoloured (in place; returns the figure).

    Raises:
        ValueError: for an unknown theme.
    """
    try:
        spec = THEMES[theme]
    except KeyError:
        raise ValueError(f"unknown theme {theme!r}; choose one of {sorted(THEMES)}") from None
    fig.update_layout(template=spec["template"], paper_bgcolor=spec["paper"], plot_bgcolor=spec["plot"])
    ink = spec["ink"]
    for trace in fig.data:
        for part in ("line", "marker"):
            obj = getattr(trace, part, None)
            if obj is not None and getattr(obj, "color", None) == INK:
                obj.color = ink
    for shape in fig.layout.shapes:
        if shape.line and shape.line.color == INK:
            shape.line.color = ink
    return fig


def class_colour(name: str, index: int = 0) -> str:
    """The fixed colour of a class; unknown names take a palette colour by position."""
    return CLASS_COLOURS.get(name, OKABE_ITO[index % len(OKABE_ITO)])


def whose(fig: go.Figure, owner: str) -> go.Figure:
    """``fig`` with ``owner`` (e.g. ``"Run A · 1a2b3c4d"``) on a first title line, and the title
    small enough not to be cut in a half-width column (in place; returns the figure)."""
    text = fig.layout.title.text or ""
    fig.update_layout(title=dict(text=f"<b>{owner}</b><br><span style='font-size:12px'>{text}</span>",
                                 font=dict(size=14)),
                      margin=dict(t=max(80, (fig.layout.margin.t or 0) + 20)))
    return fig


def _layout(fig: go.Figure, title: str, **kwargs) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left"), template=TEMPLATE,
                      margin=dict(l=60, r=20, t=60, b=50), **kwargs)
    return fig


def _unit_square(fig: go.Figure, x_title: str, y_title: str) -> None:
    # Both axes keep [0, 1] and give up plot area instead: with the y axis free to widen, a
    # square plot in a tall, narrow column stretched its range to −200 %..300 % (issue 26).
    fig.update_xaxes(title_text=x_title, range=[-0.01, 1.01], tickformat=".0%", constrain="domain")
    fig.update_yaxes(title_text=y_title, range=[-0.01, 1.01], tickformat=".0%", scaleanchor="x",
                     scaleratio=1, constrain="domain")


def confusion_heatmap(conf, classes: Sequence[str], normalised: bool = False,
                      zmax: float | None = None) -> go.Figure:
    """Annotated confusion matrix, true class down the rows, predicted class across.

    Args:
        conf: (C, C) counts, or the ``confusion`` entry of :func:`cxrlib.evaluation.metrics.evaluate`.
        classes: class names in task order.
        normalised: colour and label cells by row share (recall along the diagonal); the
            counts stay in the hover text.
        zmax: the top of the colour scale of counts (two runs side by side share one).

    Returns:
        A heatmap with one annotation per cell.
    """
    counts = np.asarray(conf["counts"] if isinstance(conf, Mapping) else conf, dtype=np.float64)
    row_sums = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    values = shares if normalised else counts
    names = list(classes)
    hover = [[f"True: {t}<br>Predicted: {p}<br>Images: {int(counts[i, j])}<br>Row share: {shares[i, j]:.1%}"
              for j, p in enumerate(names)] for i, t in enumerate(names)]
    top = 1.0 if normalised else float(zmax or max(1.0, values.max()))
    fig = go.Figure(go.Heatmap(z=values, x=names, y=names, colorscale="Blues", zmin=0, zmax=top,
                               text=hover, hoverinfo="text", hovertemplate=None,
                               colorbar=dict(title="Share" if normalised else "Images",
                                             tickformat=".0%" if normalised else None)))
    threshold = 0.5 * top
    for i, true_name in enumerate(names):
        for j, pred_name in enumerate(names):
            label = f"{shares[i, j]:.1%}<br>({int(counts[i, j])})" if normalised else f"{int(counts[i, j])}"
            fig.add_annotation(x=pred_name, y=true_name, text=label, showarrow=False,
                               font=dict(color="white" if values[i, j] > threshold else "black", size=14))
    fig.update_xaxes(title_text="Predicted class", type="category", side="bottom")
    fig.update_yaxes(title_text="True class", type="category", autorange="reversed")
    title = "Confusion matrix (row-normalised)" if normalised else "Confusion matrix (counts)"
    return _layout(fig, title)


def _curve_traces(fig: go.Figure, curves: dict, x_key: str, y_key: str, score_key: str, score_name: str) -> None:
    for i, (name, curve) in enumerate(curves["per_class"].items()):
        thresholds = ["—" if t is None else f"{t:.3f}" for t in curve["thresholds"]]
        fig.add_trace(go.Scatter(
            x=curve[x_key], y=curve[y_key], mode="lines", name=f"{name} ({score_name} {curve[score_key]:.3f})",
            line=dict(color=class_colour(name, i), width=2), customdata=thresholds,
            hovertemplate=f"{name}<br>{x_key}: %{{x:.1%}}<br>{y_key}: %{{y:.1%}}<br>threshold: %{{customdata}}"
                          "<extra></extra>"))
    for average in ("micro", "macro"):
        curve = curves.get(average)
        if curve is not None and curve.get(score_key) is not None:
            fig.add_trace(go.Scatter(
                x=curve[x_key], y=curve[y_key], mode="lines",
                name=f"{average}-average ({score_name} {curve[score_key]:.3f})",
                line=dict(width=2, **AVERAGE_STYLE[average]),
                hovertemplate=f"{average}-average<br>{x_key}: %{{x:.1%}}<br>{y_key}: %{{y:.1%}}<extra></extra>"))


def roc_figure(curves: dict) -> go.Figure:
    """ROC curves per class and micro/macro averages, AUC in the legend, and the chance diagonal.

    Args:
        curves: the result of :func:`cxrlib.evaluation.metrics.roc_curves`.
    """
    fig = go.Figure()
    _curve_traces(fig, curves, "fpr", "tpr", "auc", "AUC")
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance (AUC 0.5)",
                             line=dict(color="#BBBBBB", dash="dash", width=1), hoverinfo="skip"))
    _unit_square(fig, "False positive rate (1 − specificity)", "True positive rate (sensitivity)")
    return _layout(fig, "ROC curves (one class vs rest)", legend=dict(x=0.98, y=0.02, xanchor="right",
                                                                       yanchor="bottom"))


def pr_figure(curves: dict) -> go.Figure:
    """Precision-recall curves per class and the micro-average, average precision in the legend.

    A dotted line per class marks its prevalence: the precision of a classifier with no skill.

    Args:
        curves: the result of :func:`cxrlib.evaluation.metrics.pr_curves`.
    """
    fig = go.Figure()
    _curve_traces(fig, curves, "recall", "precision", "ap", "AP")
    for i, (name, curve) in enumerate(curves["per_class"].items()):
        fig.add_hline(y=curve["prevalence"], line=dict(color=class_colour(name, i), dash="dot", width=1),
                      opacity=0.6)
    _unit_square(fig, "Recall (sensitivity)", "Precision (positive predictive value)")
    return _layout(fig, "Precision-recall curves (one class vs rest)",
                   legend=dict(x=0.02, y=0.02, xanchor="left", yanchor="bottom"))


def reliability_figure(cal: dict) -> go.Figure:
    """Reliability diagram: accuracy per confidence bin, mean confidence points, the diagonal.

    Args:
        cal: the result of :func:`cxrlib.evaluation.metrics.calibration`.
    """
    edges = np.asarray(cal["bin_edges"])
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    acc = np.array([np.nan if a is None else a for a in cal["accuracy"]])
    conf = np.array([np.nan if c is None else c for c in cal["confidence"]])
    counts = np.asarray(cal["count"])
    hover = [f"Confidence {lo:.0%}–{hi:.0%}<br>Images: {n}" for lo, hi, n in zip(edges[:-1], edges[1:], counts)]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=centres, y=acc, width=width, name="accuracy in bin", marker_color="#56B4E9",
                         marker_line=dict(color="#0072B2", width=1), customdata=hover,
                         hovertemplate="%{customdata}<br>Accuracy: %{y:.1%}<extra></extra>"))
    fig.add_trace(go.Scatter(x=conf, y=acc, mode="markers", name="mean confidence",
                             marker=dict(color="#D55E00", size=9, symbol="diamond"), customdata=counts,
                             hovertemplate="Mean confidence: %{x:.1%}<br>Accuracy: %{y:.1%}<br>"
                                           "Images: %{customdata}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color=INK, dash="dash", width=1), hoverinfo="skip"))
    _unit_square(fig, "Confidence of the predicted class", "Accuracy")
    return _layout(fig, f"Reliability diagram (ECE {cal['ece']:.1%}, {cal['n']} images)", bargap=0,
                   legend=dict(x=0.02, y=0.98))


def training_curves_figure(history: pd.DataFrame) -> go.Figure:
    """Loss and accuracy per epoch, train against validation, the kept (best) epoch marked.

    Args:
        history: a run's history (``epoch``, ``loss``, ``accuracy``, ``val_loss``,
            ``val_accuracy``, ...) or its tidy form from :func:`cxrlib.evaluation.metrics.training_curves`.
    """
    tidy = history if "metric" in history.columns else training_curves(history)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.12)
    for col, metric in enumerate(("loss", "accuracy"), start=1):
        for split in ("train", "validation"):
            part = tidy[(tidy["metric"] == metric) & (tidy["split"] == split)]
            if part.empty:
                continue
            value_fmt = "%{y:.1%}" if metric == "accuracy" else "%{y:.4f}"
            fig.add_trace(go.Scatter(x=part["epoch"], y=part["value"], mode="lines+markers", name=split,
                                     legendgroup=split, showlegend=col == 1,
                                     line=dict(color=SPLIT_COLOURS[split], width=2), marker=dict(size=5),
                                     hovertemplate=f"{split} {metric}<br>epoch %{{x}}: {value_fmt}<extra></extra>"),
                          row=1, col=col)
    best = None
    val_loss = tidy[(tidy["metric"] == "loss") & (tidy["split"] == "validation")]
    if not val_loss.empty:
        best = best_epoch(val_loss.rename(columns={"value": "val_loss"}))
        best_value = float(val_loss.loc[val_loss["epoch"] == best, "value"].iloc[0])
        fig.add_trace(go.Scatter(x=[best], y=[best_value], mode="markers", name=f"best epoch ({best})",
                                 marker=dict(symbol="star", size=14, color=INK),
                                 hovertemplate="best validation loss<br>epoch %{x}: %{y:.4f}<extra></extra>"),
                      row=1, col=1)
        for col in (1, 2):
            fig.add_vline(x=best, line=dict(color="#7F7F7F", dash="dot", width=1), row=1, col=col)
    fig.update_xaxes(title_text="Epoch")
    fig.update_yaxes(title_text="Loss", row=1, col=1)
    fig.update_yaxes(title_text="Accuracy", tickformat=".0%", range=[0, 1.02], row=1, col=2)
    title = "Training curves" + ("" if best is None else f" (weights kept from epoch {best})")
    return _layout(fig, title, hovermode="x unified")


def histogram_figure(hist_before, hist_after, *, normalise: bool = True,
                     labels: tuple[str, str] = ("original", "preprocessed")) -> go.Figure:
    """Two 256-bin grey-level histograms overlaid: before and after preprocessing.

    Args:
        hist_before, hist_after: (256,) pixel counts (e.g. from ``cxrlib.preprocessing.steps.histogram``).
        normalise: plot each as a share of its image's pixels, so that a full-size original and
            a 224-px model input compare.
        labels: legend names of the two histograms.

    Raises:
        ValueError: for a histogram that is not 256 bins.
    """
    fig = go.Figure()
    levels = np.arange(256)
    for hist, name, colour in ((hist_before, labels[0], "#E69F00"), (hist_after, labels[1], "#0072B2")):
        values = np.asarray(hist, dtype=np.float64).reshape(-1)
        if values.size != 256:
            raise ValueError(f"a histogram has 256 bins, got {values.size}")
        if normalise and values.sum() > 0:
            values = values / values.sum()
        fig.add_trace(go.Bar(x=levels, y=values, name=name, marker_color=colour, opacity=0.6,
                             marker_line_width=0,
                             hovertemplate=f"{name}<br>grey level %{{x}}: "
                                           + ("%{y:.2%}" if normalise else "%{y:,} pixels") + "<extra></extra>"))
    fig.update_xaxes(title_text="Grey level (0–255)", range=[-0.5, 255.5])
    fig.update_yaxes(title_text="Share of pixels" if normalise else "Pixels", tickformat=".1%" if normalise else ",")
    return _layout(fig, "Grey-level histogram before and after preprocessing", barmode="overlay", bargap=0)


def bootstrap_ci_figure(ci: dict) -> go.Figure:
    """Point estimates with their bootstrap confidence intervals as horizontal error bars.

    Args:
        ci: the result of :func:`cxrlib.evaluation.metrics.bootstrap_ci`.
    """
    rows = [(name, m) for name, m in ci["metrics"].items() if m["estimate"] is not None]
    names = [name.replace("/", ": ") for name, _ in rows]
    est = np.array([m["estimate"] for _, m in rows], dtype=float)
    low = np.array([np.nan if m["low"] is None else m["low"] for _, m in rows], dtype=float)
    high = np.array([np.nan if m["high"] is None else m["high"] for _, m in rows], dtype=float)
    hover = [f"{n}<br>{e:.1%} [{lo:.1%}, {hi:.1%}]<br>{m['n_valid']} valid resamples"
             for n, e, lo, hi, (_, m) in zip(names, est, low, high, rows)]
    fig = go.Figure(go.Scatter(
        x=est, y=names, mode="markers", name="estimate", marker=dict(color="#0072B2", size=10),
        error_x=dict(type="data", symmetric=False, array=np.nan_to_num(high - est),
                     arrayminus=np.nan_to_num(est - low), color="#0072B2", thickness=2, width=6),
        text=hover, hovertemplate="%{text}<extra></extra>"))
    fig.update_xaxes(title_text="Value", tickformat=".0%", range=[max(0.0, np.nanmin(low, initial=1) - 0.05), 1.01])
    fig.update_yaxes(title_text="Metric", type="category", autorange="reversed")
    level = ci.get("confidence", 0.95)
    return _layout(fig, f"{level:.0%} bootstrap confidence intervals ({ci['n_boot']} resamples of "
                        f"{ci['n_units']} {ci['unit']}s)", height=max(300, 40 * len(rows) + 120))
