"""Test-time augmentation: a model's probabilities averaged over fixed shifted / scaled views.

The views are deterministic affine copies of the grey model-sized film (no randomness, so a
prediction is a pure function of the film): small shifts and zooms of the kind the films
already vary by (patient positioning, collimation). No flips: a chest film is not left-right
symmetric (heart, aortic knob, the "R" marker). Borders are reflected, as in the training
augmentation (:func:`cxrlib.training.features.augment_films`). Each view goes through the one
compiled forward pass (:func:`cxrlib.models.inference.predict`); their probabilities are
averaged (arithmetic mean, which keeps rows summing to 1).
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

SHIFT = 0.04  # of the side: 9 px at 224
SCALES = (0.92, 1.08)

VIEWS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "none": ((0.0, 0.0, 1.0),),
    "shift": ((0.0, 0.0, 1.0), (SHIFT, 0.0, 1.0), (-SHIFT, 0.0, 1.0), (0.0, SHIFT, 1.0),
              (0.0, -SHIFT, 1.0)),
}
VIEWS["shift_scale"] = VIEWS["shift"] + tuple((0.0, 0.0, s) for s in SCALES)
"""``(dx, dy, scale)`` per view, shifts as fractions of the side; the identity comes first."""


def view_matrix(h: int, w: int, dx: float, dy: float, scale: float) -> np.ndarray:
    """The ``2 x 3`` affine matrix of a view of an ``h x w`` image: a zoom by ``scale`` about the
    centre, then a shift by ``(dx, dy)`` times the side (OpenCV's forward map, film -> view)."""
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), 0.0, float(scale))
    m[:, 2] += (dx * w, dy * h)
    return m


def view(images: np.ndarray, dx: float, dy: float, scale: float) -> np.ndarray:
    """Films ``(N, S, S)`` (grey uint8) or ``(N, S, S, C)`` scaled about their centre by
    ``scale``, then shifted by ``(dx, dy)`` times the side (right / down positive), borders
    reflected (:func:`view_matrix`). The identity view returns the films unchanged (no
    resampling)."""
    images = np.asarray(images)
    if (dx, dy, scale) == (0.0, 0.0, 1.0):
        return images
    n, h, w = images.shape[:3]
    m = view_matrix(h, w, dx, dy, scale)
    out = np.empty_like(images)
    for i in range(n):
        out[i] = cv2.warpAffine(images[i], m, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)
    return out


def predict_tta(model, images: np.ndarray, mode: str = "none", *, batch_size: int = 32,
                progress: Callable[[int, int], None] | None = None,
                identity: np.ndarray | None = None) -> np.ndarray:
    """The model's probabilities of grey films averaged over the views of ``mode``.

    Args:
        model: a Keras model taking float32 ``(N, S, S, 3)`` in [0, 1].
        images: grey ``uint8 (N, S, S)`` films (memory-mapped arrays are fine).
        mode: a key of :data:`VIEWS` (``TrainConfig.tta``); ``"none"`` is plain prediction.
        batch_size: images per model call.
        progress: ``progress(done, total)`` over all views' films.
        identity: the films' plain probabilities when the caller has them already (the
            training engine does): they stand for the identity view, which is not run again.

    Returns:
        float32 ``(N, C)``: the mean over the views.

    Raises:
        ValueError: unknown ``mode``, films that are not grey uint8 when ``mode`` has views,
            or ``identity`` of another shape than the output.
    """
    from cxrlib.models.inference import predict  # noqa: PLC0415

    if mode not in VIEWS:
        raise ValueError(f"unknown test-time augmentation {mode!r}; choose from {sorted(VIEWS)}")
    views = VIEWS[mode]
    if len(views) > 1 and (np.asarray(images[:0]).dtype != np.uint8 or np.ndim(images) != 3):
        raise ValueError("test-time augmentation takes grey uint8 films (N, S, S)")
    n = len(images)
    total = np.zeros((n, *model.output_shape[1:]), np.float64)
    if identity is not None:  # VIEWS list the identity first
        if np.shape(identity) != total.shape:
            raise ValueError(f"identity probabilities {np.shape(identity)} do not fit the "
                             f"output {total.shape}")
        total += identity
    for k, (dx, dy, scale) in enumerate(views):
        if k == 0 and identity is not None:
            continue
        done = k * n
        report = (lambda d, _t, done=done: progress(done + d, n * len(views))) if progress else None
        total += predict(model, view(images, dx, dy, scale), batch_size=batch_size,
                         progress=report)
    return (total / len(views)).astype(np.float32)
