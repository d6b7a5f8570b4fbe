"""A small, clearly labelled synthetic chest-film dataset for tests and the app's demo mode.

The films are drawings, not X-rays: a bright body outline with two darker lung fields. Each class
adds a different, learnable sign inside the lungs (COVID-19: bilateral peripheral lower-zone
opacities; Viral Pneumonia: diffuse streaky texture; Normal: clear lungs), so a tiny model can
reach high accuracy and a CAM should land inside the lungs. Nothing here is clinical.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cxrlib.core.classes import CLASSES, COVID, VIRAL
from cxrlib.core.csvio import RowWriter

DEMO_README = (
    "SYNTHETIC DEMO DATA - NOT CHEST X-RAYS.\n"
    "Drawings made by cxrlib.data.synthetic so every page of CXR Explorer can be tried without a real\n"
    "dataset. Accuracy on these images says nothing about real films.\n"
)


def lung_boxes(size: int) -> list[tuple[int, int, int, int]]:
    """(cx, cy, ax, ay) ellipses of the two lung fields in a ``size`` x ``size`` synthetic film."""
    s = size
    return [(int(0.32 * s), int(0.5 * s), int(0.14 * s), int(0.28 * s)),
            (int(0.68 * s), int(0.5 * s), int(0.14 * s), int(0.28 * s))]


def synthetic_film(label: str, size: int = 96, rng: np.random.Generator | None = None,
                   vary_anatomy: bool = True) -> np.ndarray:
    """One synthetic grey uint8 film of ``label`` (a canonical class name).

    Args:
        label: canonical class name; it decides the sign drawn in the lungs.
        size: side of the square film in pixels.
        rng: the only source of randomness.
        vary_anatomy: vary body size and position, lung size, exposure and tilt from film to
            film, as between patients, so that distinct drawings are not near-duplicates of each
            other (the audit's duplicate finder paired 81 of 120 fixed-anatomy films at 96 px).
            ``False`` draws every film on one fixed anatomy: the easiest set for the fixed
            random ``tiny`` backbone of the tests, which cannot cope with anatomical variety.
            Either way the lung fields stay within a few percent of :func:`lung_boxes`.
    """
    rng = rng or np.random.default_rng(0)
    s = size
    if vary_anatomy:
        body_level = rng.uniform(150, 195)
        lung_level = rng.uniform(45, 70)
        # A smooth exposure gradient in a random direction (low-frequency, differs per film).
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
        angle = rng.uniform(0, 2 * np.pi)
        gradient = rng.uniform(10, 30) * (np.cos(angle) * xx + np.sin(angle) * yy)
        background = rng.uniform(5, 30)
        body_centre = (int(s * (0.5 + rng.uniform(-0.03, 0.03))), int(s * (0.54 + rng.uniform(-0.03, 0.03))))
        body_axes = (int(s * rng.uniform(0.39, 0.44)), int(s * rng.uniform(0.42, 0.47)))
        body_angle = rng.uniform(-6, 6)
        tilt = rng.uniform(-5, 5)
    else:
        body_level, lung_level, gradient, background = 170.0, 60.0, 0.0, 20.0
        body_centre, body_axes, body_angle, tilt = (s // 2, int(0.55 * s)), (int(0.42 * s), int(0.45 * s)), 0, 0
    img = np.full((s, s), background, np.float32)
    body = np.zeros((s, s), np.uint8)
    cv2.ellipse(body, body_centre, body_axes, body_angle, 0, 360, 255, -1)
    lungs = np.zeros((s, s), np.uint8)
    for cx, cy, ax, ay in lung_boxes(s):
        jitter = rng.integers(-max(1, s // 40), max(1, s // 40) + 1, size=2)
        axes = (int(ax * rng.uniform(0.92, 1.05)), int(ay * rng.uniform(0.92, 1.05))) if vary_anatomy else (ax, ay)
        cv2.ellipse(lungs, (int(cx + jitter[0]), int(cy + jitter[1])), axes, tilt, 0, 360, 255, -1)
    if vary_anatomy:  # the chest wall always encloses the lungs, however the two were jittered
        wall = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, s // 10),) * 2)
        body |= cv2.dilate(lungs, wall)
    img[body > 0] = body_level
    img[lungs > 0] = lung_level
    img += gradient
    sign = np.zeros((s, s), np.float32)
    if label == COVID:
        for cx, cy, ax, ay in lung_boxes(s):
            for _ in range(2):
                x = int(cx + rng.uniform(-0.6, 0.6) * ax)
                y = int(cy + rng.uniform(0.1, 0.7) * ay)
                cv2.circle(sign, (x, y), max(2, int(rng.uniform(0.3, 0.5) * ax)), 90, -1)
    elif label == VIRAL:
        for _ in range(10):
            x0, y0 = rng.integers(int(0.2 * s), int(0.8 * s), size=2)
            dx, dy = rng.integers(-s // 8, s // 8 + 1, size=2)
            cv2.line(sign, (int(x0), int(y0)), (int(x0 + dx), int(y0 + dy)), 80, max(1, s // 64))
    sign = cv2.GaussianBlur(sign, (0, 0), max(0.8, s / 80))
    img += sign * (lungs > 0)
    img += rng.normal(0, 6, img.shape)
    img = cv2.GaussianBlur(img, (0, 0), 0.7)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_synthetic_dataset(root: str | Path, n_per_class: int = 24, size: int = 96,
                           seed: int = 0, classes: tuple[str, ...] = CLASSES,
                           images_per_patient: int = 2, vary_anatomy: bool = True) -> Path:
    """Write a synthetic dataset: one folder per class, PNG films, ``manifest.csv``, ``README.txt``.

    Args:
        root: folder to create (may exist; files are overwritten).
        n_per_class: films per class.
        size: side of each square film in pixels.
        seed: all randomness comes from ``np.random.default_rng(seed)``.
        classes: canonical class names to create folders for.
        images_per_patient: consecutive films of a class share a ``patient_id``.
        vary_anatomy: see :func:`synthetic_film`.

    Returns:
        The dataset root.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for label in classes:
        folder = root / label
        folder.mkdir(exist_ok=True)
        tag = label.split()[0].split("-")[0].lower()
        for i in range(n_per_class):
            name = f"{tag}_{i:04d}.png"
            cv2.imwrite(str(folder / name), synthetic_film(label, size, rng, vary_anatomy))
            patient = f"synth-{tag}-{i // images_per_patient:04d}"
            rows.append({"file": f"{label}/{name}", "label": label, "patient_id": patient,
                         "group_id": patient, "source": "synthetic"})
    return write_manifest(root, rows)


def degrade_acquisition(film: np.ndarray, scale: float, quality: int) -> np.ndarray:
    """A film as a low-resolution re-encoded copy: ``INTER_AREA`` downscale by ``scale``, back up
    (linear), then JPEG at ``quality``: how many of a multi-source set's films were copied."""
    h, w = film.shape
    small = cv2.resize(film, (max(4, round(w * scale)), max(4, round(h * scale))), interpolation=cv2.INTER_AREA)
    film = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", film, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def make_acquisition_shortcut_dataset(root: str | Path, *, shortcut: bool = True, per_source: int = 20,
                                      size: int = 64, sign: float = 1.0, seed: int = 0,
                                      scale: float = 0.3, quality: int = 20) -> Path:
    """Six sources with a planted ACQUISITION shortcut (tests of issue 23's remedies).

    With ``shortcut`` source ``k`` holds class ``k % 3`` only, and sources 3, 4, 5 (one of each
    class) are low-resolution re-encoded copies (:func:`degrade_acquisition`): inside every
    training fold of leave-one-source-out the look is tied to the class. The disease sign
    (scaled by ``sign``; fixed anatomy) is drawn before the degradation and survives it.
    Without ``shortcut`` every source holds every class and half of each source's films are
    degraded, so the look says nothing about the class. ``manifest.csv`` names each film's
    ``source`` (``hospital-<k>``) and patient.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(6):
        for i in range(per_source):
            label = CLASSES[k % 3] if shortcut else CLASSES[i % 3]
            s = int(rng.integers(1 << 30))
            normal = synthetic_film(CLASSES[1], size, np.random.default_rng(s), vary_anatomy=False)
            drawn = synthetic_film(label, size, np.random.default_rng(s), vary_anatomy=False)
            film = np.clip(normal.astype(np.float32) + sign * (drawn.astype(np.float32) - normal), 0, 255)
            film = film.astype(np.uint8)
            if (k >= 3) if shortcut else (i // 3) % 2:
                film = degrade_acquisition(film, scale, quality)
            folder = root / label
            folder.mkdir(parents=True, exist_ok=True)
            name = f"s{k}_{i:03d}.png"
            cv2.imwrite(str(folder / name), film)
            rows.append({"file": f"{label}/{name}", "label": label, "patient_id": f"p{k}-{i}",
                         "group_id": f"p{k}-{i}", "source": f"hospital-{k}"})
    return write_manifest(root, rows)


def write_manifest(root: Path, rows: list[dict]) -> Path:
    """``manifest.csv`` of ``rows`` (one dict a film, ``file`` relative to ``root``) and the
    synthetic ``README.txt`` into ``root``; returns ``root``."""
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = RowWriter(fh, list(rows[0]), for_people=False)  # a manifest: read back as it is
        for row in rows:
            writer.write(row)
    (root / "README.txt").write_text(DEMO_README, encoding="utf-8")
    return root
