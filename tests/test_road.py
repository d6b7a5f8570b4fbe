"""ROAD: the noisy linear imputation against hand-solved cases, and the ranking of heatmaps on a
toy model whose true relevance is known (only a planted region drives its score)."""
from __future__ import annotations

import numpy as np
import pytest

from test_explain import COLS, ROWS, S, region_model

D, G = 1 / 6, 1 / 12  # the paper's direct and diagonal neighbour weights


def _image() -> np.ndarray:
    return (np.arange(12, dtype=np.float64).reshape(3, 4) ** 1.5 / 12 ** 1.5).astype(np.float32)


def test_one_interior_pixel_is_the_weighted_mean_of_its_eight_neighbours():
    from cxrlib.explain.road import impute_linear

    v = _image()
    removed = np.zeros((3, 4), bool)
    removed[1, 1] = True
    direct = v[0, 1] + v[2, 1] + v[1, 0] + v[1, 2]
    diagonal = v[0, 0] + v[0, 2] + v[2, 0] + v[2, 2]
    out = impute_linear(v, removed, noise=0.0)
    assert out[1, 1] == pytest.approx(D * direct + G * diagonal, abs=1e-6)  # weights sum to 1
    np.testing.assert_array_equal(out[~removed], v[~removed])


def test_two_adjacent_removed_pixels_are_solved_jointly():
    """x = k1 + x'/6 and x' = k2 + x/6 (each the other's direct neighbour), solved by hand:
    x = (k1 + k2/6) / (1 - 1/36)."""
    from cxrlib.explain.road import impute_linear

    v = _image()
    removed = np.zeros((3, 4), bool)
    removed[1, 1] = removed[1, 2] = True
    k1 = D * (v[0, 1] + v[2, 1] + v[1, 0]) + G * (v[0, 0] + v[0, 2] + v[2, 0] + v[2, 2])
    k2 = D * (v[0, 2] + v[2, 2] + v[1, 3]) + G * (v[0, 1] + v[0, 3] + v[2, 1] + v[2, 3])
    x1 = (k1 + k2 / 6) / (1 - 1 / 36)
    x2 = (k2 + k1 / 6) / (1 - 1 / 36)
    out = impute_linear(v, removed, noise=0.0)
    assert (out[1, 1], out[1, 2]) == pytest.approx((x1, x2), abs=1e-6)
    cg = impute_linear(v, removed, noise=0.0, solver="cg")
    np.testing.assert_allclose(cg, out, atol=1e-5)


def test_a_corner_pixel_averages_the_neighbours_that_exist():
    from cxrlib.explain.road import impute_linear

    v = _image()
    removed = np.zeros((3, 4), bool)
    removed[0, 0] = True
    expected = (D * v[0, 1] + D * v[1, 0] + G * v[1, 1]) / (D + D + G)
    assert impute_linear(v, removed, noise=0.0)[0, 0] == pytest.approx(expected, abs=1e-6)


def test_noise_channels_and_refusals():
    from cxrlib.explain.road import impute_linear

    rng = np.random.default_rng(0)
    grey = rng.random((20, 20)).astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    removed = rng.random((20, 20)) < 0.5
    plain = impute_linear(grey, removed, noise=0.0)
    noisy = impute_linear(rgb, removed, noise=0.05, rng=np.random.default_rng(1))
    assert (noisy[..., 0] == noisy[..., 2]).all()  # a grey film stays grey
    diff = noisy[..., 0][removed] - plain[removed]
    assert 0.03 < diff.std() < 0.07 and abs(diff.mean()) < 0.01
    colour = rng.random((20, 20, 3)).astype(np.float32)
    per_channel = impute_linear(colour, removed, noise=0.0)
    for k in range(3):
        np.testing.assert_allclose(per_channel[..., k], impute_linear(colour[..., k], removed, noise=0.0),
                                   atol=1e-6)
    before = rgb.copy()
    impute_linear(rgb, removed)
    np.testing.assert_array_equal(rgb, before)
    with pytest.raises(ValueError, match="every pixel"):
        impute_linear(grey, np.ones((20, 20), bool))
    with pytest.raises(ValueError, match="does not match"):
        impute_linear(grey, np.ones((10, 20), bool))


