"""Real-data tier: MobileNetV2 with ImageNet weights on a full-resolution film from the shared set."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def mobilenet_pair(imagenet_weights):
    """The project's flat MobileNetV2 (cxrlib.models.architectures) and the same network built nested
    (backbone as a sub-model, as many Keras users write it), with identical weights."""
    from cxrlib.core.tfsetup import tf

    tf()
    import keras

    from cxrlib.core.config import ModelConfig
    from cxrlib.models.architectures import build_model

    flat = build_model(ModelConfig(), 3, 224)
    inp = keras.Input((224, 224, 3))
    backbone = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False,
                                              weights=str(imagenet_weights))
    x = backbone(keras.layers.Rescaling(2.0, offset=-1.0)(inp))
    x = keras.layers.GlobalAveragePooling2D()(x)
    for units, rate in zip((512, 128, 64, 32), (0.7, 0.5, 0.3, 0.3)):
        x = keras.layers.Dropout(rate)(keras.layers.Dense(units, activation="relu")(x))
    nested = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
    nested.set_weights(flat.get_weights())
    return flat, nested


@pytest.fixture(scope="module")
def big_film(cxr3_fullres):
    from cxrlib.core.config import PreprocessConfig
    from cxrlib.data.imageio import read_film
    from cxrlib.preprocessing.steps import preprocess_film, to_model_input

    manifest = pd.read_csv(cxr3_fullres / "manifest.csv")
    row = manifest[np.minimum(manifest.original_width, manifest.original_height) >= 2000].iloc[0]
    film = read_film(cxr3_fullres / row.file).pixels
    return film, to_model_input(preprocess_film(film, PreprocessConfig())[None])


def test_published_layer_is_the_default_and_nested_equals_flat(mobilenet_pair, big_film):
    from cxrlib.explain import conv_layer_names, get_cam

    flat, nested = mobilenet_pair
    _, x = big_film
    assert {"block_16_depthwise", "out_relu"} <= set(conv_layer_names(nested))
    for layer in (None, "out_relu"):
        cam_flat, cam_nested = get_cam("gradcam", flat, layer), get_cam("gradcam", nested, layer)
        assert cam_flat.layer == cam_nested.layer == (layer or "block_16_depthwise")
        heat_flat, probs_flat = cam_flat(x)
        heat_nested, probs_nested = cam_nested(x)
        np.testing.assert_allclose(probs_nested, probs_flat, atol=1e-5)
        np.testing.assert_allclose(heat_nested, heat_flat, atol=1e-3)
        assert heat_flat.shape == (1, 224, 224) and heat_flat.max() == pytest.approx(1.0)


def test_compiled_gradcam_equals_an_eager_keras_io_implementation(mobilenet_pair, big_film):
    import keras
    import tensorflow as tf

    from cxrlib.explain import get_cam
    from cxrlib.explain.base import normalise, resize_maps

    flat, _ = mobilenet_pair
    _, x = big_film
    heat, probs = get_cam("gradcam", flat)(x)
    head = flat.get_layer("predictions")
    grad_model = keras.Model(flat.input, [flat.get_layer("block_16_depthwise").output, head.input])
    with tf.GradientTape() as tape:
        acts, features = grad_model(x, training=False)
        score = (tf.matmul(features, head.kernel) + head.bias)[:, int(probs[0].argmax())]
    grads = tape.gradient(score, acts)
    cam = np.maximum(np.einsum("nhwk,k->nhw", acts.numpy(), grads.numpy().mean(axis=(0, 1, 2))), 0)
    np.testing.assert_allclose(heat, normalise(resize_maps(cam.astype(np.float32), (224, 224))),
                               atol=1e-4)


def test_overlay_at_native_resolution_and_faithfulness_run(mobilenet_pair, big_film):
    from cxrlib.explain import deletion_insertion, get_cam, overlay, randomisation_check

    flat, _ = mobilenet_pair
    film, x = big_film
    heat, _ = get_cam("gradcam++", flat)(x)
    assert overlay(film, heat[0]).shape[:2] == film.shape[:2]
    assert overlay(film, heat[0], contour=True).shape[:2] == film.shape[:2]
    scores = deletion_insertion(flat, x, heat[0], steps=10)
    assert np.isfinite([scores["deletion_auc"], scores["faithfulness"]]).all()
    check = randomisation_check(flat, x, "gradcam")
    assert check["randomised"][0] == "block_16_depthwise_BN" and check["randomised"][-1] == "predictions"
    assert check["differs"], check["rank_correlation"]
