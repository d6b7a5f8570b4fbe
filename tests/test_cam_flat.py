"""Flat maps and valid layers: each method declares the activations it needs, defaults to a layer
that has them, and a map without contrast is reported (zeros, ``flat``), never drawn.

The defect this guards against: Grad-CAM++ on MobileNetV2's pre-activation ``block_16_depthwise``
returned all-zero maps for most real films (see ``tests/test_realdata_explain.py``). Here a tiny
trained stand-in with the same two named layers reproduces it.
"""
from __future__ import annotations

import numpy as np
import pytest

from test_explain import S, _keras, images, region_model


# --- flat maps, and layers where each method is valid --------------------------------------

def _shape_films(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(films, labels, boxes)``: noise with one bright shape at a random place, its class
    0: a square, 1: a horizontal bar, 2: a vertical bar; ``boxes`` are the shapes' bool masks."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.3, (3 * n, S, S)).astype(np.float32)
    boxes = np.zeros((3 * n, S, S), bool)
    for i in range(3 * n):
        h, w = ((7, 7), (3, 14), (14, 3))[i // n]
        r, c = rng.integers(2, S - h - 1), rng.integers(2, S - w - 1)
        x[i, r:r + h, c:c + w] += 0.7
        boxes[i, r:r + h, c:c + w] = True
    return np.repeat(x[..., None], 3, axis=-1), np.repeat(np.arange(3), n), boxes


@pytest.fixture(scope="module")
def mobilenet_like():
    """A tiny network with MobileNetV2's two named layers, trained on :func:`_shape_films`.

    Its ``block_16_depthwise`` is, like the real one on real films, a linear (pre-activation)
    depthwise convolution with negative outputs: its kernel is kept <= 0 and its input is a
    ReLU's, so every activation is <= 0. ``out_relu`` is a ReLU6, as in MobileNetV2.
    """
    keras = _keras()

    class NonPositive(keras.constraints.Constraint):
        def __call__(self, w):
            return keras.ops.minimum(w, 0.0)

    keras.utils.set_random_seed(0)
    layers = keras.layers
    inp = keras.Input((S, S, 3))
    x = layers.Rescaling(2.0, offset=-1.0)(inp)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="Conv1")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False,
                               depthwise_constraint=NonPositive(), name="block_16_depthwise")(x)
    x = layers.ReLU(6.0, name="block_16_project_relu")(layers.Conv2D(24, 1, name="block_16_project")(x))
    x = layers.ReLU(6.0, name="out_relu")(layers.Conv2D(32, 1, name="Conv_1")(x))
    out = layers.Dense(3, activation="softmax", name="predictions")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out, name="mobilenet_like")
    films, labels, _ = _shape_films(24, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(films, labels, epochs=30, batch_size=12, verbose=0)
    test = _shape_films(4, seed=1)
    assert (np.asarray(model(test[0], training=False)).argmax(axis=1) == test[1]).mean() >= 0.9
    return model, test


def test_no_method_returns_a_flat_map_at_its_default_layer(mobilenet_like, default_cam_layers):
    from cxrlib.explain import CAM_METHODS, get_cam, is_flat

    model, (films, _, boxes) = mobilenet_like
    acts = np.asarray(get_cam("gradcam", model, "block_16_depthwise").grad_model(films)[0])
    assert acts.max() <= 0 and acts.min() < 0  # the stand-in's published layer is all negative
    assert set(CAM_METHODS) == set(default_cam_layers)
    for name in CAM_METHODS:
        cam = get_cam(name, model)
        assert cam.layer == default_cam_layers[name], name
        result = cam.explain(films)
        assert cam.layer_valid and result.layer_valid and result.layer == cam.layer
        assert not result.flat.any() and not is_flat(result.heatmaps).any(), name
        assert np.allclose(result.heatmaps.max(axis=(1, 2)), 1.0), name
        # ...and they point at the shape (4 % of the film): at least twice a uniform map's share.
        inside = [(h * b).sum() / h.sum() for h, b in zip(result.heatmaps, boxes)]
        assert np.median(inside) > 2 * boxes.mean(), (name, np.median(inside))


def test_methods_needing_non_negative_activations_report_flat_maps_on_a_negative_layer(mobilenet_like):
    """The defect the defaults fix: on a layer of negative activations LayerCAM's terms
    ``ReLU(g) A`` are all <= 0, so every map is flat; Grad-CAM++'s alphas and weights lose their
    meaning and many maps are flat (as on MobileNetV2's real ``block_16_depthwise``). Flat maps
    are reported (zeros, ``flat``), never stretched to [0, 1] as if they showed something."""
    from cxrlib.explain import get_cam, is_flat

    model, (films, _, _) = mobilenet_like
    for name in ("layercam", "gradcam++"):
        cam = get_cam(name, model, "block_16_depthwise")
        result = cam.explain(films)
        assert not cam.layer_valid and not result.layer_valid, name
        assert result.flat.all() if name == "layercam" else result.flat.mean() >= 0.25, result.flat
        assert is_flat(result.heatmaps).tolist() == result.flat.tolist(), name
        assert not result.heatmaps[result.flat].any()
    # The signed methods are valid there and give maps.
    for name in ("gradcam", "hirescam"):
        assert not get_cam(name, model, "block_16_depthwise").explain(films).flat.any(), name


def test_flatness_is_relative_contrast_of_the_positive_part():
    from cxrlib.explain import FLAT_TOLERANCE, is_flat
    from cxrlib.explain.maps import flat_maps, to_heatmaps

    rng = np.random.default_rng(0)
    signal = rng.normal(size=(7, 7))
    speck = -np.abs(signal)
    speck[3, 3] = 0.1 * FLAT_TOLERANCE * np.abs(signal).max()  # float-noise sized evidence
    raw = np.stack([signal, -np.abs(signal), np.full((7, 7), 2.0), speck, np.zeros((7, 7)),
                    np.where(np.eye(7, dtype=bool), np.nan, signal)])
    assert flat_maps(raw).tolist() == [False, True, True, True, True, True]
    heat, flat = to_heatmaps(raw, (S, S))
    assert flat.tolist() == flat_maps(raw).tolist() and np.isfinite(heat).all()
    assert is_flat(heat).tolist() == flat.tolist()  # a flat map comes back as zeros
    assert heat[0].max() == pytest.approx(1.0) and not heat[1:].any()
    assert is_flat(heat[0]) is False and is_flat(np.full((4, 4), 0.5)) is True
    speck[3, 3] = 10 * FLAT_TOLERANCE * np.abs(signal).max()  # small, but above float noise
    assert not flat_maps(speck[None])[0]
    with pytest.raises(ValueError, match="heatmap"):
        is_flat(np.zeros(5))


def test_ablation_cam_refuses_a_layer_that_a_residual_path_goes_around():
    keras = _keras()
    from cxrlib.explain import get_cam

    inp = keras.Input((S, S, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(a)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x))
    with pytest.raises(ValueError, match="conv_b.*bypassed"):
        get_cam("ablationcam", model, "conv_b")
    heat, _ = get_cam("ablationcam", model, "conv_a")(images(1))  # every path goes through conv_a
    assert heat.shape == (1, S, S) and np.isfinite(heat).all()


def test_eigencam_does_not_depend_on_the_class_and_the_others_do():
    from cxrlib.explain import CAM_METHODS, get_cam

    model, x = region_model(), images(2)
    for name, cls in CAM_METHODS.items():
        cam = get_cam(name, model, "masked_relu")
        for_0, for_1 = cam(x, target=0)[0], cam(x, target=1)[0]
        if cls.class_specific:  # class 1's evidence is the negative of class 0's: nothing left
            assert not np.allclose(for_0, for_1), name
        else:
            np.testing.assert_array_equal(for_0, for_1)
