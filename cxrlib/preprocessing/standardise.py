"""Intensity standardisation: each film's histogram mapped onto a standard scale learned on the
training films (Nyúl & Udupa, "On standardizing the MR image intensity scale", Magnetic
Resonance in Medicine 42, 1999; Nyúl, Udupa & Zhang, "New variants of a method of MRI scale
standardization", IEEE TMI 19, 2000).

Films from different sources differ in their contrast curve and exposure, and a model can learn
a source from that alone. Nyúl–Udupa standardisation removes it with a piecewise-linear map:

* **Landmarks** of a film: its intensities at :data:`~cxrlib.core.config.NYUL_PERCENTILES`
  (1st, the deciles without the median, 99th), read off its 256-bin histogram with numpy's
  linear percentile (:func:`cxrlib.preprocessing.steps.percentiles_from_histogram`).
* **Learning** (:func:`learn_scale`, on the TRAINING films only): each training film's
  landmarks are mapped linearly so that its 1st and 99th percentiles land on 0 and 255; the
  standard scale is the mean of those mapped landmarks.
* **Mapping** (:func:`standardise_film`): the film's own landmarks go onto the standard scale,
  linearly between landmarks and continuing the first / last segment outside them, clipped to
  [0, 255]; as a 256-entry lookup table.

The scale is part of the run's :class:`~cxrlib.core.config.PreprocessConfig`
(``standardise="nyul"``, ``standard_scale``): learned once by :func:`cxrlib.training.standardisation.resolve_standardisation`
before the run exists, so it is stored with the run (config.json), is part of its id and
caches, and every inference path applies it (:func:`cxrlib.preprocessing.pipeline.preprocess_film`
runs it after the resize).
"""
from __future__ import annotations

import numpy as np

from cxrlib.core.config import NYUL_PERCENTILES
from cxrlib.preprocessing.steps import histogram, percentiles_from_histogram


def landmarks(film: np.ndarray) -> np.ndarray:
    """A uint8 film's intensities at :data:`NYUL_PERCENTILES` (numpy's linear percentiles)."""
    counts = histogram(film)
    out = np.empty(len(NYUL_PERCENTILES))
    for i, p in enumerate(NYUL_PERCENTILES):
        lo, hi = percentiles_from_histogram(counts, p if p < 50 else 100 - p)
        out[i] = lo if p < 50 else hi
    return out


def learn_scale(films) -> tuple[float, ...]:
    """The standard scale of a set of training films (see the module docstring).

    Raises:
        ValueError: no films, or every film flat (no contrast to learn from).
    """
    mapped = []
    for film in films:
        lm = landmarks(film)
        if lm[-1] > lm[0]:
            mapped.append((lm - lm[0]) * 255.0 / (lm[-1] - lm[0]))
    if not mapped:
        raise ValueError("intensity standardisation needs training films with some contrast")
    return tuple(round(float(v), 4) for v in np.maximum.accumulate(np.mean(mapped, axis=0)))


def standardise_lut(film_landmarks: np.ndarray, scale) -> np.ndarray:
    """The 256-entry uint8 table mapping a film with ``film_landmarks`` onto ``scale``."""
    src = np.asarray(film_landmarks, np.float64)
    dst = np.asarray(scale, np.float64)
    keep = np.concatenate([[True], np.diff(src) > 0])  # repeated landmarks: the first one
    src, dst = src[keep], dst[keep]
    v = np.arange(256, dtype=np.float64)
    if len(src) < 2:  # a flat film: nothing to stretch, shift it onto the scale's middle
        out = np.full(256, dst.mean()) + (v - src[0])
    else:
        out = np.interp(v, src, dst)
        lo_slope = (dst[1] - dst[0]) / (src[1] - src[0])
        hi_slope = (dst[-1] - dst[-2]) / (src[-1] - src[-2])
        out = np.where(v < src[0], dst[0] + (v - src[0]) * lo_slope, out)
        out = np.where(v > src[-1], dst[-1] + (v - src[-1]) * hi_slope, out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def standardise_film(film: np.ndarray, scale) -> np.ndarray:
    """``film`` (grey uint8) with its landmarks mapped onto ``scale``."""
    return standardise_lut(landmarks(film), scale)[np.asarray(film)]
