"""CAM methods: the contract over every registered method, and correctness on hand-built models.

The models here are tiny and built by hand so that the right answer is known: a stride-2 conv
whose activations are zeroed outside one off-diagonal rectangle of the image before pooling, so
the output depends only on that region (:func:`region_model`).
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

S = 32
METHODS = ["gradcam", "gradcam++", "scorecam", "faster-scorecam", "hirescam", "xgradcam",
           "layercam", "ablationcam", "eigencam", "layercam-fused", "occlusion", "finercam"]
LAYER_METHODS = [m for m in METHODS if m != "occlusion"]  # occlusion spreads a patch's width
ROWS, COLS = (4, 12), (20, 30)  # the region (input pixels); off the diagonal, so a transposed map fails
ACT_ROWS, ACT_COLS = (2, 6), (10, 15)  # the same region on the 16 x 16 activation grid


def _keras():
    from cxrlib.core.tfsetup import tf

    tf()
    import keras

    return keras


def _region_mask_class():
    keras = _keras()

    class RegionMask(keras.layers.Layer):
        """Multiplies (N, h, w, C) activations by a fixed 0/1 mask of a rectangle."""

        def __init__(self, rows, cols, **kwargs):
            super().__init__(**kwargs)
            self.rows, self.cols = tuple(rows), tuple(cols)

        def call(self, x):
            mask = np.zeros((1, x.shape[1], x.shape[2], 1), np.float32)
            mask[:, self.rows[0]:self.rows[1], self.cols[0]:self.cols[1]] = 1.0
            return x * mask

        def get_config(self):
            return {**super().get_config(), "rows": self.rows, "cols": self.cols}

    return RegionMask


def _set_hand_weights(model, scale: float) -> None:
    """conv: positive averaging kernels (channel k weighs (k + 1) / 27); scores: +scale / -scale."""
    conv = next(layer for layer in _all_layers(model) if layer.name == "conv")
    kernel = np.ones((3, 3, 3, 4), np.float32) / 27.0 * np.arange(1, 5, dtype=np.float32)
    conv.set_weights([kernel])
    dense = next(layer for layer in _all_layers(model) if layer.name == "scores")
    w = np.stack([np.full(4, scale), np.full(4, -scale)], axis=1).astype(np.float32)
    dense.set_weights([w, np.zeros(2, np.float32)])


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _region_layers(keras):
    return [keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False, name="conv"),
            _region_mask_class()(ACT_ROWS, ACT_COLS, name="mask"),
            keras.layers.ReLU(name="masked_relu")]


def region_model(kind: str = "flat", scale: float = 20.0):
    """A model whose class-0 logit is ``scale`` x the mean masked activation (class 1: minus it).

    ``kind``: ``"flat"`` functional, ``"nested"`` (a Rescaling, then the conv part as a nested
    backbone sub-model, then the head) or ``"sequential"``.
    """
    keras = _keras()
    head = [keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(2, activation="softmax", name="scores")]
    if kind == "sequential":
        model = keras.Sequential([keras.Input((S, S, 3)), *_region_layers(keras), *head])
    elif kind == "flat":
        inp = keras.Input((S, S, 3), name="film")
        x = inp
        for layer in _region_layers(keras) + head:
            x = layer(x)
        model = keras.Model(inp, x, name="flat")
    elif kind == "nested":
        b_in = keras.Input((S, S, 3))
        x = b_in
        for layer in _region_layers(keras):
            x = layer(x)
        backbone = keras.Model(b_in, x, name="backbone")
        inp = keras.Input((S, S, 3), name="film")
        x = backbone(keras.layers.Rescaling(1.0, name="identity_scaling")(inp))
        for layer in head:
            x = layer(x)
        model = keras.Model(inp, x, name="nested")
    else:
        raise ValueError(kind)
    _set_hand_weights(model, scale)
    return model


def images(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, S, S, 3)).astype(np.float32)


def _snapshot(model, x):
    configs = [(layer.name, repr(layer.get_config())) for layer in _all_layers(model)]
    graph = json.dumps(model.get_config(), default=str, sort_keys=True)  # layers and connections
    return ([w.copy() for w in model.get_weights()], (configs, graph),
            np.asarray(model(x, training=False)))


# --- contract ------------------------------------------------------------------------------
# (Its other case, no method flat at its default layer on a trained tiny model, and the layers
# each method is valid on: tests/test_cam_flat.py.)

@pytest.mark.parametrize("kind", ["flat", "nested", "sequential"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_the_contract(method, kind):
    from cxrlib.explain import CAM_METHODS, get_cam

    assert method in CAM_METHODS
    model = region_model(kind)
    x = images(3)
    x_before = x.copy()
    weights, configs, probs_before = _snapshot(model, x)

    heat, probs = get_cam(method, model, "masked_relu")(x)

    assert heat.shape == (3, S, S) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
    assert np.allclose(heat.max(axis=(1, 2)), 1.0)  # normalised, and not empty here
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs, probs_before, atol=1e-6)
    np.testing.assert_array_equal(x, x_before)
    w_after, c_after, probs_after = _snapshot(model, x)
    assert all(np.array_equal(a, b) for a, b in zip(weights, w_after))
    assert configs == c_after  # activations and every other setting unchanged
    np.testing.assert_array_equal(probs_after, probs_before)


def test_every_registered_method_is_covered():
    from cxrlib.explain import CAM_METHODS

    assert set(CAM_METHODS) == set(METHODS)


def test_all_zero_evidence_gives_zeros_not_nan():
    from cxrlib.explain import get_cam

    # Class 1's weights are all negative on positive activations: ReLU leaves nothing.
    heat, _ = get_cam("gradcam", region_model(), "masked_relu")(images(2), target=1)
    assert np.isfinite(heat).all() and not heat.any()


# --- correctness ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", LAYER_METHODS)
def test_heatmap_peaks_in_the_only_region_the_output_depends_on(method):
    from cxrlib.explain import get_cam

    heat, _ = get_cam(method, region_model(), "masked_relu")(images(2), target=0)
    inside = np.zeros((S, S), bool)
    inside[ROWS[0] - 1:ROWS[1] + 1, COLS[0] - 1:COLS[1] + 1] = True  # 1 px of bilinear spread
    for h in heat:
        r, c = np.unravel_index(h.argmax(), h.shape)
        assert inside[r, c], (method, r, c)
        assert h[inside].sum() / h.sum() > 0.99


def test_gradcam_matches_the_formula_computed_independently():
    """Grad-CAM for class 0 is ReLU(sum_k w_k A_k) with w_k = d z_0 / d mean(A_k) / (h w) =
    kernel[k, 0] / (h w): computed here from a plain sub-model's activations."""
    keras = _keras()
    import cv2

    from cxrlib.explain import get_cam

    model = region_model()
    x = images(2)
    acts = np.asarray(keras.Model(model.input, model.get_layer("masked_relu").output)(x))
    kernel = model.get_layer("scores").get_weights()[0]
    expected = []
    for a in acts:
        cam = np.maximum(a @ (kernel[:, 0] / (a.shape[0] * a.shape[1])), 0).astype(np.float32)
        cam = cv2.resize(cam, (S, S), interpolation=cv2.INTER_LINEAR)
        expected.append((cam - cam.min()) / (cam.max() - cam.min()))
    heat, _ = get_cam("gradcam", model, "masked_relu")(x, target=0)
    np.testing.assert_allclose(heat, np.stack(expected), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_nested_sequential_and_flat_models_give_the_same_heatmap(method):
    from cxrlib.explain import get_cam

    x = images(2, seed=3)
    heat_flat, probs_flat = get_cam(method, region_model("flat"), "masked_relu")(x)
    for kind in ("nested", "sequential"):
        heat, probs = get_cam(method, region_model(kind), "masked_relu")(x)
        np.testing.assert_allclose(heat, heat_flat, atol=1e-5)
        np.testing.assert_allclose(probs, probs_flat, atol=1e-6)


def test_logit_score_survives_a_saturated_softmax():
    """With the logit differentiated, scaling the head by 1000 (p rounds to 1.0 in float32) only
    scales the map, which normalisation removes."""
    from cxrlib.explain import get_cam

    x = images(2)
    cam = get_cam("gradcam", region_model(scale=1000.0), "masked_relu")
    assert cam.score == "dense_logit"
    heat_saturated, probs = cam(x, target=0)
    assert (probs[:, 0] == 1.0).all()
    heat, _ = get_cam("gradcam", region_model(scale=1.0), "masked_relu")(x, target=0)
    np.testing.assert_allclose(heat_saturated, heat, atol=1e-5)


def test_target_none_explains_the_predicted_class():
    from cxrlib.explain import get_cam

    model = region_model()
    x = np.concatenate([images(1), np.zeros((1, S, S, 3), np.float32)])
    cam = get_cam("gradcam", model, "masked_relu")
    heat, probs = cam(x)
    predicted = probs.argmax(axis=1)
    for i, c in enumerate(predicted):
        # Batch of 2 vs batch of 1: oneDNN may sum in another order (differences ~1e-7).
        np.testing.assert_allclose(heat[i], cam(x[i:i + 1], target=int(c))[0][0], atol=1e-5)
        if heat[i].max() > 0:  # (the blank film has no evidence for either class)
            other = cam(x[i:i + 1], target=int(1 - c))[0][0]
            assert np.abs(heat[i] - other).max() > 1e-2  # the tolerance cannot hide another class


BINARY_W = np.array([4.0, -3.0, 2.0, 1.0], np.float32)  # the binary model's weights on A_0..A_3


def _binary_pair_model(bias: float):
    """``[s, 1 - s]`` with ``s = sigmoid(sum_k w_k mean(A_k) + bias)``; ``conv_0`` is a 1x1 conv
    whose channels are the three input channels and their mean (``A`` is known in NumPy)."""
    keras = _keras()
    inp = keras.Input((S, S, 3))
    conv = keras.layers.Conv2D(4, 1, use_bias=False, name="conv_0")
    x = keras.layers.GlobalAveragePooling2D()(conv(inp))
    dense = keras.layers.Dense(1, activation="sigmoid", name="p_positive")
    s = dense(x)
    model = keras.Model(inp, keras.layers.Concatenate()([s, keras.layers.Lambda(lambda t: 1.0 - t)(s)]))
    kernel = np.zeros((1, 1, 3, 4), np.float32)
    kernel[0, 0, [0, 1, 2], [0, 1, 2]] = 1.0
    kernel[0, 0, :, 3] = 1.0 / 3.0
    conv.set_weights([kernel])
    dense.set_weights([BINARY_W[:, None], np.array([bias], np.float32)])
    return model


def _gradcam_pp_closed_form(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM++ in NumPy for gradients constant over the map (``grads``: (N, K)), at input size."""
    hw = acts.shape[1] * acts.shape[2]
    sum_a = acts.sum(axis=(1, 2))
    g = grads
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(g != 0, g ** 2 / (2 * g ** 2 + sum_a * g ** 3), 0.0)
    weights = hw * alpha * np.maximum(g, 0)
    return _minmax(np.maximum(np.einsum("nhwk,nk->nhw", acts, weights), 0))


def _minmax(maps: np.ndarray) -> np.ndarray:
    lo, hi = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
    return (maps - lo) / (hi - lo)


def test_binary_probability_pair_output_uses_log_probability():
    """With an ``[s, 1 - s]`` output there is no logit to recover: the score is ``log p_c``.
    For this model ``d log s / dA_k = (1 - s) w_k / hw`` and ``d log(1 - s) / dA_k = -s w_k / hw``,
    closed forms computed here. Grad-CAM++ is not invariant to the gradient's scale (its alphas
    are not), so it tells ``log p_c`` from ``p_c`` (gradient ``+-s (1 - s) w_k / hw``)."""
    from cxrlib.explain import get_cam

    x = images(2, seed=4)
    acts = np.concatenate([x, x.mean(axis=-1, keepdims=True)], axis=-1).astype(np.float64)
    hw = S * S
    model = _binary_pair_model(bias=-4.5)  # s is about 0.1: log p and p differ in scale by 10
    s = 1 / (1 + np.exp(-(acts.mean(axis=(1, 2)) @ BINARY_W - 4.5)))[:, None]
    assert (s < 0.3).all()

    cam = get_cam("gradcam", model)
    assert cam.layer == "conv_0" and cam.score == "log_prob"
    heat, probs = cam(x, target=1)
    np.testing.assert_allclose(probs, np.hstack([s, 1 - s]), atol=1e-5)
    # Grad-CAM of class 1: ReLU(-s / hw * sum_k w_k A_k), min-max scaled (the factor cancels).
    np.testing.assert_allclose(heat, _minmax(np.maximum(-acts @ BINARY_W, 0)), atol=1e-4)

    pp = get_cam("gradcam++", model)
    for target, log_grad, prob_grad in ((0, (1 - s) * BINARY_W / hw, s * (1 - s) * BINARY_W / hw),
                                        (1, -s * BINARY_W / hw, -s * (1 - s) * BINARY_W / hw)):
        heat, _ = pp(x, target=target)
        expected = _gradcam_pp_closed_form(acts, log_grad)
        np.testing.assert_allclose(heat, expected, atol=1e-4)
        if target == 0:
            assert np.abs(expected - _gradcam_pp_closed_form(acts, prob_grad)).max() > 0.02
        else:  # only channel 1 (weight -3) has a positive gradient: the map is input channel 1
            np.testing.assert_allclose(heat, _minmax(x[..., 1]), atol=1e-4)


# --- layers, registry, compilation ---------------------------------------------------------

def test_conv_layer_names_descend_into_nested_models_in_order():
    from cxrlib.explain import conv_layer_names, default_layer

    assert conv_layer_names(region_model("nested")) == ["conv", "masked_relu"]
    assert default_layer(region_model("nested")) == "masked_relu"


def test_mobilenetv2_named_defaults(default_cam_layers):
    keras = _keras()
    from cxrlib.explain import MOBILENETV2_LAYERS, conv_layer_names, default_layer

    backbone = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False,
                                              weights=None)
    inp = keras.Input((96, 96, 3))
    out = keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(backbone(inp)))
    nested = keras.Model(inp, out)
    names = conv_layer_names(nested)
    assert names.index("block_16_depthwise") < names.index("out_relu") == len(names) - 1
    assert names[0] == "Conv1" and "block_16_depthwise_BN" not in names
    assert default_layer(nested) == MOBILENETV2_LAYERS[0] == "block_16_depthwise"
    # What each layer gives, and so where each method defaults: signed methods keep the
    # published layer, those needing non-negative activations get the backbone's last ReLU6.
    from cxrlib.explain import (ANY, CAM_METHODS, NON_NEGATIVE, layer_activations,
                                method_default_layer, method_layers)

    assert layer_activations(nested, "block_16_depthwise") == ANY
    assert layer_activations(nested, "block_16_depthwise_relu") == NON_NEGATIVE
    assert layer_activations(nested, "out_relu") == NON_NEGATIVE
    assert default_layer(nested, NON_NEGATIVE) == MOBILENETV2_LAYERS[1] == "out_relu"
    assert set(CAM_METHODS) == set(default_cam_layers)
    for name in CAM_METHODS:
        assert method_default_layer(name, nested) == default_cam_layers[name], name
    valid = method_layers("gradcam++", nested)
    assert "block_16_depthwise" not in valid and {"block_16_depthwise_relu", "out_relu"} <= set(valid)
    assert all(n.endswith("relu") for n in valid) and method_layers("gradcam", nested) == names


def test_unknown_method_or_layer_errors_list_the_valid_ones():
    from cxrlib.explain import get_cam

    model = region_model()
    with pytest.raises(ValueError, match=r"gradcam\+\+.*scorecam"):
        get_cam("lime", model)
    with pytest.raises(ValueError, match="masked_relu"):
        get_cam("gradcam", model, "pool")  # exists, but is not a conv-like layer
    with pytest.raises(ValueError, match="valid layers: conv, masked_relu"):
        get_cam("gradcam", model, "no_such_layer")
    cam = get_cam("gradcam", model, "masked_relu")
    n_classes = model.output_shape[-1]
    for bad in (n_classes, -2, [0, n_classes]):
        with pytest.raises(ValueError, match="target class index"):
            cam(images(2), target=bad)
    with pytest.raises(ValueError, match="3 targets for 2 images"):
        cam(images(2), target=[0, 1, 0])


def test_gradient_model_is_cached_and_traced_once_per_image_shape():
    from cxrlib.explain import get_cam

    model = region_model()
    a, b = get_cam("gradcam", model, "masked_relu"), get_cam("gradcam++", model, "masked_relu")
    assert a.grad_model is b.grad_model
    for n in (1, 2, 5, 2):
        a(images(n))
        b(images(n))
    assert a._engine.gradient_fn((1, S, S, 3)).experimental_get_tracing_count() == 1
    assert get_cam("gradcam", model, "conv").grad_model is not a.grad_model


def test_methods_built_at_once_by_several_sessions_share_one_engine_and_one_trace(monkeypatch):
    """Issue 22: on a shared server, sessions asking at once for methods on the same layer each
    built their own gradient model and traced its function (four traces of MobileNetV2's
    backward pass at once froze the Explain page for about 30 s). Building and tracing are done
    once whoever asks meanwhile."""
    import threading
    import time

    from cxrlib.explain import engine as engine_mod
    from cxrlib.explain import get_cam

    model = region_model()
    slow = engine_mod.build_tap_model

    def slow_build(*args, **kwargs):  # widen the window in which a second caller would build too
        time.sleep(0.2)
        return slow(*args, **kwargs)

    monkeypatch.setattr(engine_mod, "build_tap_model", slow_build)
    cams, errors = [], []
    start = threading.Barrier(4)

    def session(method):
        try:
            start.wait()
            cam = get_cam(method, model, "masked_relu")
            cam(images(1))
            cams.append(cam)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(m,))
               for m in ("gradcam", "gradcam++", "xgradcam", "hirescam")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({id(c.grad_model) for c in cams}) == 1
    assert len({id(c._engine.gradient_fn((1, S, S, 3))) for c in cams}) == 1
    assert cams[0]._engine.gradient_fn((1, S, S, 3)).experimental_get_tracing_count() == 1


def test_warming_a_models_engines_traces_them_before_the_first_explanation():
    """Issue 22: the first explanation of a method traced its gradient function on the click
    path (a second or more on MobileNetV2; half a minute on a busy shared server). ``warm_engines``
    traces every method's functions ahead, once, and explaining afterwards traces nothing."""
    from cxrlib.explain import get_cam
    from cxrlib.explain.engine import engine, warm_engines

    model = region_model()
    warm_engines(model, ["masked_relu", "conv"])
    for layer in ("masked_relu", "conv"):
        fns = (engine(model, layer).gradient_fn((1, S, S, 3)),
               engine(model, layer).activation_fn((1, S, S, 3)))
        assert [f.experimental_get_tracing_count() for f in fns] == [1, 1]
    for method in ("gradcam", "gradcam++", "eigencam"):
        get_cam(method, model, "masked_relu")(images(3))
    assert engine(model, "masked_relu").gradient_fn((1, S, S, 3)).experimental_get_tracing_count() == 1
    assert engine(model, "masked_relu").activation_fn((1, S, S, 3)).experimental_get_tracing_count() == 1


def test_importing_explain_does_not_import_tensorflow():
    code = ("import sys, cxrlib.explain; "
            "print(any(m in sys.modules for m in ('tensorflow', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    assert out.stdout.strip() == "False"
