"""Lung fields of a chest film by a classical intensity + morphology method, and CAM share in them.

Why this method: air-filled lungs are the largest dark regions *inside* the body on a frontal
film, separated by the bright mediastinum and bounded by bright ribs, diaphragm and soft tissue.
Without a trained segmentation model (none ships offline here), thresholding that contrast is
the established classical approach. Steps, on the film squashed to 256 x 256:

1. percentile stretch (1-99%) and a Gaussian blur (sigma 2) against noise and rib texture;
2. Otsu's threshold computed on the central region (10-90% of each side) only, where lungs and
   mediastinum dominate: the dark air outside the body and black film borders would otherwise
   pull the threshold down;
3. a morphological opening (disk of radius 4) breaks thin bridges between the lungs, the
   trachea and the air outside the body;
4. dark components that touch the image border are outside air and dropped, unless they are
   lung-shaped after cutting a 4% frame (tightly cropped films put the lungs on the edge);
5. the largest remaining component centred in the left half and in the right half (but not
   on the film's outer 12%) are the lungs;
   holes are filled and each lung is replaced by its convex hull. The hull gives back lung
   regions that consolidation made bright (COVID-19 opacities would otherwise be cut out,
   which is exactly where a CAM *should* look); it over-includes the heart notch a little.

A quality check (two lungs, each 3-35% of the film and together at most 55%, similar sizes, tall enough, centred
vertically) decides whether the result is trusted; otherwise an anatomical prior (two
ellipses at the usual lung positions) is returned and flagged ``method="prior"``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORK = 256


@dataclass
class LungSegmentation:
    """A lung mask and how it was obtained.

    Attributes:
        mask: ``bool (H, W)`` at the film's size, True inside the lung fields.
        method: ``"threshold"`` (the classical method passed its quality check) or ``"prior"``
            (fallback ellipses: treat shares computed with it as rough).
        reason: why the fallback was used ("" otherwise).
    """

    mask: np.ndarray
    method: str
    reason: str = ""


def lung_mask(film: np.ndarray) -> np.ndarray:
    """``bool (H, W)`` lung-field mask of a grey or RGB uint8 film (see :func:`segment_lungs`)."""
    return segment_lungs(film).mask


def prior_mask(height: int, width: int) -> np.ndarray:
    """The anatomical prior: two ellipses at typical lung positions on a frontal film."""
    mask = np.zeros((height, width), np.uint8)
    for cx in (0.3, 0.7):
        cv2.ellipse(mask, (round(cx * width), round(0.48 * height)),
                    (round(0.15 * width), round(0.3 * height)), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def segment_lungs(film: np.ndarray) -> LungSegmentation:
    """Segment the lung fields of one film (method in the module docstring).

    Args:
        film: ``uint8`` grey ``(H, W)`` or RGB ``(H, W, 3)``.

    Returns:
        A :class:`LungSegmentation` whose mask has the film's height and width.
    """
    grey = film if film.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(film[..., :3]), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    small = cv2.resize(grey, (WORK, WORK), interpolation=cv2.INTER_AREA).astype(np.float32)
    lo, hi = np.percentile(small, (1, 99))
    if hi - lo < 1:
        return LungSegmentation(prior_mask(h, w), "prior", "flat image")
    norm = np.clip((small - lo) * (255.0 / (hi - lo)), 0, 255)
    norm = cv2.GaussianBlur(norm, (0, 0), 2).astype(np.uint8)
    c0, c1 = int(0.1 * WORK), int(0.9 * WORK)
    threshold, _ = cv2.threshold(norm[c0:c1, c0:c1], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = (norm < threshold).astype(np.uint8)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, disk)
    lungs, reason = _pick_lungs(dark)
    if lungs is None:
        # Tightly cropped films: lungs reach the edge. Cut a frame and try once more.
        f = int(0.04 * WORK)
        framed = dark.copy()
        framed[:f], framed[-f:], framed[:, :f], framed[:, -f:] = 0, 0, 0, 0
        framed = cv2.morphologyEx(framed, cv2.MORPH_OPEN, disk)
        lungs, reason = _pick_lungs(framed)
    if lungs is None:
        return LungSegmentation(prior_mask(h, w), "prior", reason)
    mask = cv2.resize(lungs, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
    return LungSegmentation(mask, "threshold")


def _pick_lungs(dark: np.ndarray) -> tuple[np.ndarray | None, str]:
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(dark, connectivity=8)
    best: dict[str, tuple[int, int]] = {}
    for k in range(1, n):
        x, y, bw, bh, area = stats[k]
        if x == 0 or y == 0 or x + bw >= WORK or y + bh >= WORK:
            continue  # outside air reaches the border
        cx = centroids[k][0] / WORK
        if not (0.12 < cx < 0.48 or 0.52 < cx < 0.88):
            continue  # lungs sit either side of the mediastinum, not on the film's edge
        side = "left" if cx < 0.5 else "right"
        if area > best.get(side, (0, 0))[0]:
            best[side] = (area, k)
    if len(best) < 2:
        return None, "fewer than two dark regions inside the body"
    hulls = np.zeros((WORK, WORK), np.float32)
    areas = []
    for _, k in best.values():
        component = (labels == k).astype(np.uint8)
        contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = cv2.convexHull(np.concatenate(contours))
        one = np.zeros((WORK, WORK), np.uint8)
        cv2.fillPoly(one, [hull], 1)
        hulls = np.maximum(hulls, one)
        ys = np.nonzero(one.any(axis=1))[0]
        areas.append((one.sum() / WORK ** 2, (ys[-1] - ys[0]) / WORK, ys.mean() / WORK))
    shares = [a[0] for a in areas]
    if min(shares) < 0.03 or max(shares) > 0.35 or sum(shares) > 0.55:
        return None, f"implausible lung sizes ({min(shares):.0%}, {max(shares):.0%} of the film)"
    if min(shares) / max(shares) < 0.35:
        return None, "left and right lung sizes too different"
    if min(a[1] for a in areas) < 0.25 or not all(0.2 < a[2] < 0.8 for a in areas):
        return None, "lung regions too short or off-centre"
    return hulls, ""


def cam_in_lung_share(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of a CAM's mass that lies inside the lung mask: ``sum(heatmap * mask) / sum(heatmap)``.

    Args:
        heatmap: non-negative ``(h, w)`` CAM (any resolution).
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
    return float(heat[mask.astype(bool)].sum() / total)
