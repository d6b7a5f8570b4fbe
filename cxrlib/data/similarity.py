"""The checks that confirm a candidate near-duplicate pair: thumbnail correlations and a crop match.

See :mod:`cxrlib.data.duplicates` for the method and the thresholds' measurements.
"""
from __future__ import annotations

import cv2
import numpy as np

from cxrlib.data.film_scan import WINDOWS

COARSE = 64
# Measured on cxr3 (300 distinct candidate pairs + the hardest one found; 90 planted crops of
# 8-10%, some re-encoded at JPEG quality 25): the coarse 64 px match (sigma 3) gives cropped
# copies >= 0.76 and distinct films a median of 0.46; the fine 128 px match (sigma 1, shares
# refined in 1.25% steps) then gives cropped copies a median of 0.74-0.81 (crops anchored at
# an edge or the centre >= 0.69; off-grid crops down to 0.45) and distinct films up to 0.49 over
# all 1800 films; distinct 256 px synthetic drawings of one class up to 0.56. The threshold 0.6
# favours precision: some off-grid or heavily re-encoded crops are missed.
# Copies: fine-detail correlation of rescaled cxr3 copies >= 0.91, JPEG quality 20 re-encodes
# median 0.935 (min 0.77), distinct cxr3 candidates <= 0.48, distinct synthetic films <= 0.82.
COARSE_CROP_GATE = 0.65
FINE_SIGMA = 1.0

def thumb_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally sized thumbnails (1 = identical up to contrast)."""
    x = a.astype(np.float64).ravel() - a.mean()
    y = b.astype(np.float64).ravel() - b.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def detail_correlation(a: np.ndarray, b: np.ndarray, sigma: float = 1.0) -> float:
    """Correlation of the fine detail (image minus its Gaussian blur) of two equal-size thumbnails.

    Two films of the same layout (two patients, or two synthetic drawings) correlate in their
    coarse structure; only a copy also repeats the fine texture and noise.
    """
    return thumb_correlation(_high_pass(a, sigma), _high_pass(b, sigma))


def _high_pass(img: np.ndarray, sigma: float) -> np.ndarray:
    f = img.astype(np.float32)
    return f - cv2.GaussianBlur(f, (0, 0), sigma)


def crop_match(crop: np.ndarray, whole: np.ndarray,
               shares: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
               sigma: float = 3.0) -> tuple[float, float, float]:
    """How well thumbnail ``crop`` matches a sub-window of thumbnail ``whole``.

    Both are films squashed to a square; a crop keeping share ``(cx, cy)`` of the original's
    sides therefore appears in ``whole`` resized to ``(cx * S, cy * S)``. The best normalised
    cross-correlation (``TM_CCOEFF_NORMED``) over the candidate shares and all positions is
    taken on high-pass-filtered images (minus a Gaussian blur of ``sigma`` pixels), so the
    layout every chest film shares does not count as a match.

    Args:
        crop: square grey thumbnail of the possibly cropped film.
        whole: square grey thumbnail (same size) of the possibly original film.
        shares: candidate x and y shares; default 0.7-1.0 in steps of 0.05 on both axes.
        sigma: high-pass scale in pixels of ``whole``.

    Returns:
        ``(score, cx, cy)``: the best score in [-1, 1] and the shares where it was found.
    """
    size = whole.shape[0]
    if shares is None:
        grid = tuple(np.round(np.arange(0.7, 1.001, 0.05), 3))
        shares = (grid, grid)
    target = _high_pass(whole, sigma)
    best = (-1.0, 1.0, 1.0)
    for cx in shares[0]:
        for cy in shares[1]:
            tw, th = max(8, round(cx * size)), max(8, round(cy * size))
            if tw > size or th > size:
                continue
            template = _high_pass(cv2.resize(crop, (tw, th), interpolation=cv2.INTER_AREA),
                                  sigma * min(cx, cy))
            if not np.ptp(template) > 0:
                continue
            score = float(cv2.matchTemplate(target, template, cv2.TM_CCOEFF_NORMED).max())
            if score > best[0]:
                best = (score, cx, cy)
    return best


def _hinted_shares(share: float) -> tuple[float, ...]:
    return tuple(s for s in (share - 0.05, share - 0.025, share, share + 0.025, share + 0.05) if s <= 1.0)


def _confirm_crop(part_small: np.ndarray, whole_small: np.ndarray, part: np.ndarray,
                  whole: np.ndarray, shares) -> float:
    """Coarse match at 64 px over the hinted shares, refined at 128 px where it is promising;
    a pair that fails the coarse gate scores ``nan`` (not confirmed)."""
    coarse, cx, cy = crop_match(part_small, whole_small, shares, sigma=3.0)
    if coarse < COARSE_CROP_GATE:
        return float("nan")
    steps = np.arange(-0.025, 0.026, 0.0125)
    near = (tuple(c for c in cx + steps if c <= 1.0), tuple(c for c in cy + steps if c <= 1.0))
    return crop_match(part, whole, near, sigma=FINE_SIGMA)[0]


class PairCheck:
    """The copy and crop checks of pairs of contents (:mod:`cxrlib.data.candidates`), each
    computed once: the same two thumbnails give the same answer whichever of their films are
    compared, so twelve hard links of one film cost one check."""

    def __init__(self, sig, contents, small, *, min_correlation, min_detail, min_crop_score,
                 max_window):
        self.sig, self.contents, self.small = sig, contents, small
        self.min_correlation, self.min_detail = min_correlation, min_detail
        self.min_crop_score, self.max_window = min_crop_score, max_window
        self._copy: dict[tuple, tuple[bool, float]] = {}
        self._crop: dict[tuple, float] = {}

    def pair(self, a: int, b: int, window: int, part_is_a: bool, k: int):
        """``(kind or None, correlation, crop score)`` of contents ``a`` and ``b``."""
        thumbs, first = self.sig.thumbs, self.contents.first
        if (a, b) not in self._copy:
            corr = thumb_correlation(self.small[a], self.small[b])
            copy = corr >= self.min_correlation and detail_correlation(
                thumbs[first[a]], thumbs[first[b]]) >= self.min_detail
            self._copy[a, b] = (copy, corr)
        copy, corr = self._copy[a, b]
        if copy:
            return "copy", corr, float("nan")
        if window > self.max_window:
            return None, corr, float("nan")
        part, whole = (a, b) if part_is_a else (b, a)
        if (part, whole, k) not in self._crop:
            (sx, _), (sy, _) = WINDOWS[int(k)]
            self._crop[part, whole, k] = _confirm_crop(
                self.small[part], self.small[whole], thumbs[first[part]], thumbs[first[whole]],
                (_hinted_shares(sx), _hinted_shares(sy)))
        crop = self._crop[part, whole, k]
        return ("crop" if crop >= self.min_crop_score else None), corr, crop
