"""Drawing a heatmap over the original film, at the film's own resolution.

The heatmap is computed at the model's input size (e.g. 224 x 224) from the whole film squeezed
to a square, so it is stretched back over the whole film: the heatmap is resized to the film, never
the film to the heatmap. Pure functions of arrays: uint8 film in, uint8 RGB out (or the heatmap alone as an RGBA
layer, :func:`heat_layer`, for a viewer to lay over the film).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "hot": cv2.COLORMAP_HOT,
    "bone": cv2.COLORMAP_BONE,
    "cividis": cv2.COLORMAP_CIVIDIS,
}
"""Colormap names (as in :class:`cxrlib.core.config.ExplainConfig`) to OpenCV colormaps."""

CONTOUR_LEVELS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
"""Default iso-levels of the contour mode."""


def drawn_levels(threshold: float, levels: tuple[float, ...] = CONTOUR_LEVELS) -> tuple[float, ...]:
    """The contour levels drawn at ``threshold``: those at or above it (lower evidence is not
    drawn, in contour mode as in a filled map)."""
    return tuple(level for level in levels if level >= threshold)

_CONTOUR_GRID = 512  # contours are traced on a heatmap of at most this many pixels a side
_COLOUR_GRID = 128  # smaller heatmaps are upsampled (values, not colours) before colouring


@functools.lru_cache(maxsize=None)
def colormap_lut(name: str) -> np.ndarray:
    """The 256-entry RGB lookup table of a colormap, as ``uint8 (256, 1, 3)``.

    Raises:
        ValueError: for an unknown name (the message lists :data:`COLORMAPS`).
    """
    try:
        code = COLORMAPS[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}; choose one of {sorted(COLORMAPS)}") from None
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), code)
    return np.ascontiguousarray(bgr[:, :, ::-1])  # RGB order, so applyColorMap returns RGB


def _film_rgb(film: np.ndarray) -> np.ndarray:
    film = np.asarray(film)
    if film.dtype != np.uint8:
        raise ValueError(f"film must be uint8 (grey or RGB), got {film.dtype}")
    if film.ndim == 2:
        return cv2.cvtColor(film, cv2.COLOR_GRAY2RGB)
    if film.ndim == 3 and film.shape[2] == 3:
        return film.copy()
    if film.ndim == 3 and film.shape[2] == 1:
        return cv2.cvtColor(film[:, :, 0], cv2.COLOR_GRAY2RGB)
    raise ValueError(f"film must be (H, W) or (H, W, 3), got shape {film.shape}")


def _heatmap_u8(heatmap: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``heatmap`` in [0, 1] as uint8 0..255, resized (bilinear) to ``size = (H, W)`` if given."""
    heat = np.asarray(heatmap, np.float32)
    if heat.ndim == 3 and heat.shape[0] == 1:
        heat = heat[0]
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be (h, w), got shape {np.shape(heatmap)}")
    # Quantise at the small size, then resize the uint8 map: the same values to within one
    # grey level, and resizing uint8 is several times faster than float32 at 2500 px.
    heat8 = np.clip(np.nan_to_num(heat) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if size is None or heat8.shape == tuple(size):
        return heat8
    h, w = size
    return cv2.resize(heat8, (w, h), interpolation=cv2.INTER_LINEAR)


def overlay(film: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet",
            contour: bool = False, levels: tuple[float, ...] = CONTOUR_LEVELS,
            box: tuple[int, int, int, int] | None = None, threshold: float = 0.0) -> np.ndarray:
    """Draw ``heatmap`` over ``film`` at the film's resolution.

    Args:
        film: uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB, any size (e.g. 2500 x 3000).
        heatmap: ``(h, w)`` in [0, 1], usually at the model input size; it is stretched over
            the whole film, or over ``box``.
        box: ``(x0, y0, x1, y1)``, the part of the film the model saw (a lung-cropped input:
            :func:`cxrlib.preprocessing.geometry.input_box`); the heatmap is drawn there only
            and the rest of the film is left as it is (the model saw none of it). None: the
            whole film.
        alpha: opacity of the colour map in [0, 1]: 0 gives the film, 1 the colour map alone
            (published 0.4). In contour mode, the opacity of the lines.
        colormap: a key of :data:`COLORMAPS` (published ``"jet"``).
        contour: draw iso-lines of the heatmap at ``levels`` over the grey film, each coloured by
            the colormap at its level, instead of a filled colour map.
        levels: iso-levels in (0, 1) for contour mode.
        threshold: where the heatmap (stretched over the film) is below this share of its
            maximum, the film's pixels are left as they are (contour mode: the levels below it
            are not drawn, :func:`drawn_levels`). 0 colours everything (published).

    Returns:
        uint8 RGB ``(H, W, 3)``.

    Raises:
        ValueError: for a film that is not uint8 grey/RGB, a heatmap that is not 2-D, an alpha
            outside [0, 1], a contour level outside (0, 1), or an unknown colormap.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if contour and not all(0.0 < level < 1.0 for level in levels):
        raise ValueError(f"contour levels must lie in (0, 1), got {tuple(levels)}")
    lut = colormap_lut(colormap)
    rgb = _film_rgb(film)
    h, w = rgb.shape[:2]
    if box is not None and tuple(box) != (0, 0, w, h):
        x0, y0, x1, y1 = box
        rgb[y0:y1, x0:x1] = overlay(rgb[y0:y1, x0:x1], heatmap, alpha, colormap, contour, levels,
                                    threshold=threshold)
        return rgb
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if contour:
        return _draw_contours(rgb, heatmap, alpha, lut, drawn_levels(threshold, levels))
    if alpha == 0.0:
        return rgb
    colour = _colour_at(heatmap, lut, (h, w))
    blended = colour if alpha == 1.0 else cv2.addWeighted(colour, alpha, rgb, 1.0 - alpha, 0.0)
    if threshold > 0.0:
        low = _heatmap_u8(heatmap, (h, w)) < round(threshold * 255)
        blended[low] = rgb[low]
    return blended


def _colour_at(heatmap: np.ndarray, lut: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The coloured heatmap, resized to ``size = (H, W)``.

    The colour map is applied at the heatmap's own size (at least ``_COLOUR_GRID`` a side) and
    the coloured image is resized bilinearly. The colormaps are piecewise linear in the value,
    so on a smooth map this equals colouring the resized heatmap to within one heatmap level
    (jet moves up to 4 colour levels per heatmap level), and it skips a lookup over every pixel
    of a 2500-px film (about 20% of the overlay's time).
    """
    heat8 = _heatmap_u8(heatmap, None)
    if min(heat8.shape) < _COLOUR_GRID:  # e.g. a raw 7 x 7 map: interpolate values, not colours
        grid = (min(size[0], 4 * _COLOUR_GRID), min(size[1], 4 * _COLOUR_GRID))
        heat8 = cv2.resize(heat8, grid[::-1], interpolation=cv2.INTER_LINEAR)
    small = cv2.applyColorMap(heat8, lut)
    if small.shape[:2] == tuple(size):
        return small
    return cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _contour_curves(heatmap: np.ndarray, lut: np.ndarray, levels: tuple[float, ...],
                    size: tuple[int, int]):
    """The iso-lines of ``heatmap`` stretched to ``size = (H, W)``: per level, its curves in
    fixed-point film pixels (``_SHIFT`` fractional bits, so lines stay smooth at 2500 px) and
    its colour."""
    h, w = size
    scale = min(1.0, _CONTOUR_GRID / max(h, w))
    gh, gw = max(2, round(h * scale)), max(2, round(w * scale))
    heat8 = _heatmap_u8(heatmap, (gh, gw))
    factor = np.array([w / gw, h / gh])
    drawn = []
    for level in levels:
        mask = (heat8 >= round(level * 255)).astype(np.uint8)
        found, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        if found:
            curves = [np.round(((c[:, 0, :] + 0.5) * factor - 0.5) * (1 << _SHIFT)).astype(np.int32)
                      for c in found]
            drawn.append((curves, tuple(int(v) for v in lut[int(round(level * 255)), 0])))
    return drawn


_SHIFT = 4


def _draw_contours(rgb: np.ndarray, heatmap: np.ndarray, alpha: float, lut: np.ndarray,
                   levels: tuple[float, ...]) -> np.ndarray:
    drawn = _contour_curves(heatmap, lut, levels, rgb.shape[:2])
    thickness = max(2, round(max(rgb.shape[:2]) / 250))  # thick enough to see on a shrunk film
    lines = rgb.copy()
    for curves, colour in drawn:
        cv2.polylines(lines, curves, True, colour, thickness, cv2.LINE_AA, _SHIFT)
    if alpha >= 1.0:
        return lines
    return cv2.addWeighted(lines, alpha, rgb, 1.0 - alpha, 0.0)


def heat_layer(heatmap: np.ndarray, size: tuple[int, int], alpha: float = 0.5,
               colormap: str = "inferno", threshold: float = 0.0, contour: bool = False,
               levels: tuple[float, ...] = CONTOUR_LEVELS) -> np.ndarray:
    """The heatmap alone, as a transparent layer for a viewer to lay over the film: what
    :func:`overlay` blends into the film, kept apart.

    ``heatmap``: ``(h, w)`` in [0, 1]; ``size``: ``(H, W)`` of the layer (a viewer stretches
    it over the part of the film the model saw); the rest as in :func:`overlay`.

    Returns:
        uint8 RGBA ``(H, W, 4)``: the colour map's colours, with opacity ``alpha`` where the map
        reaches ``threshold`` and 0 (transparent) below it; in contour mode the iso-lines alone.
        Laid over the film (``a * colour + (1 - a) * film``) it gives :func:`overlay` at this
        size.

    Raises:
        ValueError: as :func:`overlay`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if contour and not all(0.0 < level < 1.0 for level in levels):
        raise ValueError(f"contour levels must lie in (0, 1), got {tuple(levels)}")
    lut = colormap_lut(colormap)
    h, w = size
    layer = np.zeros((h, w, 4), np.uint8)
    if contour:
        drawn = _contour_curves(heatmap, lut, drawn_levels(threshold, levels), (h, w))
        thickness = max(3, round(max(h, w) / 100))  # a 512 px layer: about 4 px on screen
        colours, coverage = np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8)
        for curves, colour in drawn:  # a line's colour, and how much of each pixel it covers
            cv2.polylines(colours, curves, True, colour, thickness + 2, cv2.LINE_8, _SHIFT)
            cv2.polylines(coverage, curves, True, 255, thickness, cv2.LINE_AA, _SHIFT)
        layer[..., :3] = colours
        layer[..., 3] = np.round(coverage * alpha).astype(np.uint8)
        return layer
    layer[..., :3] = _colour_at(heatmap, lut, (h, w))
    shown = _heatmap_u8(heatmap, (h, w)) >= round(threshold * 255)
    layer[..., 3] = np.where(shown, round(alpha * 255), 0)
    return layer


COLOUR_BAR_TITLE = "share of the maximum class evidence"
"""What a heatmap's colours mean: every CAM map is scaled to its own maximum."""
RESEARCH_ONLY = "research use only - not for diagnosis"


def legend_strip(image: np.ndarray, lines: list[str], colormap: str = "jet",
                 threshold: float = 0.0) -> np.ndarray:
    """``image`` (uint8 RGB) with a strip below it: the lines of text (method, layer, class,
    probability, run, :data:`RESEARCH_ONLY`) and the colour bar from 0 to 1 of the maximum
    class evidence (blank below ``threshold``, which the overlay leaves uncoloured)."""
    rgb = _film_rgb(image)
    w = rgb.shape[1]
    scale = max(0.4, w / 1400)
    line_h = int(round(30 * scale))
    bar_h = int(round(24 * scale))
    strip = np.full((line_h * (len(lines) + 2) + bar_h, w, 3), 24, np.uint8)
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, int(round(1.5 * scale)))
    for i, text in enumerate(lines):
        cv2.putText(strip, text, (int(10 * scale), line_h * (i + 1)), font, 0.7 * scale,
                    (235, 235, 235), thick, cv2.LINE_AA)
    top, left, right = line_h * len(lines) + line_h // 3, int(10 * scale), w - int(10 * scale)
    ramp = np.linspace(0, 255, max(2, right - left)).astype(np.uint8)[None, :]
    bar = cv2.applyColorMap(np.repeat(ramp, bar_h, 0), colormap_lut(colormap))
    bar[:, ramp[0] < round(threshold * 255)] = 24
    strip[top:top + bar_h, left:left + bar.shape[1]] = bar
    cv2.putText(strip, f"0 .. 1: {COLOUR_BAR_TITLE}" + (f" (below {threshold:.0%} not drawn)"
                                                       if threshold else ""),
                (left, top + bar_h + line_h * 3 // 4), font, 0.6 * scale, (235, 235, 235), thick,
                cv2.LINE_AA)
    return np.vstack([rgb, strip])
