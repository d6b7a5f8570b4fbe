"""Lung masks on synthetic films and the CAM share inside them."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from cxrlib.audit import cam_in_lung_share, lung_mask, segment_lungs
from cxrlib.lungs.classical import prior_mask
from cxrlib.core.classes import CLASSES
from cxrlib.data.synthetic import lung_boxes, synthetic_film


def _truth(size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for cx, cy, ax, ay in lung_boxes(size):
        cv2.ellipse(mask, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
    return mask.astype(bool)


@pytest.mark.parametrize("label", CLASSES)
@pytest.mark.parametrize("size", [96, 224])
def test_lung_mask_overlaps_synthetic_lungs(label, size):
    rng = np.random.default_rng(size)
    truth = _truth(size)
    for _ in range(3):
        seg = segment_lungs(synthetic_film(label, size, rng))
        assert seg.method == "threshold"
        assert seg.mask.shape == (size, size) and seg.mask.dtype == bool
        iou = (seg.mask & truth).sum() / (seg.mask | truth).sum()
        assert iou > 0.6, iou


def test_lung_mask_keeps_film_size_and_accepts_rgb():
    film = cv2.resize(synthetic_film(CLASSES[1], 128), (150, 200))
    mask = lung_mask(np.dstack([film] * 3))
    assert mask.shape == (200, 150)


def test_flat_film_falls_back_to_prior():
    seg = segment_lungs(np.full((64, 80), 100, np.uint8))
    assert seg.method == "prior" and seg.reason
    assert np.array_equal(seg.mask, prior_mask(64, 80))


def test_in_lung_share_inside_outside_and_half():
    mask = _truth(96)
    inside = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1) * mask
    outside = (~cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)).astype(np.float32)
    assert cam_in_lung_share(inside, mask) == pytest.approx(1.0)
    assert cam_in_lung_share(outside, mask) == pytest.approx(0.0)
    half = np.zeros((10, 10), np.float32)
    half[:, :5] = 1
    m = np.zeros((10, 10), bool)
    m[:, :5] = True
    half[:, 5:] = 1  # equal mass in and out
    assert cam_in_lung_share(half, m) == pytest.approx(0.5)
    assert np.isnan(cam_in_lung_share(np.zeros((10, 10)), m))


def test_in_lung_share_resizes_heatmap_to_mask():
    mask = np.zeros((224, 224), bool)
    mask[:, :112] = True
    heat = np.zeros((7, 7), np.float32)
    heat[:, :2] = 1.0  # left columns only, well inside the left half once upsampled
    assert cam_in_lung_share(heat, mask) > 0.95
