"""Plotly figures of generalisation: subgroup accuracy, class x subgroup recall, leave-one-source-out.

Builders take the plain results of :mod:`cxrlib.evaluation.subgroups` and
:mod:`cxrlib.audit.loso` and return ``plotly.graph_objects.Figure`` objects drawn with the
colours and layout of :mod:`cxrlib.viz.figures` (Okabe-Ito palette, one colour per class).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cxrlib.viz.figures import INK, OKABE_ITO, _layout

FLAG_COLOUR = "#D55E00"  # vermilion: a subgroup clearly below the overall figure
PLAIN_COLOUR = "#0072B2"
ADVERSARIAL_COLOUR = "#E69F00"
MAX_LABEL = 48


def _wide(fig: go.Figure, top: int = 60) -> go.Figure:
    """Room on the left for the subgroup names."""
    fig.update_layout(margin=dict(l=300, r=20, t=top, b=40))
    return fig


def _rows(table: pd.DataFrame, max_rows: int, order: Sequence[tuple[str, str]] | None) -> pd.DataFrame:
    """The worst ``max_rows`` subgroups, or the subgroups of ``order`` (``(column, value)``
    pairs) in that order, a missing one as an empty row."""
    if order is None:
        return table.head(max_rows)
    keyed = table.set_index(["column", "value"])
    rows = keyed.reindex(pd.MultiIndex.from_tuples(list(order), names=["column", "value"]))
    rows["n"] = rows["n"].fillna(0).astype(int)
    rows["patients"] = rows["patients"].fillna(0).astype(int)
    for col in ("flagged", "small"):
        if col in rows:
            rows[col] = rows[col].fillna(False).astype(bool)
    return rows.reset_index()


def _label(column: str, value: str, n: int, small: bool = False) -> str:
    text = f"{column} = {value}"
    text = text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 1] + "…"
    return f"{text} (n={n})" + (" †" if small else "")


def subgroup_forest_figure(table: pd.DataFrame, overall_accuracy: float | None,
                           max_rows: int = 30, *, order: Sequence[tuple[str, str]] | None = None,
                           x_start: float | None = None) -> go.Figure:
    """Accuracy of each subgroup with its 95 % CI, worst at the top.

    Args:
        table: :attr:`cxrlib.evaluation.subgroups.SubgroupAnalysis.table` (worst first).
        overall_accuracy: drawn as a vertical line.
        max_rows: the worst subgroups shown.
        order: ``(column, value)`` pairs to draw, in this order (two runs side by side share
            one order); ``x_start``: the left end of the x axis (and they share one scale).
    """
    rows = _rows(table, max_rows, order)
    small = rows["small"] if "small" in rows else [False] * len(rows)
    labels = [_label(r.column, r.value, r.n, s) for r, s in zip(rows.itertuples(), small)]
    acc = rows["accuracy"].astype(float).to_numpy()
    low = rows["ci_low"].astype(float).to_numpy()
    high = rows["ci_high"].astype(float).to_numpy()
    colours = [FLAG_COLOUR if f else PLAIN_COLOUR for f in rows["flagged"]]
    hover = [f"{lab}<br>accuracy {a:.1%} [{lo:.1%}, {hi:.1%}]<br>{p} patients"
             + ("<br><b>flagged</b>: whole CI below overall" if f else "")
             for lab, a, lo, hi, p, f in zip(labels, acc, low, high, rows["patients"], rows["flagged"])]
    fig = go.Figure(go.Scatter(
        x=acc, y=labels, mode="markers",
        marker=dict(color=colours, size=9, symbol=["diamond-open" if s else "diamond" for s in small]),
        error_x=dict(type="data", symmetric=False, array=np.nan_to_num(high - acc),
                     arrayminus=np.nan_to_num(acc - low), color="#7F7F7F", thickness=1.5),
        text=hover, hoverinfo="text", hovertemplate=None, showlegend=False))
    if overall_accuracy is not None:
        fig.add_vline(x=overall_accuracy, line=dict(color=INK, dash="dash", width=1),
                      annotation_text=f"overall {overall_accuracy:.1%}", annotation_position="top")
    # from a little below the lowest bound, so that intervals near the top stay readable
    start = forest_start(low, acc, overall_accuracy) if x_start is None else x_start
    fig.update_xaxes(title_text="Accuracy (95 % CI on patients; † fewer than 5 patients)",
                     range=[start - 0.02, 1.02], tickformat=".0%")
    fig.update_yaxes(autorange="reversed", type="category")
    return _wide(_layout(fig, "Accuracy by subgroup, worst first (red: CI entirely below overall)",
                         height=max(320, 26 * len(rows) + 120)))


def forest_start(low, acc, overall_accuracy: float | None) -> float:
    """The left end of a forest plot's accuracy axis: a tenth below the lowest bound."""
    values = np.r_[np.asarray(low, float), np.asarray(acc, float),
                   [overall_accuracy if overall_accuracy is not None else 1.0]]
    lowest = np.nanmin(values) if np.isfinite(values).any() else np.nan
    return max(0.0, np.floor((lowest - 0.05) * 10) / 10) if np.isfinite(lowest) else 0.0


