"""Finer maps and options: LayerCAM fused over strides, occlusion, resolution, Finer-CAM's
contrast, eigen-smoothing and test-time-augmentation smoothing (checked by property)."""
from __future__ import annotations

import numpy as np
import pytest

from test_explain import COLS, ROWS, S, _keras, images, region_model
from test_road import _planted_films

SQUARE = 4  # side of the planted square the multi-scale model learns to find


def _square_films(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(films, labels, centres)``: noise; class 0 has a bright 4 x 4 square somewhere."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.3, 0.05, (n, S, S, 3)).astype(np.float32)
    y = np.arange(n) % 2
    centres = np.full((n, 2), np.nan)
    for i in np.nonzero(y == 0)[0]:
        r, c = rng.integers(2, S - SQUARE - 2, 2)
        x[i, r:r + SQUARE, c:c + SQUARE] += 0.6
        centres[i] = (r + (SQUARE - 1) / 2, c + (SQUARE - 1) / 2)
    return np.clip(x, 0, 1), y, centres


@pytest.fixture(scope="module")
def three_scale_model():
    """A tiny CNN with ReLU layers at 16, 8 and 4 cells a side, trained to find the square."""
    keras = _keras()
    keras.utils.set_random_seed(0)
    x, y, _ = _square_films(256, seed=0)
    layers = keras.layers
    inp = keras.Input((S, S, 3))
    h = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="s2")(inp)
    h = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="s4")(h)
    h = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="s8")(h)
    h = layers.GlobalMaxPooling2D()(h)
    model = keras.Model(inp, layers.Dense(2, activation="softmax", name="out")(h))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] > 0.95
    test, labels, centres = _square_films(16, seed=1)
    return model, test[labels == 0], centres[labels == 0]


def _peak_distance(heat: np.ndarray, centres: np.ndarray) -> np.ndarray:
    peaks = np.array([np.unravel_index(h.argmax(), h.shape) for h in heat])
    return np.hypot(*(peaks - centres).T)


def test_fused_layercam_keeps_shape_and_range_and_localises_finer_than_the_last_layer(
        three_scale_model):
    from cxrlib.explain import get_cam
    from cxrlib.explain.multiscale import fusion_layers

    model, x, centres = three_scale_model
    assert fusion_layers(model, "s8") == ["s8", "s4", "s2"]
    fused = get_cam("layercam-fused", model)
    assert fused.layer == "s8" and fused.layers == ["s8", "s4", "s2"]
    assert fused.resolution(film_side=3000) == {"cells_per_side": 16, "input_px_per_cell": 2.0,
                                                "film_px_per_cell": 187.5}
    heat, _ = fused(x, target=0)
    last, _ = get_cam("layercam", model, "s8")(x, target=0)
    assert heat.shape == last.shape == (len(x), S, S) and heat.dtype == np.float32
    assert heat.min() >= 0 and np.allclose(heat.max(axis=(1, 2)), 1.0)
    d_fused, d_last = _peak_distance(heat, centres), _peak_distance(last, centres)
    # A last-layer cell is 8 px: its peak can sit anywhere in it. The fused peak is within 3 px.
    assert np.median(d_fused) <= 3.0 and d_fused.mean() < d_last.mean(), (d_fused, d_last)


def test_fusion_layers_of_mobilenetv2_are_one_per_stride():
    keras = _keras()
    from cxrlib.explain import get_cam
    from cxrlib.explain.multiscale import fusion_layers

    backbone = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False,
                                              weights=None)
    inp = keras.Input((96, 96, 3))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(backbone(inp))))
    assert fusion_layers(model, "out_relu") == ["out_relu", "block_13_expand_relu",
                                                "block_6_expand_relu"]  # strides 32, 16, 8
    assert get_cam("layercam-fused", model).cells_per_side == 12
    assert get_cam("gradcam", model).resolution(960) == {
        "cells_per_side": 3, "input_px_per_cell": 32.0, "film_px_per_cell": 320.0}


