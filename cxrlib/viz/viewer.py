"""The film viewer's content: the film at its native resolution with window / level, and its CAM
heatmaps as layers of their own, in side-by-side panels that zoom and pan together. What the
browser draws (``app_services/film_viewer.js``) is built here as plain data; no streamlit.

The film is one lossless PNG (every native pixel: zoom resolves a one-pixel line); each heatmap
is a transparent RGBA PNG (:func:`cxrlib.explain.overlay.heat_layer`: the overlay's colours,
nothing drawn below the threshold, so low evidence leaves the film as it is) stretched over the
part of the film the model saw, with its values (one byte a cell) for the hover readout, and one
colour bar saying what the colours mean (:data:`cxrlib.explain.overlay.COLOUR_BAR_TITLE`).
It replaced a plotly figure: the same panels without the 4.7 MB charting library, whose first
load was the slowest action of a fresh browser tab on Explain.
"""
from __future__ import annotations

import base64
from typing import Sequence

import numpy as np

from cxrlib.explain.overlay import COLOUR_BAR_TITLE, colormap_lut, drawn_levels, heat_layer
from cxrlib.explain.png import to_png

LAYER_SIDE = 512
"""A heatmap layer's longest side in pixels, whatever the film's size: the model's map is 224
or less, so this keeps its smooth (bilinear) look when stretched over the film, at a few tens
of KB a layer, and its contour lines about 4 px wide on screen."""

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


def colour_stops(colormap: str, stops: int = 17) -> list[str]:
    """CSS colours sampled evenly from the OpenCV colormap of the overlays, 0 to 1."""
    lut = colormap_lut(colormap)[:, 0]
    idx = np.linspace(0, 255, stops).round().astype(int)
    return [f"rgb({lut[i][0]},{lut[i][1]},{lut[i][2]})" for i in idx]


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def film_source(pixels: np.ndarray) -> str:
    """The film as a lossless PNG data URI (every native pixel), for :func:`viewer_data`."""
    return _uri(to_png(pixels, compression=1))


def _layer_size(box: tuple[int, int, int, int], heat_shape: tuple[int, int]) -> tuple[int, int]:
    """``(H, W)``: the box's shape with ``LAYER_SIDE`` on its long side, and never fewer pixels
    than the map has cells on either side (a 40 x 20000 px film kept 2 of its map's 224
    columns)."""
    x0, y0, x1, y1 = box
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    scale = LAYER_SIDE / max(w, h)
    return max(2, heat_shape[0], round(h * scale)), max(2, heat_shape[1], round(w * scale))


def viewer_data(film: np.ndarray, panels: Sequence[dict], *, colormap: str = "inferno",
                alpha: float = 0.5, threshold: float = 0.2, contour: bool = False,
                height: int = 640, revision: str = "", source: str | None = None) -> dict:
    """Panels of one film side by side, zooming and panning together, as JSON-able data.

    Args:
        film: uint8 grey or RGB, already windowed (:func:`window_level`), at native size.
        panels: one dict per panel: ``title`` (``<br>`` breaks lines), and optionally
            ``heatmap`` (``(h, w)`` in [0, 1]) with ``box`` (``(x0, y0, x1, y1)`` of the film it
            covers; the whole film when absent). A panel without a heatmap shows the film alone.
        colormap: a key of :data:`cxrlib.explain.overlay.COLORMAPS`.
        alpha: heatmap opacity; threshold: values below it are not drawn (transparent).
        contour: thick iso-lines instead of a filled map.
        height: the panels' height in CSS pixels.
        revision: the zoom survives a redraw while this is unchanged (the film).
        source: :func:`film_source` of ``film`` when the caller has it cached.

    Returns:
        ``{"film", "width", "height", "panel_height", "revision", "panels", "bar"}``: the
        film's PNG data URI and native size; per panel its ``title`` lines, and, with a
        heatmap, its ``layer`` (RGBA PNG data URI), ``box`` and ``heat`` (``{"w", "h",
        "values"}``: the map as base64 bytes, 255 = the maximum); ``bar``: the colour bar
        (``title``, CSS ``colours`` from 0 to 1, ``threshold``, ``contour``, and the contour
        ``levels`` drawn), None without a heatmap.

    Raises:
        ValueError: for a heatmap that is not 2-D, or an alpha or threshold out of range.
    """
    h, w = film.shape[:2]
    out = []
    for panel in panels:
        shown = {"title": str(panel["title"]).split("<br>")}
        heat = panel.get("heatmap")
        if heat is not None:
            heat = np.asarray(heat, np.float32)
            if heat.ndim != 2:
                raise ValueError(f"heatmap must be (h, w), got shape {heat.shape}")
            box = tuple(int(v) for v in (panel.get("box") or (0, 0, w, h)))
            layer = heat_layer(heat, _layer_size(box, heat.shape), alpha, colormap, threshold,
                               contour)
            values = np.clip(np.nan_to_num(heat) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            shown.update(layer=_uri(to_png(layer, compression=1)), box=list(box),
                         heat={"w": int(heat.shape[1]), "h": int(heat.shape[0]),
                               "values": base64.b64encode(values.tobytes()).decode()})
        out.append(shown)
    bar = None
    if any("layer" in p for p in out):
        bar = {"title": COLOUR_BAR_TITLE, "colours": colour_stops(colormap),
               "threshold": float(threshold), "contour": bool(contour),
               "levels": list(drawn_levels(threshold)) if contour else None}
    return {"film": source or film_source(film), "width": int(w), "height": int(h),
            "panel_height": int(height), "revision": revision or f"{w}x{h}", "panels": out,
            "bar": bar}
