"""Faithfulness: deletion / insertion against random orders, and the model-randomisation check."""
from __future__ import annotations

import numpy as np
import pytest

from test_explain import S, images, region_model


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_heatmap_deletion_score_beats_a_random_map(method):
    from cxrlib.explain import deletion_insertion, get_cam

    model = region_model(scale=4.0)  # p_0 about 0.95: not saturated, so both curves can move
    x = images(1)
    heat, _ = get_cam(method, model, "masked_relu")(x, target=0)
    result = deletion_insertion(model, x[0], heat[0], 0, baseline="zero", steps=16)
    random_map = np.random.default_rng(7).random((S, S)).astype(np.float32)
    reference = deletion_insertion(model, x[0], random_map, 0, baseline="zero", steps=16)
    # The region is 10% of the image: deleting it first drops the score within the first steps.
    assert result["deletion_auc"] < result["deletion_auc_random"] - 0.1
    assert result["faithfulness"] > reference["faithfulness"] + 0.1
    assert result["insertion_gain"] > reference["insertion_gain"] + 0.1
    assert abs(reference["faithfulness"]) < 0.05  # a random map is as good as a random order


def test_curves_start_and_end_at_the_model_scores_of_image_and_baseline():
    from cxrlib.explain import deletion_insertion, deletion_score

    model = region_model()
    x = images(1)[0]
    heat = np.random.default_rng(1).random((S, S)).astype(np.float32)
    r = deletion_insertion(model, x, heat, None, baseline="mean", steps=10)
    p_image = np.asarray(model(x[None]))[0]
    p_base = np.asarray(model(np.broadcast_to(x.mean(axis=(0, 1)), x.shape)[None]))[0]
    target = int(p_image.argmax())
    assert r["target"] == target and len(r["deletion"]) == len(r["fractions"]) == 11
    for curve, start, end in (("deletion", p_image, p_base), ("insertion", p_base, p_image),
                              ("deletion_random", p_image, p_base)):
        assert r[curve][0] == pytest.approx(start[target], abs=1e-5)
        assert r[curve][-1] == pytest.approx(end[target], abs=1e-5)
    assert r["deletion_auc"] == pytest.approx(np.trapezoid(r["deletion"], r["fractions"]))
    assert r["faithfulness"] == pytest.approx(r["deletion_auc_random"] - r["deletion_auc"])
    assert deletion_score(model, x, heat, None, baseline="mean", steps=10) == pytest.approx(
        r["faithfulness"])


def test_deletion_leaves_model_and_input_unchanged_and_rejects_bad_baselines():
    from cxrlib.explain import deletion_insertion

    model = region_model()
    x = images(1)
    before, weights = x.copy(), [w.copy() for w in model.get_weights()]
    deletion_insertion(model, x, np.ones((S, S), np.float32), 0)
    np.testing.assert_array_equal(x, before)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    with pytest.raises(ValueError, match="blur"):
        deletion_insertion(model, x, np.ones((S, S)), 0, baseline="noise")


def test_randomisation_check_names_unknown_layers():
    from cxrlib.explain import randomisation_check

    with pytest.raises(ValueError, match="no_such_layer"):
        randomisation_check(region_model(), images(1), "gradcam", "masked_relu", layers=["no_such_layer"])


def test_ssim_is_one_for_identical_maps_and_low_for_opposite_ones():
    from cxrlib.explain import ssim

    a = np.random.default_rng(0).random((32, 32))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 1 - a) < 0.0


@pytest.fixture(scope="module")
def trained_model():
    """A tiny CNN trained to tell films with a bright square (class 0) from films without."""
    from cxrlib.core.tfsetup import tf

    tf()
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 256
    x = rng.normal(0.3, 0.05, (n, S, S, 3)).astype(np.float32)
    y = np.arange(n) % 2
    for i in np.nonzero(y == 0)[0]:
        r, c = rng.integers(2, S - 10, 2)
        x[i, r:r + 8, c:c + 8] += 0.6
    x = np.clip(x, 0, 1)
    inp = keras.Input((S, S, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.GlobalMaxPooling2D()(h)
    h = keras.layers.Dense(16, activation="relu", name="h1")(h)
    out = keras.layers.Dense(2, activation="softmax", name="out")(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    accuracy = model.evaluate(x, y, verbose=0)[1]
    assert accuracy > 0.95, accuracy
    return model, x[y == 0][:4]


def test_randomising_the_head_changes_the_heatmaps(trained_model):
    from cxrlib.explain import layers_above, randomisation_check

    model, x = trained_model
    weights = [w.copy() for w in model.get_weights()]
    assert layers_above(model, "c2") == ["h1", "out"]
    result = randomisation_check(model, x, "gradcam", "c2", target=0, seed=1)
    assert result["randomised"] == ["h1", "out"]
    assert result["differs"] and result["rank_correlation"] < 0.5
    assert result["heatmaps"].shape == result["heatmaps_randomised"].shape == (4, S, S)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    # Control: randomising nothing must report identical heatmaps (the check can tell).
    control = randomisation_check(model, x, "gradcam", "c2", target=0, layers=[])
    assert control["rank_correlation"] == pytest.approx(1.0) and not control["differs"]
    assert control["ssim"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_trained_model_heatmap_finds_the_square(trained_model, method):
    """The trained model's heatmap peaks on (the edges of) the square it learned to detect."""
    from cxrlib.explain import get_cam

    model, x = trained_model
    heat, _ = get_cam(method, model, "c2")(x, target=0)
    for h, img in zip(heat, x):
        rows, cols = np.nonzero(img[..., 0] > 0.6)
        r, c = np.unravel_index(h.argmax(), h.shape)
        assert rows.min() - 3 <= r <= rows.max() + 3 and cols.min() - 3 <= c <= cols.max() + 3
