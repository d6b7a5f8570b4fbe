"""Overlays: drawn at the film's own resolution, alpha blending, colormaps, contour mode, PNG."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from cxrlib.explain import COLORMAPS, CONTOUR_LEVELS, overlay, to_png


def blob(size: int = 224, row: float = 0.25, col: float = 0.75, sigma: float = 0.12) -> np.ndarray:
    """A smooth heatmap in [0, 1] peaking at (row, col) as fractions of the side."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    return np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def film(h: int = 2500, w: int = 2100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (0, 0), 3)


def reference_colour(heat: np.ndarray, shape: tuple[int, int], name: str = "jet") -> np.ndarray:
    """The heatmap resized to the film, then coloured (plain OpenCV, BGR -> RGB)."""
    big = cv2.resize(heat, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    heat8 = np.clip(big * 255 + 0.5, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(heat8, COLORMAPS[name])[:, :, ::-1]


def test_overlay_keeps_the_large_film_size_and_leaves_the_film_alone():
    f = film()
    before = f.copy()
    out = overlay(f, blob())
    assert out.shape == (2500, 2100, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(f, before)


def test_alpha_zero_is_the_film_as_rgb_and_alpha_one_is_the_colormap():
    f = film(600, 500)
    heat = blob()
    np.testing.assert_array_equal(overlay(f, heat, alpha=0.0), np.repeat(f[:, :, None], 3, axis=2))
    colour = overlay(f, heat, alpha=1.0).astype(int)
    diff = np.abs(colour - reference_colour(heat, f.shape))
    assert diff.max() <= 8 and diff.mean() < 0.5  # jet moves up to 4 levels per heatmap level


@pytest.mark.parametrize("alpha", [0.25, 0.4, 0.8])
def test_overlay_is_the_alpha_blend_of_colormap_and_film(alpha):
    f = film(400, 640)
    heat = blob()
    expected = alpha * reference_colour(heat, f.shape) + (1 - alpha) * f[:, :, None]
    diff = np.abs(overlay(f, heat, alpha=alpha).astype(float) - expected)
    assert diff.max() <= 8 and diff.mean() < 0.5  # jet moves up to 4 levels per heatmap level


def test_heatmap_is_stretched_over_a_non_square_film_in_the_right_place():
    f = np.full((300, 800), 128, np.uint8)
    out = overlay(f, blob(row=0.25, col=0.75, sigma=0.05), alpha=1.0, colormap="bone")
    brightness = out.astype(int).sum(axis=2)  # bone: brightness rises with the value
    rows, cols = np.nonzero(brightness >= brightness.max() - 3)
    assert abs(rows.mean() - 0.25 * 300) <= 3 and abs(cols.mean() - 0.75 * 800) <= 6


def test_rgb_film_keeps_its_colours_under_alpha_zero():
    f = np.random.default_rng(1).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    np.testing.assert_array_equal(overlay(f, blob(), alpha=0.0), f)


def test_contour_mode_draws_lines_at_the_levels_only():
    f = film(1000, 800)
    heat = blob(sigma=0.15)
    fill = overlay(f, heat, alpha=1.0)
    lines = overlay(f, heat, alpha=1.0, contour=True)
    assert lines.shape == fill.shape and not np.array_equal(lines, fill)
    changed = np.any(lines != f[:, :, None], axis=2)
    assert 0.001 < changed.mean() < 0.1  # thin lines, not a fill
    big = cv2.resize(heat, (800, 1000), interpolation=cv2.INTER_LINEAR)
    distance = np.min(np.abs(big[changed][:, None] - np.array(CONTOUR_LEVELS)[None]), axis=1)
    # every drawn pixel lies on an iso-line (within the line's width of 2 px)
    assert np.quantile(distance, 0.99) < 0.08 and distance.mean() < 0.02
    np.testing.assert_array_equal(overlay(f, heat, alpha=0.0, contour=True),
                                  np.repeat(f[:, :, None], 3, axis=2))


def test_a_small_raw_heatmap_is_interpolated_as_values():
    heat = blob(size=7, sigma=0.3)
    f = film(280, 280)
    diff = np.abs(overlay(f, heat, alpha=1.0).astype(int) - reference_colour(heat, f.shape))
    assert diff.max() <= 40 and diff.mean() < 3  # colours of interpolated values, not muddy blends


def test_png_bytes_decode_back_to_the_same_image():
    rgb = overlay(film(300, 200), blob())
    decoded = cv2.imdecode(np.frombuffer(to_png(rgb), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(decoded, rgb)
    grey = film(50, 60)
    np.testing.assert_array_equal(
        cv2.imdecode(np.frombuffer(to_png(grey), np.uint8), cv2.IMREAD_UNCHANGED), grey)


def test_every_colormap_runs_and_jet_goes_from_blue_to_red():
    from cxrlib.explain import colormap_lut

    for name in COLORMAPS:
        assert overlay(film(50, 40), blob(), colormap=name).shape == (50, 40, 3)
    jet = colormap_lut("jet")[:, 0]
    assert jet[0, 2] > 100 and jet[0, 0] < 10 and jet[255, 0] > 100 and jet[255, 2] < 10


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="jet"):
        overlay(film(20, 20), blob(), colormap="rainbow-ish")
    with pytest.raises(ValueError, match="alpha"):
        overlay(film(20, 20), blob(), alpha=1.5)
    with pytest.raises(ValueError, match="uint8"):
        overlay(film(20, 20).astype(np.float32), blob())
    with pytest.raises(ValueError, match="heatmap"):
        overlay(film(20, 20), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="levels"):
        overlay(film(20, 20), blob(), contour=True, levels=(0.5, 1.5))