def test_occlusion_finds_the_one_patch_the_output_depends_on():
    from cxrlib.explain import get_cam

    x = _planted_films(2, seed=2)  # the region the model reads is bright on a dark film
    inside = np.zeros((S, S), bool)
    inside[ROWS[0]:ROWS[1], COLS[0]:COLS[1]] = True
    for model in (region_model(), region_model(scale=1.0)):
        cam = get_cam("occlusion", model, patch=4, stride=2)
        assert cam.layer == "input" and cam.cells_per_side == 15
        heat, _ = cam(x, target=0)
        for h in heat:
            assert inside[np.unravel_index(h.argmax(), h.shape)]
            assert h[inside].sum() / h.sum() > 0.6  # the patch is 4 px: some spills over the edge
    # Model-agnostic: a plain prediction function (as a TFLite interpreter) finds it too.
    model = region_model(scale=1.0)  # p_0 not saturated, so probabilities can move
    as_function = get_cam("occlusion", lambda b: np.asarray(model(b, training=False)), patch=4,
                          stride=2)
    heat, probs = as_function(x, target=0)
    assert probs.shape == (2, 2) and all(inside[np.unravel_index(h.argmax(), h.shape)] for h in heat)


def _two_region_model():
    """Three classes read two channels: S_0 = mean A_0 + mean A_1, S_1 = mean A_0, S_2 = 0; ``A_k``
    is input channel k (1 x 1 conv, ReLU). Classes 0 and 1 share A_0; only A_1 tells them apart."""
    keras = _keras()
    inp = keras.Input((S, S, 3))
    conv = keras.layers.Conv2D(2, 1, use_bias=False, activation="relu", name="conv")
    dense = keras.layers.Dense(3, activation="softmax", name="scores")
    model = keras.Model(inp, dense(keras.layers.GlobalAveragePooling2D()(conv(inp))))
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, 0, 0] = kernel[0, 0, 1, 1] = 1.0
    conv.set_weights([kernel])
    dense.set_weights([np.array([[1, 1, 0], [1, 0, 0]], np.float32) * 40, np.zeros(3, np.float32)])
    return model


def test_finercam_keeps_what_separates_the_class_from_its_nearest_competitor():
    from cxrlib.explain import get_cam
    from cxrlib.explain.gradient_methods import competitors

    x = np.full((2, S, S, 3), 0.05, np.float32)
    shared, separating = np.zeros((S, S), bool), np.zeros((S, S), bool)
    shared[2:10, 2:10], separating[20:28, 18:30] = True, True
    x[:, shared, 0] = 0.9
    x[:, separating, 1] = 0.9
    model = _two_region_model()
    finer, probs = get_cam("finercam", model, "conv")(x, target=0)
    plain, _ = get_cam("gradcam", model, "conv")(x, target=0)
    assert competitors(probs, np.zeros(2, np.int32)).tolist() == [1, 1]
    for f, g in zip(finer, plain):
        assert f[separating].sum() / f.sum() > 0.9 and f[shared].sum() / f.sum() < 0.05
        assert g[shared].sum() / g.sum() > 0.3  # Grad-CAM shows the shared evidence as well
    chosen, _ = get_cam("finercam", model, "conv", competitor=2)(x, target=0)
    assert chosen[0][shared].sum() / chosen[0].sum() > 0.3  # against class 2 both regions count
    with pytest.raises(ValueError, match="itself"):
        get_cam("finercam", model, "conv", competitor=0)(x, target=0)


