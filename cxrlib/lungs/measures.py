"""Measures on lung masks: Dice against a reference, CAM mass inside the lungs, the lungs' box."""
from __future__ import annotations

import cv2
import numpy as np


def dice(pred: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Dice overlap ``2 |P & T| / (|P| + |T|)`` of two lung masks, leaving out ``ignore`` pixels.

    Args:
        pred: predicted mask (bool, or anything where non-zero means lung). Resized to
            ``truth``'s shape (nearest neighbour) when it differs.
        truth: reference mask, ``(H, W)``.
        ignore: pixels to leave out of both masks (e.g. the value-127 "device over the lung"
            pixels of cxr3-lungs), same shape as ``truth``; None leaves nothing out.

    Returns:
        Dice in [0, 1]; 1.0 when both masks are empty outside ``ignore`` (they agree).
    """
    truth = np.asarray(truth).astype(bool)
    pred = np.asarray(pred)
    if pred.shape != truth.shape:
        pred = cv2.resize(pred.astype(np.uint8), (truth.shape[1], truth.shape[0]),
                          interpolation=cv2.INTER_NEAREST)
    pred = pred.astype(bool)
    if ignore is not None:
        keep = ~np.asarray(ignore).astype(bool)
        pred, truth = pred & keep, truth & keep
    total = int(pred.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int((pred & truth).sum()) / total


def cam_in_lung_share(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of a CAM's mass that lies inside the lung mask: ``sum(heatmap * mask) / sum(heatmap)``.

    Args:
        heatmap: non-negative ``(h, w)`` CAM (any resolution; negative values count as 0).
        mask: ``bool (H, W)`` lung mask; the heatmap is resized to it (bilinear) when sizes differ.

    Returns:
        A value in [0, 1], or ``nan`` for an all-zero heatmap.
    """
    heat = np.asarray(heatmap, np.float32)
    if heat.shape != mask.shape:
        heat = cv2.resize(heat, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = np.clip(heat, 0, None)
    total = float(heat.sum())
    if total <= 0:
        return float("nan")
    return float(heat[np.asarray(mask).astype(bool)].sum() / total)


def lung_box(mask: np.ndarray, margin: float = 0.1) -> tuple[int, int, int, int]:
    """Bounding box of both lungs plus a margin, clipped to the film.

    Args:
        mask: ``bool (H, W)`` lung mask.
        margin: added on every side, as a fraction of the box's own width (left and right)
            and height (top and bottom); 0 gives the tight box.

    Returns:
        ``(x0, y0, x1, y1)`` with exclusive ends, so ``film[y0:y1, x0:x1]`` is the crop. An
        empty mask gives the whole film ``(0, 0, W, H)``.

    Raises:
        ValueError: a negative margin.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    mask = np.asarray(mask).astype(bool)
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0, 0, w, h
    x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    return (max(0, int(np.floor(x0 - dx))), max(0, int(np.floor(y0 - dy))),
            min(w, int(np.ceil(x1 + dx))), min(h, int(np.ceil(y1 + dy))))
