"""Augmentation of (film, lung target, weight) triples for training the segmenter.

Suited to frontal chest films: small rotations, scales, shifts and crops (patients are not
always centred, straight or framed alike), brightness / contrast / gamma (exposure and
processing differ between machines), and JPEG re-encoding (public sets are full of recompressed
copies). **No horizontal flip**: the heart is on the left, and a flipped film is not a film that
exists; the left lung's heart notch is part of what the network must learn.

The film, its target and its weight get the same geometric transform (one affine matrix).
Every random number comes from the ``np.random.Generator`` passed in; nothing here seeds or
reads a global generator.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes; each is drawn uniformly per film.

    Attributes:
        rotation_deg: rotation in ``[-r, r]`` degrees about the centre.
        scale: isotropic zoom range (``> 1`` zooms in).
        shift: translation, a fraction of the side, in ``[-s, s]`` per axis.
        crop: a crop keeping between ``1 - crop`` and all of each side (independently, so the
            aspect ratio changes too), stretched back to the working size.
        brightness: offset in ``[-b, b]`` of the full range.
        contrast: contrast factor range about the film's mean.
        gamma: gamma range (applied to [0, 1] intensities).
        jpeg_p: probability of a JPEG re-encoding.
        jpeg_quality: its quality range.
    """

    rotation_deg: float = 8.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.05
    crop: float = 0.15
    brightness: float = 0.08
    contrast: tuple[float, float] = (0.75, 1.3)
    gamma: tuple[float, float] = (0.7, 1.5)
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (25, 95)


def random_affine(size: int, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """A random crop, rotation, zoom and shift of a ``size`` x ``size`` image, as the ``2 x 3``
    forward affine matrix (input pixel -> output pixel) that ``cv2.warpAffine`` takes."""
    c = (size - 1) / 2.0
    # Crop window: keep a share of each side, placed at random, stretched back to the full side.
    keep = rng.uniform(1.0 - cfg.crop, 1.0, size=2)
    offset = rng.uniform(0.0, 1.0, size=2) * (1.0 - keep) * size
    crop = np.array([[1 / keep[0], 0, -offset[0] / keep[0]], [0, 1 / keep[1], -offset[1] / keep[1]],
                     [0, 0, 1]])
    angle = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)
    zoom = rng.uniform(*cfg.scale)
    rot = np.vstack([cv2.getRotationMatrix2D((c, c), angle, zoom), [0, 0, 1]])
    shift = np.eye(3)
    shift[:2, 2] = rng.uniform(-cfg.shift, cfg.shift, size=2) * size
    return (shift @ rot @ crop)[:2].astype(np.float64)


def augment_pair(film: np.ndarray, target: np.ndarray, weight: np.ndarray,
                 rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random augmentation of a training triple at the working size.

    Args:
        film: ``uint8 (S, S)`` grey film.
        target: ``float32 (S, S)`` lung share per pixel in [0, 1].
        weight: ``float32 (S, S)``, 0 where the pixel does not count ("ignore").
        rng: the only source of randomness.
        cfg: the ranges.

    Returns:
        ``(film, target, weight)`` transformed alike; pixels brought in from outside the film
        are black film, no lung, and count (weight 1): they are known background.
    """
    size = film.shape[0]
    matrix = random_affine(size, rng, cfg)
    warp = lambda a, inter, border: cv2.warpAffine(  # noqa: E731
        a, matrix, (size, size), flags=inter, borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    film = warp(film, cv2.INTER_LINEAR, 0)
    target = warp(target, cv2.INTER_LINEAR, 0.0)
    weight = warp(weight, cv2.INTER_LINEAR, 1.0)
    return photometric(film, rng, cfg), target, weight


def photometric(film: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()
                ) -> np.ndarray:
    """Random brightness, contrast and gamma, then (with ``cfg.jpeg_p``) a JPEG re-encoding."""
    x = film.astype(np.float32) / 255.0
    mean = float(x.mean())
    x = (x - mean) * rng.uniform(*cfg.contrast) + mean + rng.uniform(-cfg.brightness, cfg.brightness)
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(*cfg.gamma)
    out = np.round(x * 255.0).astype(np.uint8)
    if rng.uniform() < cfg.jpeg_p:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return out

