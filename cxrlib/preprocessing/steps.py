"""Preprocessing of decoded films: white balance, grey, CLAHE, gamma, resize.

Two forms of the published white balance live here. :func:`white_balance_reference` is the
published code, kept readable: per channel, ``np.percentile`` at ``perc`` and ``100 - perc``,
then a linear stretch. :func:`white_balance` gives the same bytes much faster: an 8-bit channel
has only 256 possible values, so both percentiles can be read off a 256-bin histogram (numpy's
linear interpolation reproduced exactly) and the stretch becomes a 256-entry lookup table
evaluated with the very same float64 expression. Tests hold the two equal pixel for pixel.

The pipeline that runs these steps in their configured order is :mod:`.pipeline`.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np


# cv2.calcHist returns float32 counts, exact only below 2**24; bigger films are counted in bands.
_HIST_EXACT_PIXELS = 1 << 24
_BAND_ROWS = 64
_clahe_local = threading.local()  # a CLAHE object keeps scratch buffers: one per thread


def _check_film(film: np.ndarray) -> np.ndarray:
    film = np.asarray(film)
    if film.dtype != np.uint8:
        raise ValueError(f"a film must be uint8, got {film.dtype}")
    if film.ndim == 3 and film.shape[2] == 1:
        film = film[:, :, 0]
    if not (film.ndim == 2 or (film.ndim == 3 and film.shape[2] == 3)):
        raise ValueError(f"a film must be (H, W) grey or (H, W, 3) RGB, got shape {film.shape}")
    if film.shape[0] == 0 or film.shape[1] == 0:
        raise ValueError("a film must not be empty")
    return np.ascontiguousarray(film)  # views (crops, flips) are copied once for OpenCV


# --------------------------------------------------------------------------- white balance


def white_balance_reference(film: np.ndarray, perc: float = 0.05) -> np.ndarray:
    """White balance exactly as published (``np.percentile`` per channel, linear stretch).

    For each channel ``c``: ``lo, hi = np.percentile(c, perc), np.percentile(c, 100 - perc)``
    and ``c' = clip((c - lo) * 255 / (hi - lo), 0, 255).astype(uint8)``.

    The published formula divides by zero on a flat channel (``hi == lo``); such a channel is
    returned unchanged (there is no contrast to stretch).

    Args:
        film: uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB film.
        perc: percentile in ``[0, 50)`` mapped to black (and ``100 - perc`` to white).

    Returns:
        uint8 array of the film's shape.
    """
    film = _check_film(film)
    perc = float(perc)
    channels = film[:, :, None] if film.ndim == 2 else film
    out = np.empty_like(channels)
    for i in range(channels.shape[2]):
        ch = channels[:, :, i]
        lo, hi = np.percentile(ch, perc), np.percentile(ch, 100 - perc)
        if hi == lo:
            out[:, :, i] = ch
        else:
            out[:, :, i] = np.clip((ch - lo) * 255 / (hi - lo), 0, 255).astype(np.uint8)
    return out.reshape(film.shape)


def channel_histogram(channel: np.ndarray) -> np.ndarray:
    """Counts of the 256 values of one 2-D uint8 channel (exact int64, any size)."""
    rows_per_band = max(1, _HIST_EXACT_PIXELS // max(1, channel.shape[1]) - 1)
    counts = np.zeros(256, np.int64)
    for top in range(0, channel.shape[0], rows_per_band):
        band = channel[top:top + rows_per_band]
        counts += cv2.calcHist([band], [0], None, [256], [0, 256]).reshape(256).astype(np.int64)
    return counts


def percentiles_from_histogram(counts: np.ndarray, perc: float) -> tuple[float, float]:
    """``np.percentile(x, perc)`` and ``np.percentile(x, 100 - perc)`` from ``x``'s histogram.

    Reproduces numpy's default ``"linear"`` method operation by operation: virtual index
    ``(n - 1) * q``, the two neighbouring order statistics ``a <= b``, weight ``t`` = its
    fractional part, then ``a + (b - a) * t`` when ``t < 0.5`` else ``b - (b - a) * (1 - t)``.
    Python float arithmetic is IEEE double, as numpy's float64, so the results are bit-equal.

    Args:
        counts: ``(256,)`` counts of each uint8 value.
        perc: percentile in ``[0, 50)``.

    Returns:
        ``(lo, hi)`` as Python floats.
    """
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])

    def order_statistic(k: int) -> int:  # the k-th smallest value (0-based) of x
        return int(np.searchsorted(cumulative, k, side="right"))

    def linear(percent: float) -> float:
        virtual = (n - 1) * (percent / 100)
        if virtual >= n - 1:
            return float(order_statistic(n - 1))
        below = int(np.floor(virtual))
        t = virtual - below
        a, b = order_statistic(below), order_statistic(below + 1)
        return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)

    perc = float(perc)
    return linear(perc), linear(100 - perc)


def stretch_lut(lo: float, hi: float) -> np.ndarray:
    """The 256-entry table of the published stretch: entry ``v`` is what pixel value ``v`` becomes.

    Uses the reference's own expression on ``arange(256)`` (same float64 operations, same clip,
    same truncating uint8 cast), so a table lookup equals the per-pixel formula bit for bit.
    A flat channel (``hi == lo``) gets the identity table, as in the reference.
    """
    values = np.arange(256, dtype=np.uint8)
    if hi == lo:
        return values
    return np.clip((values - lo) * 255 / (hi - lo), 0, 255).astype(np.uint8)


def _channel_lut(channel: np.ndarray, perc: float) -> np.ndarray:
    return stretch_lut(*percentiles_from_histogram(channel_histogram(channel), perc))


def grey_if_channels_equal(film: np.ndarray) -> np.ndarray | None:
    """The single channel of a grey film stored as RGB (R == G == B everywhere), else ``None``.

    Grey films saved as RGB are common (JPEG exports); handling them once saves two thirds
    of the work. Checked in bands of rows that stay in cache (about twice as fast as whole-film
    copies on a 4000 px film), stopping at the first band that differs.
    """
    if film.ndim != 3:
        return None
    first = np.empty(film.shape[:2], np.uint8)
    for top in range(0, film.shape[0], _BAND_ROWS):
        band = film[top:top + _BAND_ROWS]
        channel = cv2.extractChannel(band, 0)
        if cv2.norm(band, cv2.cvtColor(channel, cv2.COLOR_GRAY2RGB), cv2.NORM_INF) != 0:
            return None
        first[top:top + _BAND_ROWS] = channel
    return first


def channels_equal(film: np.ndarray) -> bool:
    """True for a 3-channel film whose R, G and B are identical."""
    return grey_if_channels_equal(film) is not None


def white_balance(film: np.ndarray, perc: float = 0.05) -> np.ndarray:
    """White balance, fast: bit-exact with :func:`white_balance_reference`.

    Each channel's percentiles come from its 256-bin histogram and the stretch is a lookup table
    (``cv2.LUT``). A colour film whose three channels are equal is computed once.

    Args:
        film: uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB film.
        perc: percentile in ``[0, 50)`` mapped to black (and ``100 - perc`` to white).

    Returns:
        uint8 array of the film's shape.
    """
    film = _check_film(film)
    if film.ndim == 2:
        return cv2.LUT(film, _channel_lut(film, perc))
    grey = grey_if_channels_equal(film)
    if grey is not None:
        return cv2.cvtColor(cv2.LUT(grey, _channel_lut(grey, perc)), cv2.COLOR_GRAY2RGB)
    channels = [cv2.extractChannel(film, i) for i in range(3)]
    return cv2.merge([cv2.LUT(ch, _channel_lut(ch, perc)) for ch in channels])


# --------------------------------------------------------------------------- other steps


def to_grey(film: np.ndarray) -> np.ndarray:
    """Grey film: ``cv2.COLOR_RGB2GRAY`` for RGB (OpenCV's fixed-point weights); grey stays grey.

    Three equal channels give back exactly that channel (the fixed-point weights sum to one).
    """
    film = _check_film(film)
    return film if film.ndim == 2 else cv2.cvtColor(film, cv2.COLOR_RGB2GRAY)


def _clahe_object(clip_limit: float, tile_grid: int):
    cache = getattr(_clahe_local, "cache", None)
    if cache is None:
        cache = _clahe_local.cache = {}
    key = (float(clip_limit), int(tile_grid))
    if key not in cache:
        cache[key] = cv2.createCLAHE(clipLimit=key[0], tileGridSize=(key[1], key[1]))
    return cache[key]


def clahe(grey: np.ndarray, clip_limit: float = 2.0, tile_grid: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV) of a grey film.

    Args:
        grey: uint8 ``(H, W)``.
        clip_limit: OpenCV clip limit (published 2.0).
        tile_grid: tiles per side (published 8, i.e. 8x8).

    Returns:
        uint8 ``(H, W)``.
    """
    grey = _check_film(grey)
    if grey.ndim != 2:
        raise ValueError("CLAHE needs a grey film; call to_grey first")
    return _clahe_object(clip_limit, tile_grid).apply(grey)


def gamma_lut(gamma: float) -> np.ndarray:
    """Entry ``v`` = ``round(255 * (v / 255) ** gamma)``, clipped to uint8."""
    values = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(np.rint(255.0 * values ** float(gamma)), 0, 255).astype(np.uint8)


def apply_gamma(grey: np.ndarray, gamma: float) -> np.ndarray:
    """Gamma curve ``255 * (v / 255) ** gamma`` (rounded) through a lookup table.

    ``gamma < 1`` brightens, ``> 1`` darkens; ``1.0`` returns the input unchanged.
    """
    grey = _check_film(grey)
    return cv2.LUT(grey, gamma_lut(gamma))


def resize_square(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` with ``INTER_AREA`` (aspect ratio not kept, as published)."""
    if grey.shape[:2] == (size, size):
        return grey
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)


def histogram(img: np.ndarray) -> np.ndarray:
    """Counts of the 256 uint8 values over every pixel (and every channel) of ``img``.

    Returns:
        ``(256,)`` int64.
    """
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"histogram needs uint8, got {img.dtype}")
    if img.size == 0:
        return np.zeros(256, np.int64)
    if img.ndim != 2:
        img = img.reshape(-1, 1)  # every sample of every channel, as one column
    return channel_histogram(np.ascontiguousarray(img))
