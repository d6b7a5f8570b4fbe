"""A film viewer as a plotly figure: the film at its native resolution with window / level, and
its CAM heatmaps as their own layer, in side-by-side panels that zoom and pan together.

The film is one image layer (a lossless PNG, every native pixel: zoom resolves a one-pixel
line); each heatmap is a plotly heatmap at its own (model input) resolution stretched over the
part of the film the model saw, with a colour bar saying what the colours mean
(:data:`cxrlib.explain.overlay.COLOUR_BAR_TITLE`), hover values, and nothing drawn below the
threshold, so low evidence leaves the film as it is. Panels share their axes: zooming or
panning one moves all. No streamlit here.
"""
from __future__ import annotations

import base64
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cxrlib.explain.overlay import COLOUR_BAR_TITLE, colormap_lut, to_png

WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "Full range": (127.5, 256.0),
    "Lungs": (90.0, 170.0),
    "Mediastinum / soft tissue": (160.0, 120.0),
    "Bone": (200.0, 110.0),
}
"""Window presets as ``(centre, width)`` on the film's 8-bit grey levels (the films are 8-bit:
these are display settings, not Hounsfield windows)."""


def window_level(pixels: np.ndarray, centre: float, width: float, invert: bool = False) -> np.ndarray:
    """``pixels`` (uint8 grey or RGB) through a linear window: ``centre - width/2`` maps to 0
    and ``centre + width/2`` to 255, clipped; ``invert`` swaps black and white.

    Raises:
        ValueError: for a width below 1 or a non-uint8 film.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"window_level needs uint8 pixels, got {pixels.dtype}")
    if width < 1:
        raise ValueError(f"window width must be at least 1, got {width}")
    levels = np.arange(256, dtype=np.float64)
    lut = np.clip((levels - (centre - width / 2.0)) / width * 255.0, 0, 255)
    lut = np.round(lut).astype(np.uint8)
    if invert:
        lut = 255 - lut
    return lut[pixels]


def colorscale(colormap: str, stops: int = 17) -> list[list]:
    """A plotly colour scale sampled from the OpenCV colormap of the overlays."""
    lut = colormap_lut(colormap)[:, 0]
    idx = np.linspace(0, 255, stops).round().astype(int)
    return [[i / 255.0, f"rgb({lut[i][0]},{lut[i][1]},{lut[i][2]})"] for i in idx]


def film_source(pixels: np.ndarray) -> str:
    """The film as a lossless PNG data URI (every native pixel), for :func:`viewer_figure`."""
    return "data:image/png;base64," + base64.b64encode(to_png(pixels, compression=1)).decode()


def viewer_figure(film: np.ndarray, panels: Sequence[dict], *, colormap: str = "inferno",
                  alpha: float = 0.5, threshold: float = 0.2, contour: bool = False,
                  height: int = 640, revision: str = "", source: str | None = None) -> go.Figure:
    """Panels of one film side by side, zooming and panning together.

    Args:
        film: uint8 grey or RGB, already windowed (:func:`window_level`), at native size.
        panels: one dict per panel: ``title``, and optionally ``heatmap`` (``(h, w)`` in
            [0, 1]) with ``box`` (``(x0, y0, x1, y1)`` of the film it covers; the whole film
            when absent). A panel without a heatmap shows the film alone.
        colormap: a key of :data:`cxrlib.explain.overlay.COLORMAPS`.
        alpha: heatmap opacity; threshold: values below it are not drawn (transparent).
        contour: thick iso-lines instead of a filled map.
        revision: plotly's ``uirevision``: the zoom survives a redraw while it is unchanged.
        source: :func:`film_source` of ``film`` when the caller has it cached.

    Returns:
        A figure with one image trace per panel and one heatmap (or contour) trace per
        heatmap; the first heatmap carries the colour bar titled
        :data:`~cxrlib.explain.overlay.COLOUR_BAR_TITLE`.
    """
    h, w = film.shape[:2]
    n = max(1, len(panels))
    fig = make_subplots(rows=1, cols=n, shared_xaxes="all", shared_yaxes="all",
                        horizontal_spacing=0.01, subplot_titles=[p["title"] for p in panels])
    uri = source or film_source(film)
    scale = colorscale(colormap)
    first = True
    for col, panel in enumerate(panels, start=1):
        fig.add_trace(go.Image(source=uri, x0=0, y0=0, dx=1, dy=1, hoverinfo="x+y",
                               name="film"), row=1, col=col)
        heat = panel.get("heatmap")
        if heat is None:
            continue
        heat = np.asarray(heat, np.float32)  # sent as 4 bytes a cell (8 doubled each rerun's bytes)
        x0, y0, x1, y1 = panel.get("box") or (0, 0, w, h)
        dx, dy = (x1 - x0) / heat.shape[1], (y1 - y0) / heat.shape[0]
        shown = np.where(heat >= threshold, heat, np.nan)  # NaN: transparent
        common = dict(z=shown, x0=x0 + dx / 2, dx=dx, y0=y0 + dy / 2, dy=dy, zmin=0.0, zmax=1.0,
                      colorscale=scale, showscale=first, name=panel["title"],
                      hovertemplate="x %{x:.0f}, y %{y:.0f}<br>evidence %{z:.0%} of the "
                                    "maximum<extra></extra>",
                      colorbar=dict(title=dict(text=COLOUR_BAR_TITLE, side="right"),
                                    tickformat=".0%", len=0.9, thickness=14))
        if contour:
            trace = go.Contour(**common, contours=dict(coloring="lines", start=max(threshold, 0.2),
                                                       end=0.8, size=0.2),
                               line=dict(width=4), opacity=max(alpha, 0.6))
        else:
            trace = go.Heatmap(**common, opacity=alpha, zsmooth="best", hoverongaps=False)
        fig.add_trace(trace, row=1, col=col)
        first = False
    fig.update_xaxes(range=[-0.5, w - 0.5], showgrid=False, zeroline=False, showticklabels=False,
                     constrain="domain")
    fig.update_yaxes(range=[h - 0.5, -0.5], showgrid=False, zeroline=False, showticklabels=False,
                     scaleanchor="x", scaleratio=1, constrain="domain")
    fig.update_annotations(font=dict(size=12))  # the panel titles, two short lines each
    fig.update_layout(height=height, margin=dict(l=5, r=5, t=50, b=5), dragmode="pan",
                      uirevision=revision or f"{w}x{h}", showlegend=False)
    return fig
