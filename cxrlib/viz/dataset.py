"""Plotly figures of a dataset: images and patients per class, and image sizes by class.

Drawn with the colours and layout of :mod:`cxrlib.viz.figures` (one colour per class).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cxrlib.viz.figures import CLASS_COLOURS, _layout, class_colour

MAX_SCATTER_POINTS = 5000
SIZE_JITTER = 0.02
"""Standard deviation of the size scatter's multiplicative jitter (log scale)."""


def _class_column(frame: pd.DataFrame) -> pd.Series:
    for col in ("label", "class"):
        if col in frame.columns:
            return frame[col].astype(str)
    return pd.Series(frame.index.astype(str), index=frame.index)


def class_counts_figure(stats_df: pd.DataFrame) -> go.Figure:
    """Images (and patients, when known) per class, as grouped bars.

    Args:
        stats_df: per-class table from ``cxrlib.data.datasets.dataset_stats``: the class in a
            ``label`` or ``class`` column (else the index), counts in ``images`` and optionally
            ``patients``.
    """
    names = _class_column(stats_df)
    colours = [class_colour(n, i) for i, n in enumerate(names)]
    total = float(stats_df["images"].sum()) or 1.0
    shares = stats_df["images"].to_numpy(dtype=float) / total
    fig = go.Figure(go.Bar(x=names, y=stats_df["images"], name="images", marker_color=colours,
                           text=[f"{int(n):,} ({s:.0%})" for n, s in zip(stats_df["images"], shares)],
                           textposition="outside", hovertemplate="%{x}<br>%{y:,} images<extra></extra>"))
    if "patients" in stats_df.columns and stats_df["patients"].notna().any():
        fig.add_trace(go.Bar(x=names, y=stats_df["patients"], name="patients", marker_color=colours,
                             marker_pattern_shape="/", opacity=0.6,
                             hovertemplate="%{x}<br>%{y:,} patients<extra></extra>"))
    fig.update_xaxes(title_text="Class", type="category")
    fig.update_yaxes(title_text="Count", tickformat=",")
    return _layout(fig, "Images per class", barmode="group")


def size_scatter_figure(manifest: pd.DataFrame, *, max_points: int = MAX_SCATTER_POINTS, seed: int = 0) -> go.Figure:
    """Image width against height on log axes, one colour per class (a source's habits show up
    as clusters), each point jittered by about 2 % so that films of one size form a cloud.

    Args:
        manifest: a dataset manifest (``label``, ``width``, ``height``; ``rel_path`` for hover).
        max_points: larger manifests are sampled down to this many rows (seeded, deterministic).
        seed: seed of that sample.
    """
    frame = manifest
    sampled = len(frame) > max_points
    if sampled:
        frame = frame.sample(n=max_points, random_state=np.random.default_rng(seed)).sort_index()
    fig = go.Figure()
    present = list(dict.fromkeys(frame["label"].astype(str)))
    order = [c for c in CLASS_COLOURS if c in present] + sorted(c for c in present if c not in CLASS_COLOURS)
    # Many films share one size (a source's habit; the 224 px copies): a small multiplicative
    # jitter (about 2 %, seeded) spreads them into a visible cloud; hover gives the true size.
    rng = np.random.default_rng(seed)
    for i, name in enumerate(order):
        part = frame[frame["label"].astype(str) == name]
        hover = part["rel_path"].astype(str) if "rel_path" in part.columns else [""] * len(part)
        width, height = part["width"].to_numpy(float), part["height"].to_numpy(float)
        sizes = [f"{int(w)} × {int(h)} px" for w, h in zip(width, height)]
        fig.add_trace(go.Scattergl(
            x=width * np.exp(rng.normal(0, SIZE_JITTER, len(part))),
            y=height * np.exp(rng.normal(0, SIZE_JITTER, len(part))), mode="markers", name=name,
            marker=dict(color=class_colour(name, i), size=6, opacity=0.5,
                        line=dict(width=0.5, color="#FFFFFF")),
            customdata=np.stack([sizes, list(hover)], axis=1) if len(part) else None,
            hovertemplate=f"{name}<br>%{{customdata[0]}}<br>%{{customdata[1]}}<extra></extra>"))
    fig.update_xaxes(title_text="Width (px)", tickformat=",", type="log")
    fig.update_yaxes(title_text="Height (px)", tickformat=",", type="log")
    title = "Image size by class" + (f" (random sample of {max_points:,} of {len(manifest):,})" if sampled else "")
    return _layout(fig, title)