def test_eigen_smoothing_projects_on_the_principal_component_with_the_evidence_sign():
    from cxrlib.explain import get_cam
    from cxrlib.explain.maps import principal_projection

    rng = np.random.default_rng(0)
    u, v = rng.random((6, 6)), rng.random(5) + 0.5
    weighted = (u[..., None] * v)[None]  # rank one: every channel is the same pattern
    out = principal_projection(weighted, weighted.sum(axis=-1))[0]
    centred = u - u.mean()
    np.testing.assert_allclose(out, centred * np.linalg.norm(v), atol=1e-6)
    flipped = principal_projection(-weighted, -weighted.sum(axis=-1))[0]
    np.testing.assert_allclose(flipped, -out, atol=1e-6)  # the sign follows the evidence
    inside = np.zeros((S, S), bool)
    inside[ROWS[0] - 1:ROWS[1] + 1, COLS[0] - 1:COLS[1] + 1] = True
    for name in ("gradcam", "scorecam", "layercam"):
        heat = get_cam(name, region_model(), "masked_relu").explain(
            images(2), 0, eigen_smooth=True).heatmaps
        assert all(inside[np.unravel_index(h.argmax(), h.shape)] for h in heat), name
    for name in ("eigencam", "occlusion", "layercam-fused"):
        with pytest.raises(ValueError, match="eigen-smoothing"):
            get_cam(name, region_model(), "masked_relu").explain(images(1), eigen_smooth=True)


class _BrightnessMap:
    """A stand-in CAM whose map is the input's first channel: it moves with every shift."""

    def explain(self, x, target=None, eigen_smooth=False):
        from cxrlib.explain import Explanation

        heat = x[..., 0] / x[..., 0].max(axis=(1, 2), keepdims=True)
        return Explanation(heat.astype(np.float32), np.ones((len(x), 1), np.float32),
                           np.zeros(len(x), np.int32), np.zeros(len(x), bool), "bright", "input",
                           True)


def test_tta_smoothing_averages_in_the_films_frame_without_flips():
    from cxrlib.explain.smoothing import explain_tta
    from cxrlib.models.tta import VIEWS

    assert all(scale > 0 for _, _, scale in VIEWS["shift_scale"])  # no flip among the views
    x = np.full((1, 64, 64, 3), 0.1, np.float32)
    x[0, 10:22, 40:52] = 1.0  # off-centre and off the diagonal: a flip or a missed warp shows
    result = explain_tta(_BrightnessMap(), x)
    plain = _BrightnessMap().explain(x).heatmaps[0]
    heat = result.heatmaps[0]
    assert heat.shape == (64, 64) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    assert np.corrcoef(heat.ravel(), plain.ravel())[0, 1] > 0.97  # back in the film's frame
    assert heat[10:22, 40:52].mean() > 0.8 and heat[40:52, 10:22].max() < 0.1
    assert result.method == "bright+tta"


def test_smoothing_by_name_dispatches_and_leaves_out_eigen_where_not_allowed():
    from cxrlib.explain.smoothing import SMOOTHINGS, explain_smoothed, smoothing_for
    from cxrlib.models.tta import VIEWS

    class Recording(_BrightnessMap):
        supports_eigen_smooth = True

        def __init__(self):
            self.calls = []

        def explain(self, x, target=None, eigen_smooth=False):
            self.calls.append(eigen_smooth)
            return super().explain(x, target)

    x = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    for name, views, eigen in (("none", 1, False), ("eigen", 1, True),
                               ("tta", len(VIEWS["shift_scale"]), False),
                               ("tta+eigen", len(VIEWS["shift_scale"]), True)):
        cam = Recording()
        explain_smoothed(cam, x, None, name)
        assert cam.calls == [eigen] * views, name
        assert smoothing_for(cam, name) == name
    cam.supports_eigen_smooth = False
    assert [smoothing_for(cam, n) for n in SMOOTHINGS] == ["none", "tta", "none", "tta"]
    with pytest.raises(ValueError, match="unknown smoothing 'blur'"):
        smoothing_for(cam, "blur")
    with pytest.raises(ValueError, match="unknown smoothing"):
        explain_smoothed(cam, x, None, "flip")