def subgroup_recall_heatmap(table: pd.DataFrame, classes: Sequence[str], max_rows: int = 30, *,
                            order: Sequence[tuple[str, str]] | None = None) -> go.Figure:
    """Recall of each class (columns) in each subgroup (rows); blank where a subgroup has no
    film of that class. The cell text is the recall and the films of that class. ``order`` as
    for :func:`subgroup_forest_figure`."""
    rows = _rows(table, max_rows, order)
    labels = [_label(r.column, r.value, r.n) for r in rows.itertuples()]
    z = np.array([[np.nan if pd.isna(r[f"recall_{c}"]) else float(r[f"recall_{c}"]) for c in classes]
                  for _, r in rows.iterrows()], dtype=float).reshape(len(rows), len(classes))
    support = np.array([[int(0 if pd.isna(r[f"support_{c}"]) else r[f"support_{c}"]) for c in classes] for _, r in rows.iterrows()],
                       dtype=int).reshape(len(rows), len(classes))
    text = [["" if np.isnan(z[i, j]) else f"{z[i, j]:.0%} ({support[i, j]})" for j in range(len(classes))]
            for i in range(len(rows))]
    fig = go.Figure(go.Heatmap(z=z, x=list(classes), y=labels, zmin=0, zmax=1, colorscale="RdBu",
                               text=text, texttemplate="%{text}", hoverongaps=False,
                               textfont=dict(size=13),
                               hovertemplate="%{y}<br>%{x}: recall %{z:.1%}<extra></extra>",
                               colorbar=dict(title="Recall", tickformat=".0%")))
    fig.update_xaxes(title_text="True class", type="category", side="top")
    fig.update_yaxes(autorange="reversed", type="category")
    return _wide(_layout(fig, "Recall of each class by subgroup", height=max(320, 26 * len(rows) + 140)),
                 top=90)


def _source_label(name: str, single: bool) -> str:
    """A source name on two or three short lines (``owner/`` and repository), no annotation."""
    name = str(name).split(" (")[0]
    owner, _, repo = name.rpartition("/")
    text = f"{owner}/<br>{repo}" if owner else repo
    return text + ("<br>(one class)" if single else "")


def loso_figure(loso, adversarial=None) -> go.Figure:
    """Held-out accuracy per source (plain head, and the adversarial head when given), the
    run's in-distribution accuracy on that source's test films as a marker, and the expected
    accuracy at an unseen source and the test-split accuracy as lines.

    Args:
        loso: a :class:`cxrlib.audit.loso.LosoResult` (plain head).
        adversarial: the same with the source-adversarial head, or ``None``.
    """
    t = loso.table
    names = [_source_label(s, one) for s, one in zip(t["source"], t["single_class"])]
    fig = go.Figure(go.Bar(x=names, y=t["held_out_accuracy"], name="held out (plain head)",
                           marker_color=PLAIN_COLOUR, text=[f"{v:.0%}" for v in t["held_out_accuracy"]],
                           textposition="outside",
                           customdata=np.stack([t["n"], t["classes"]], axis=1),
                           hovertemplate="%{x}<br>held out: %{y:.1%}<br>%{customdata[0]} films: "
                                         "%{customdata[1]}<extra></extra>"))
    if adversarial is not None:
        a = adversarial.table.set_index("source").reindex(t["source"])
        fig.add_trace(go.Bar(x=names, y=a["held_out_accuracy"], name=f"held out (adversarial head, "
                             f"weight {adversarial.adversarial:g})", marker_color=ADVERSARIAL_COLOUR,
                             text=[f"{v:.0%}" for v in a["held_out_accuracy"]], textposition="outside"))
    fig.add_trace(go.Scatter(x=names, y=t["in_distribution_accuracy"], mode="markers",
                             name="in distribution (the run's test films of that source)",
                             marker=dict(color=INK, symbol="line-ew-open", size=30, line=dict(width=3))))
    for value, label, colour in ((loso.expected_accuracy, "expected at an unseen source", PLAIN_COLOUR),
                                 (loso.test_accuracy, "test split", INK)):
        if value is not None:
            fig.add_trace(go.Scatter(x=names, y=[value] * len(names), mode="lines",
                                     name=f"{label}: {value:.1%}", hoverinfo="skip",
                                     line=dict(color=colour, dash="dot", width=1.5)))
    fig.update_yaxes(title_text="Accuracy", range=[0, 1.12], tickformat=".0%")
    fig.update_xaxes(title_text="Held-out source", type="category", tickangle=0)
    return _layout(fig, "Leave one source out: accuracy at a source the head never saw",
                   barmode="group", legend=dict(orientation="h", y=-0.32, x=0), height=600,
                   colorway=list(OKABE_ITO))
