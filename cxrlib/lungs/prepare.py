"""What a film becomes before the segmenter sees it; the same function for training and inference."""
from __future__ import annotations

import cv2
import numpy as np

STRETCH_PERCENT = 0.5  # the darkest and brightest 0.5 % of pixels saturate


def grey_of(film: np.ndarray) -> np.ndarray:
    """``uint8 (H, W)`` grey of a grey, RGB or RGBA ``uint8`` film.

    Raises:
        ValueError: not a 2-D grey or 3-D colour array.
    """
    film = np.asarray(film)
    if film.ndim == 2:
        return film if film.dtype == np.uint8 else np.clip(film, 0, 255).astype(np.uint8)
    if film.ndim == 3 and film.shape[2] in (3, 4):
        return cv2.cvtColor(np.ascontiguousarray(film[..., :3]).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    if film.ndim == 3 and film.shape[2] == 1:
        return grey_of(film[..., 0])
    raise ValueError(f"a film is (H, W) grey or (H, W, 3) RGB, got shape {film.shape}")


def prepare_film(film: np.ndarray, size: int) -> np.ndarray:
    """The network's view of a film: grey, squashed to ``size`` x ``size``, contrast stretched.

    Squashing (not padding) keeps every pixel of the film and gives the lungs the whole input;
    the network is trained on films squashed the same way, and the mask is stretched back.
    The percentile stretch takes out most of the exposure differences between machines before
    the network sees them (augmentation covers the rest).

    Args:
        film: ``uint8`` grey ``(H, W)`` or RGB ``(H, W, 3)``, any size.
        size: working side in pixels.

    Returns:
        ``uint8 (size, size)``.
    """
    grey = grey_of(film)
    if grey.shape != (size, size):
        # INTER_AREA when shrinking (an average, no aliasing); bilinear for small films.
        shrink = grey.shape[0] >= size and grey.shape[1] >= size
        grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    hist = np.bincount(grey.ravel(), minlength=256).cumsum()
    cut = STRETCH_PERCENT / 100.0 * hist[-1]
    lo, hi = int(np.searchsorted(hist, cut)), int(np.searchsorted(hist, hist[-1] - cut))
    if hi - lo < 8:  # (nearly) flat film: nothing to stretch
        return grey
    lut = np.clip((np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo)), 0, 255)
    return lut.round().astype(np.uint8)[grey]
