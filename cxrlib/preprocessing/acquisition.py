"""Acquisition-style augmentation: random changes of how a film was acquired and copied.

The sources of a multi-source chest-film set differ in how their films were acquired, exported
and copied as much as in disease: resolution (cxr3's non-COVID films are half 224 px re-encoded
copies), JPEG quality, contrast curve, borders, noise. A model can learn those instead of the
lungs (Zech et al., "Variable generalization performance of a deep learning model to detect
pneumonia in chest radiographs", PLOS Medicine 2018; DeGrave, Janizek & Lee, "AI for
radiographic COVID-19 detection selects shortcuts over signal", Nature Machine Intelligence
2021). The remedy randomises exactly those properties on the training films, so no one look
predicts the class: the "acquisition / style" augmentation of domain generalisation (Zhang et
al., "Generalizing deep learning for medical image segmentation to unseen domains via deep
stacked transformation", IEEE TMI 2020: image quality, appearance and spatial transforms;
Tobin et al. 2017 for domain randomisation in general).

:func:`acquisition_augment` applies, to a model-sized grey film, each with its own probability
and every draw from one seeded generator: a border crop (then back to the size), a downscale to
a random resolution and back up, random gamma and linear contrast / brightness, Gaussian blur,
Gaussian noise, and a JPEG re-encoding at a random quality (last, as a copy chain ends). No
flip: a chest film is not left-right symmetric. ``strength`` in [0, 1] scales the copy-chain
ranges (crop, resolution, blur, noise, JPEG) and ``contrast_strength`` the intensity ones (gamma,
contrast, brightness). They are two settings because an intensity change competes with a disease
sign that is itself a change of intensity: on the planted-shortcut synthetic set
(tests/test_generalise.py) the copy-chain transforms raised leave-one-source-out accuracy while
gamma / contrast at full strength cut in-distribution accuracy from 0.97 to 0.4-0.7 with the
tests' tiny random backbone. Whether they help on real films is for the sweep to measure.

In head mode it makes the ``TrainConfig.feature_augment_copies`` (the cached augmented feature
copies of :mod:`cxrlib.training.features`) when ``TrainConfig.acquisition > 0``, so
leave-one-source-out reuses the copies and stays cheap.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Probability of each transform at any strength > 0.
PROBABILITIES = {"crop": 0.5, "rescale": 0.8, "intensity": 0.8, "blur": 0.3, "noise": 0.4, "jpeg": 0.7}


def acquisition_film(film: np.ndarray, rng: np.random.Generator, strength: float = 1.0,
                     contrast_strength: float = 0.0) -> np.ndarray:
    """One film (``uint8 (S, S)``) as if acquired and copied differently (see the module
    docstring): ``strength`` scales the crop, resolution, blur, noise and JPEG ranges,
    ``contrast_strength`` the gamma / contrast / brightness ranges (0: none)."""
    img = np.asarray(film)
    if img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(f"acquisition augmentation needs a grey uint8 film, got {img.dtype} {img.shape}")
    s = float(strength)
    h, w = img.shape
    draw = {k: rng.random() < p for k, p in PROBABILITIES.items()}  # always 6 draws: stable streams
    if s <= 0:  # the copy chain off: intensity alone
        draw.update(crop=False, rescale=False, blur=False, noise=False, jpeg=False)
    crop = rng.uniform(0, 0.08 * s, 4)
    scale = rng.uniform(1 - 0.75 * s, 1.0)
    c = float(contrast_strength)
    gamma = float(np.exp(rng.uniform(-0.4 * c, 0.4 * c)))
    contrast, brightness = rng.uniform(1 - 0.3 * c, 1 + 0.3 * c), rng.uniform(-20 * c, 20 * c)
    sigma, noise = rng.uniform(0.3, 0.3 + 1.2 * s), rng.uniform(0, 8 * s)
    quality = int(rng.integers(int(round(95 - 75 * s)), 96))
    if draw["crop"]:
        top, bottom, left, right = (int(round(f * n)) for f, n in zip(crop, (h, h, w, w)))
        img = cv2.resize(img[top:h - bottom, left:w - right], (w, h), interpolation=cv2.INTER_LINEAR)
    if draw["rescale"] and scale < 1:
        small = (max(8, int(round(w * scale))), max(8, int(round(h * scale))))
        img = cv2.resize(cv2.resize(img, small, interpolation=cv2.INTER_AREA), (w, h),
                         interpolation=cv2.INTER_LINEAR)
    x = img.astype(np.float32)
    if draw["intensity"] and c > 0:
        x = 255.0 * (x / 255.0) ** gamma
        x = (x - x.mean()) * contrast + x.mean() + brightness
    if draw["blur"]:
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    if draw["noise"]:
        x = x + rng.normal(0, noise, x.shape).astype(np.float32)
    img = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if draw["jpeg"]:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img
    return img


def acquisition_augment(images: np.ndarray, strength: float, rng: np.random.Generator,
                        contrast_strength: float = 0.0) -> np.ndarray:
    """:func:`acquisition_film` of every film of ``uint8 (N, S, S)``; draws only from ``rng``."""
    images = np.asarray(images)
    out = np.empty_like(images)
    for i in range(len(images)):
        out[i] = acquisition_film(images[i], rng, strength, contrast_strength)
    return out
