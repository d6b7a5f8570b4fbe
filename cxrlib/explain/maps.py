"""What happens to a raw class activation map: the flatness check, resizing and normalisation.

A raw map ``M = combine(A, dS/dA)`` (at the explained layer's ``h x w``) becomes a heatmap by
``ReLU``, a bilinear resize to the input size and a min-max scale to [0, 1]. Min-max scaling hides
how much evidence there was: a map whose positive part is a speck of float noise would be
stretched to a full-range picture. So before scaling, a map is **flat** when its positive part has
(almost) no contrast compared with the map's own magnitude::

    max(ReLU(M)) - min(ReLU(M)) <= FLAT_TOLERANCE * max|M|

(all-zero after the ReLU, constant, or nearly so). Flat maps are returned as all zeros and
reported (``Explanation.flat``); :func:`is_flat` tells them from a normalised heatmap. The typical
cause is a method that needs non-negative activations used on a layer whose activations are
mostly negative (Grad-CAM++ on MobileNetV2's pre-activation ``block_16_depthwise``).
"""
from __future__ import annotations

import cv2
import numpy as np

FLAT_TOLERANCE = 1e-3
"""Relative contrast below which a raw map counts as flat (see the module docstring)."""


def flat_maps(raw: np.ndarray, tolerance: float = FLAT_TOLERANCE) -> np.ndarray:
    """Which raw maps ``(N, h, w)`` (before the ReLU) are flat: ``bool (N,)``.

    A map with a non-finite value counts as flat too: there is nothing trustworthy to draw.
    """
    raw = np.asarray(raw, np.float64)
    positive = np.maximum(raw, 0.0)
    contrast = positive.max(axis=(1, 2)) - positive.min(axis=(1, 2))
    scale = np.abs(raw).max(axis=(1, 2))
    finite = np.isfinite(raw).all(axis=(1, 2))
    return ~finite | ~(contrast > tolerance * scale)


def is_flat(heatmap: np.ndarray, tolerance: float = 1e-6) -> bool | np.ndarray:
    """Whether a heatmap (``(h, w)``, or a batch ``(N, h, w)``) is flat, i.e. has no contrast.

    CAM methods return flat maps as all zeros, so on their output this is the ``flat`` flag of
    :class:`cxrlib.explain.base.Explanation`. A flat map is not an explanation: never draw it
    as one.

    Returns:
        ``bool`` for one map, ``bool (N,)`` for a batch.
    """
    heat = np.nan_to_num(np.asarray(heatmap, np.float32))
    if heat.ndim == 2:
        return bool(heat.max() - heat.min() <= tolerance)
    if heat.ndim != 3:
        raise ValueError(f"heatmap must be (h, w) or (N, h, w), got shape {heat.shape}")
    return heat.max(axis=(1, 2)) - heat.min(axis=(1, 2)) <= tolerance


def normalise(maps: np.ndarray) -> np.ndarray:
    """Min-max scale each map of ``(N, h, w)`` to [0, 1]; a flat (e.g. all-zero) map becomes zeros."""
    maps = np.asarray(maps, np.float32)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    ok = np.isfinite(span) & (span > 1e-30)
    out = np.where(ok, (maps - lo) / np.where(ok, span, 1.0), 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(N, h, w)`` maps to ``(N, H, W)`` with ``size = (H, W)``."""
    h, w = size
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps])


def to_heatmaps(raw: np.ndarray, size: tuple[int, int],
                tolerance: float = FLAT_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Raw maps ``(N, h, w)`` -> ``(heatmaps (N, H, W) in [0, 1], flat bool (N,))``.

    ReLU, bilinear resize to ``size``, min-max scale; flat maps (:func:`flat_maps`) become zeros.
    """
    flat = flat_maps(raw, tolerance)
    raw = np.nan_to_num(np.asarray(raw, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    heatmaps = normalise(resize_maps(np.maximum(raw, 0.0), size))
    heatmaps[flat] = 0.0
    return heatmaps, flat


def principal_projection(weighted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Eigen-smoothing: each map's weighted activations ``(N, h, w, K)`` projected on their first
    principal component, ``(N, h, w)``.

    As pytorch-grad-cam's ``get_2d_projection``: the ``(h w, K)`` matrix is centred per channel
    and projected on its first right-singular vector. The singular vector's sign is arbitrary:
    it is chosen so that the projection correlates non-negatively with ``reference`` (the plain
    sum over channels, ``(N, h, w)``), so the smoothed map keeps the evidence's sign.
    """
    n, h, w, k = weighted.shape
    out = np.zeros((n, h, w), np.float32)
    for i in range(n):
        a = weighted[i].reshape(h * w, k).astype(np.float64)
        a = a - a.mean(axis=0)
        if not np.abs(a).max() > 0:
            continue  # nothing varies: a flat map
        _, _, vt = np.linalg.svd(a, full_matrices=False)
        projection = a @ vt[0]
        ref = np.asarray(reference[i], np.float64).ravel()
        if np.dot(projection - projection.mean(), ref - ref.mean()) < 0:
            projection = -projection
        out[i] = projection.reshape(h, w)
    return out


def effective_resolution(cells_per_side: int | None, input_side: int | None,
                         film_side: int | None = None) -> dict:
    """How fine a map is: ``cells_per_side`` (cells of the map before it is resized, e.g. 7),
    ``input_px_per_cell`` (model input pixels per cell, e.g. 32 at 224 px) and
    ``film_px_per_cell`` (pixels of a film whose longer side is ``film_side``; None if not given
    or unknown)."""
    def per_cell(side):
        return round(side / cells_per_side, 1) if side and cells_per_side else None

    return {"cells_per_side": cells_per_side, "input_px_per_cell": per_cell(input_side),
            "film_px_per_cell": per_cell(film_side)}


def pixel_order(heatmap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices, most highlighted first; equal values in random order (``rng``)."""
    flat = heatmap.ravel()
    shuffled = rng.permutation(flat.size)
    return shuffled[np.argsort(-flat[shuffled], kind="stable")]
