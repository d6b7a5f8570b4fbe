"""Preprocessing: the fast white balance is the published one bit for bit; CLAHE, gamma, grey,
histogram and model input agree with independent NumPy computations; step order is honoured."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from cxrlib import preprocessing as pp
from cxrlib.preprocessing import steps
from cxrlib.core.config import PreprocessConfig

PERCS = [0.0, 0.05, 0.5, 3.3, 12.5, 49.9]


def _films(seed: int):
    """Grey and RGB films of odd sizes: uniform noise, narrow-range, few values, equal channels."""
    rng = np.random.default_rng(seed)
    grey = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    narrow = np.clip(rng.normal(120, 6, (41, 29)), 0, 255).astype(np.uint8)
    few = rng.choice(np.array([3, 77, 200], np.uint8), size=(23, 31))
    two = rng.choice(np.array([10, 11], np.uint8), size=(17, 19), p=[0.999, 0.001]).astype(np.uint8)
    rgb = rng.integers(0, 256, (31, 45, 3), dtype=np.uint8)
    rgb_few = rng.choice(np.array([0, 128, 255], np.uint8), size=(13, 27, 3))
    stacked = np.dstack([narrow, narrow, narrow])
    return {"grey": grey, "narrow": narrow, "few": few, "two": two, "rgb": rgb,
            "rgb_few": rgb_few, "stacked": stacked}


@pytest.mark.parametrize("perc", PERCS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_white_balance_equals_reference(perc, seed):
    for name, film in _films(seed).items():
        fast = pp.white_balance(film, perc)
        ref = pp.white_balance_reference(film, perc)
        assert fast.shape == film.shape and fast.dtype == np.uint8, name
        np.testing.assert_array_equal(fast, ref, err_msg=f"{name} perc={perc}")


def test_histogram_percentiles_equal_numpy_percentile():
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(1, 400))
        values = rng.integers(0, int(rng.integers(1, 257)), n).astype(np.uint8)
        perc = float(rng.uniform(0, 50)) if trial % 3 else float(rng.choice(PERCS))
        lo, hi = pp.percentiles_from_histogram(np.bincount(values, minlength=256), perc)
        assert lo == np.percentile(values, perc), (n, perc)
        assert hi == np.percentile(values, 100 - perc), (n, perc)


def test_white_balance_known_values():
    film = np.array([[10, 110, 210]], np.uint8)
    # perc 0: lo = 10, hi = 210; 100 * 255 / 200 = 127.5 truncates to 127.
    np.testing.assert_array_equal(pp.white_balance(film, 0.0), [[0, 127, 255]])
    np.testing.assert_array_equal(pp.white_balance_reference(film, 0.0), [[0, 127, 255]])


@pytest.mark.parametrize("perc", [0.0, 0.05, 10.0])
def test_flat_film_is_unchanged_without_warnings(perc):
    flat = np.full((9, 11), 77, np.uint8)
    rgb = np.dstack([flat, np.full_like(flat, 3), np.arange(99, dtype=np.uint8).reshape(9, 11)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(pp.white_balance_reference(flat, perc), flat)
        np.testing.assert_array_equal(pp.white_balance(flat, perc), flat)
        ref = pp.white_balance_reference(rgb, perc)
        np.testing.assert_array_equal(pp.white_balance(rgb, perc), ref)
    np.testing.assert_array_equal(ref[..., :2], rgb[..., :2])  # flat channels kept
    assert ref[..., 2].min() == 0 and ref[..., 2].max() == 255  # the other one stretched


def test_equal_channels_are_detected_and_handled_once():
    film = _films(3)["narrow"]
    stacked = np.dstack([film, film, film])
    assert pp.channels_equal(stacked)
    stacked_changed = stacked.copy()
    stacked_changed[-1, -1, 2] ^= 1
    assert not pp.channels_equal(stacked_changed)
    wb = pp.white_balance(stacked, 0.05)
    for i in range(3):
        np.testing.assert_array_equal(wb[..., i], pp.white_balance(film, 0.05))


def test_histogram_equals_bincount(monkeypatch):
    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, (101, 67), dtype=np.uint8)
    rgb = rng.integers(0, 256, (33, 21, 3), dtype=np.uint8)
    for img in (grey, rgb, grey[::2, 1::3]):
        hist = pp.histogram(img)
        assert hist.dtype == np.int64 and hist.shape == (256,)
        np.testing.assert_array_equal(hist, np.bincount(img.ravel(), minlength=256))
    # Large films are counted in bands (float32 counts are exact only below 2**24 pixels).
    monkeypatch.setattr(steps, "_HIST_EXACT_PIXELS", 500)
    np.testing.assert_array_equal(pp.histogram(grey), np.bincount(grey.ravel(), minlength=256))


def test_to_grey_is_bt601_luma():
    rgb = _films(5)["rgb"]
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    expected = 0.299 * r + 0.587 * g + 0.114 * b  # BT.601 luma; OpenCV rounds fixed-point weights
    assert np.abs(pp.to_grey(rgb) - expected).max() <= 0.51
    primaries = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    np.testing.assert_array_equal(pp.to_grey(primaries), [[76, 150, 29]])
    grey = _films(5)["grey"]
    np.testing.assert_array_equal(pp.to_grey(grey), grey)
    np.testing.assert_array_equal(pp.to_grey(np.dstack([grey] * 3)), grey)


def _clahe_numpy(grey: np.ndarray, clip_limit: float, grid: int) -> np.ndarray:
    """CLAHE written out in NumPy (sizes divisible by the grid): per-tile clipped histogram
    equalisation, excess spread evenly, bilinear interpolation between tile tables."""
    h, w = grey.shape
    th, tw = h // grid, w // grid
    limit = max(int(clip_limit * th * tw / 256), 1)
    scale = np.float32(255.0 / (th * tw))
    luts = np.empty((grid, grid, 256), np.uint8)
    for ty in range(grid):
        for tx in range(grid):
            hist = np.bincount(grey[ty * th:(ty + 1) * th, tx * tw:(tx + 1) * tw].ravel(), minlength=256)
            excess = int(np.maximum(hist - limit, 0).sum())
            hist = np.minimum(hist, limit) + excess // 256
            residual = excess % 256
            if residual:
                hist[np.arange(0, 256, max(256 // residual, 1))[:residual]] += 1
            luts[ty, tx] = np.clip(np.rint(np.cumsum(hist).astype(np.float32) * scale), 0, 255)

    def weights(n: int, tile: int):
        pos = np.arange(n, dtype=np.float32) * (np.float32(1) / np.float32(tile)) - np.float32(0.5)
        first = np.floor(pos).astype(int)
        frac = (pos - first).astype(np.float32)
        return np.maximum(first, 0), np.minimum(first + 1, grid - 1), frac, np.float32(1) - frac

    y1, y2, ya, ya1 = weights(h, th)
    x1, x2, xa, xa1 = weights(w, tw)
    table = lambda ys, xs: luts[ys[:, None], xs[None], grey].astype(np.float32)  # noqa: E731
    top = table(y1, x1) * xa1 + table(y1, x2) * xa
    bottom = table(y2, x1) * xa1 + table(y2, x2) * xa
    return np.clip(np.rint(top * ya1[:, None] + bottom * ya[:, None]), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape,grid,clip", [((64, 64), 8, 2.0), ((96, 120), 4, 3.0),
                                             ((90, 72), 3, 1.0), ((30, 40), 1, 40.0)])
def test_clahe_matches_numpy_implementation(shape, grid, clip):
    rng = np.random.default_rng(sum(shape))
    blurred = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 2)
    grey = np.clip(blurred.astype(int) * 3 - 200, 0, 255).astype(np.uint8)  # low, uneven contrast
    ours = pp.clahe(grey, clip, grid).astype(int)
    expected = _clahe_numpy(grey, clip, grid).astype(int)
    assert np.abs(ours - expected).max() <= 1
    assert (ours == expected).mean() > 0.995


def test_clahe_objects_are_cached_and_reject_colour():
    grey = _films(6)["grey"]
    assert steps._clahe_object(2.0, 8) is steps._clahe_object(2.0, 8)
    assert steps._clahe_object(2.0, 8) is not steps._clahe_object(3.0, 8)
    with pytest.raises(ValueError):
        pp.clahe(np.dstack([grey, grey, grey[::-1]]), 2.0, 8)


@pytest.mark.parametrize("gamma", [0.4, 1.0, 2.2])
def test_gamma_matches_formula(gamma):
    grey = _films(8)["grey"]
    expected = np.clip(np.rint(255.0 * (grey / 255.0) ** gamma), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(pp.apply_gamma(grey, gamma), expected)
    if gamma == 1.0:
        np.testing.assert_array_equal(pp.apply_gamma(grey, gamma), grey)


def _textured_film(seed: int = 9, shape=(150, 130)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 3)
    return np.clip(base.astype(int) * 2 - 100 + rng.integers(-8, 9, shape), 0, 255).astype(np.uint8)


def test_step_order_changes_the_result_where_it_should():
    film = _textured_film()
    cfg = PreprocessConfig(steps=("clahe", "gamma"), gamma=0.5, size=64)
    swapped = cfg.replace(steps=("gamma", "clahe"))
    assert not np.array_equal(pp.preprocess_film(film, cfg), pp.preprocess_film(film, swapped))
    # The pipeline is exactly its steps, in the configured order, then the resize.
    by_hand = pp.clahe(pp.apply_gamma(film, 0.5), 2.0, 8)
    np.testing.assert_array_equal(pp.preprocess_preview(film, swapped), by_hand)
    np.testing.assert_array_equal(pp.preprocess_film(film, swapped), cv2.resize(
        by_hand, (64, 64), interpolation=cv2.INTER_AREA))
    # Resizing first is not the same as resizing last.
    small = cv2.resize(film, (64, 64), interpolation=cv2.INTER_AREA)
    assert not np.array_equal(pp.preprocess_film(small, swapped), pp.preprocess_film(film, swapped))


def test_white_balance_always_runs_first_on_the_colour_film():
    rgb = np.dstack([_textured_film(1), _textured_film(2), _textured_film(3)])
    listed_last = PreprocessConfig(steps=("clahe", "white_balance"), size=32)
    listed_first = PreprocessConfig(steps=("white_balance", "clahe"), size=32)
    expected = pp.clahe(pp.to_grey(pp.white_balance_reference(rgb, 0.05)), 2.0, 8)
    np.testing.assert_array_equal(pp.preprocess_preview(rgb, listed_last), expected)
    np.testing.assert_array_equal(pp.preprocess_preview(rgb, listed_first), expected)
    # Grey first, then white balance, would give another image.
    assert not np.array_equal(pp.white_balance(pp.to_grey(rgb), 0.05), pp.white_balance_reference(
        rgb, 0.05).mean(axis=2).astype(np.uint8))
    assert not np.array_equal(expected, pp.clahe(pp.white_balance(pp.to_grey(rgb), 0.05), 2.0, 8))


@pytest.mark.parametrize("steps", [("white_balance",), ("white_balance", "clahe", "gamma"),
                                   ("gamma", "white_balance"), ("clahe",), ()])
def test_preprocess_film_equals_reference(steps):
    cfg = PreprocessConfig(steps=steps, gamma=0.8, size=24, wb_percentile=1.0)
    for name, film in _films(10).items():
        out = pp.preprocess_film(film, cfg)
        assert out.shape == (24, 24) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, pp.preprocess_reference(film, cfg), err_msg=name)
        preview = pp.preprocess_preview(film, cfg)
        assert preview.shape == film.shape[:2]


def test_to_model_input():
    grey = np.stack([_films(11)["grey"][:20, :20], np.full((20, 20), 255, np.uint8)])
    x = pp.to_model_input(grey)
    assert x.shape == (2, 20, 20, 3) and x.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(x[..., c], grey / 255.0, rtol=0, atol=1e-7)
    assert x.min() >= 0.0 and x.max() == 1.0
    assert pp.to_model_input(grey[0]).shape == (1, 20, 20, 3)
    with pytest.raises(ValueError):
        pp.to_model_input(grey.astype(np.float32))


def test_views_of_films_are_accepted():
    rgb = _films(12)["rgb"]
    view = rgb[::-2, 1::2]  # flipped, strided crop
    np.testing.assert_array_equal(pp.white_balance(view, 0.05),
                                  pp.white_balance_reference(view.copy(), 0.05))
    cfg = PreprocessConfig(steps=("white_balance", "clahe"), size=8)
    np.testing.assert_array_equal(pp.preprocess_film(view, cfg), pp.preprocess_film(view.copy(), cfg))


def test_invalid_films_are_rejected():
    with pytest.raises(ValueError):
        pp.white_balance(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        pp.preprocess_film(np.zeros((4, 4, 4), np.uint8), PreprocessConfig())
    with pytest.raises(ValueError):
        pp.white_balance_reference(np.zeros((0, 4), np.uint8))