def test_removal_masks_follow_the_heatmap_in_both_orders():
    from cxrlib.explain.road import removal_masks

    heat = np.arange(100, dtype=np.float32).reshape(10, 10)
    morf = removal_masks(heat, (0.1, 0.5))
    lerf = removal_masks(heat, (0.1, 0.5), "lerf")
    assert morf.sum(axis=(1, 2)).tolist() == [10, 50] == lerf.sum(axis=(1, 2)).tolist()
    assert morf[0].ravel()[90:].all() and lerf[0].ravel()[:10].all()
    with pytest.raises(ValueError, match="morf"):
        removal_masks(heat, (0.5,), "random")


def _planted_films(n: int, seed: int = 0) -> np.ndarray:
    """Dark noisy films with the region the toy model reads painted bright."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.15, (n, S, S, 3)).astype(np.float32)
    x[:, ROWS[0]:ROWS[1], COLS[0]:COLS[1]] += 0.8
    return x


def test_road_ranks_the_true_map_first_and_a_random_map_last():
    from cxrlib.explain.road import random_heatmaps, road_curves

    model = region_model(scale=2.0)  # p_0 about 0.94, and about 0.6 without the region
    x = _planted_films(3)
    truth = np.zeros((S, S), np.float32)
    truth[ROWS[0]:ROWS[1], COLS[0]:COLS[1]] = 1.0
    shifted = np.roll(truth, (6, -6), axis=(0, 1))  # overlaps the region by a third
    maps = {"true": truth, "shifted": shifted, "random": None}
    scores = {}
    for name, heat in maps.items():
        heats = random_heatmaps(3, (S, S), seed=5) if heat is None else np.repeat(heat[None], 3, 0)
        result = road_curves(model, x, heats, 0)
        scores[name] = float(result.combined.mean())
        if name == "true":  # the region goes in the first 10 % (7.8 % of the film)...
            assert (result.morf < result.original[:, None] - 0.2).all()
            assert (result.lerf > result.original[:, None] - 0.05).all()  # ...and is kept to 90 %
    assert scores["true"] > scores["shifted"] > scores["random"], scores
    assert scores["true"] > 0.25 and abs(scores["random"]) < 0.1, scores


def test_road_takes_a_prediction_function_and_leaves_model_and_input_unchanged():
    from cxrlib.explain.road import road_curves, road_score

    model = region_model(scale=2.0)
    x = _planted_films(2, seed=1)
    before, weights = x.copy(), [w.copy() for w in model.get_weights()]
    heat = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)  # resized to S x S
    keras_result = road_curves(model, x, heat, fractions=(0.2, 0.6))
    as_function = road_curves(lambda b: np.asarray(model(b, training=False)), x, heat,
                              fractions=(0.2, 0.6))
    np.testing.assert_allclose(as_function.morf, keras_result.morf, atol=1e-5)
    np.testing.assert_allclose(as_function.lerf, keras_result.lerf, atol=1e-5)
    assert keras_result.morf.shape == (2, 2) and keras_result.targets.tolist() == [0, 0]
    assert road_score(model, x[:1], heat[0], 0, fractions=(0.2, 0.6)) == pytest.approx(
        float(keras_result.combined[0]), abs=1e-5)
    np.testing.assert_array_equal(x, before)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        road_curves(model, x, heat, fractions=(0.0, 0.5))
    with pytest.raises(ValueError, match="3 heatmaps for 2 images"):
        road_curves(model, x, np.zeros((3, S, S)))


def test_conjugate_gradients_from_a_smaller_holes_fill_match_the_direct_solve():
    """ROAD's default solver starts each hole from the next smaller one's imputation; it must
    land on the direct (exact) solution of the larger hole, in grey and in colour."""
    from cxrlib.explain.road import impute_linear

    rng = np.random.default_rng(3)
    smooth = np.cumsum(np.cumsum(rng.random((40, 40)), 0), 1)
    grey = (smooth / smooth.max()).astype(np.float32)
    colour = np.stack([grey, grey ** 2, 1 - grey], axis=-1)
    small, large = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    small[10:20, 12:22] = True
    large[6:26, 8:30] = large[30:34, 0:3] = True  # a bigger hole and one at the border
    for image in (grey, colour):
        start = impute_linear(image, small, noise=0.0, solver="cg")
        exact = impute_linear(image, large, noise=0.0, solver="direct")
        warm = impute_linear(image, large, noise=0.0, solver="cg", start=start)
        np.testing.assert_allclose(warm, exact, atol=1e-4)
        assert np.abs(warm - image)[large].max() > 0.01  # the hole was really filled anew
