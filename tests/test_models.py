"""Model families, class weights, the weighted loss, saving/loading and the weights lookup."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cxrlib import models
from cxrlib.core import paths
from cxrlib.models import weights as weights_module
from cxrlib.core.classes import CLASSES, TASK_CLASSES
from cxrlib.core.config import ModelConfig

SMALL_HEAD = dict(head_units=(16, 8), head_dropout=(0.5, 0.3))


def _inputs(n=4, size=32, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)


@pytest.mark.parametrize("family, task, arch", [
    ("tiny", "3class", "published"), ("tiny", "binary", "published"),
    ("small_cnn", "3class", "published"), ("small_cnn", "binary", "published"),
    ("small_cnn", "3class", "bn_gap"), ("small_cnn", "binary", "bn_gap")])
def test_models_output_class_probabilities_from_their_last_layer(family, task, arch):
    """Each column is the probability of one class of the task, in task order, computed here in
    NumPy from the last hidden features and the output weights: a softmax of the logits, or for
    the binary CNN ``[sigmoid(z), 1 - sigmoid(z)]`` with ``z`` the COVID-19 score."""
    import keras

    classes = TASK_CLASSES[task]
    cfg = ModelConfig(family=family, weights="random", cnn_filters=(4, 8), cnn_dense=8,
                      cnn_arch=arch, **SMALL_HEAD)
    model = models.build_model(cfg, classes, 32)
    x = _inputs()
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (4, len(classes)) and probs.dtype == np.float32
    if family == "small_cnn" and task == "binary":
        scorer = model.get_layer("p_positive")
        hidden = np.asarray(keras.Model(model.input, scorer.input)(x), np.float64)
        kernel, bias = scorer.get_weights()
        s = 1.0 / (1.0 + np.exp(-(hidden @ kernel + bias)))
        expected = np.hstack([s, 1.0 - s])
    else:
        scorer = model.get_layer("predictions")
        hidden = np.asarray(keras.Model(model.input, scorer.input)(x), np.float64)
        kernel, bias = scorer.get_weights()
        logits = hidden @ kernel + bias
        expected = np.exp(logits - logits.max(axis=1, keepdims=True))
        expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # the model has dropout, and it is off at inference: each Dropout layer passes its own
    # input through unchanged at inference and zeroes some units in training. (Comparing two
    # whole-model calls instead was flaky under load: the tiny backbone's standardisation
    # amplifies the CPU's run-to-run float noise; BatchNorm moves in a training call.)
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert drops and all(layer.rate > 0 for layer in drops)
    for layer in drops:
        h = np.asarray(keras.Model(model.input, layer.input)(x))
        np.testing.assert_array_equal(np.asarray(layer(h, training=False)), h)
        ones = np.ones((64, 64), np.float32)  # enough units that some are always dropped
        assert (np.asarray(layer(ones, training=True)) == 0).any()
    if family == "small_cnn":  # no standardisation to amplify float noise: the whole model too
        np.testing.assert_allclose(np.asarray(model(x, training=False)), probs, atol=1e-6)


def test_binary_small_cnn_outputs_sigmoid_and_complement():
    import keras

    cfg = ModelConfig(family="small_cnn", cnn_filters=(4,), cnn_dense=8)
    model = models.build_model(cfg, TASK_CLASSES["binary"], 32)
    x = _inputs(3)
    s = np.asarray(keras.Model(model.input, model.get_layer("p_positive").output)(x))
    probs = np.asarray(model(x))
    np.testing.assert_allclose(probs[:, :1], s, atol=1e-6)
    np.testing.assert_allclose(probs[:, 1:], 1.0 - s, atol=1e-6)


def test_bn_gap_small_cnn_has_the_counted_weights_and_a_relu_cam_layer():
    """The bn_gap blocks: conv (no bias), BatchNorm (momentum 0.9), ReLU, max-pool; global
    average pooling, not a flatten. Weights counted by hand for filters (32, 64, 128, 128),
    dense 64, binary: convs 3*3*(3*32 + 32*64 + 64*128 + 128*128), BatchNorm 4 per channel,
    dense 128*64 + 64, the sigmoid unit 64 + 1 (the published blocks: 765 249)."""
    from cxrlib.explain import ANY, NON_NEGATIVE, default_layer

    build = lambda arch: models.build_model(ModelConfig(family="small_cnn", cnn_arch=arch),  # noqa: E731
                                            TASK_CLASSES["binary"], 128)
    model = build("bn_gap")
    convs = 9 * (3 * 32 + 32 * 64 + 64 * 128 + 128 * 128)
    assert model.count_params() == convs + 4 * (32 + 64 + 128 + 128) + 128 * 64 + 64 + 65 == 250_209
    assert build("published").count_params() == 765_249
    names = [layer.name for layer in model.layers]
    assert "flatten" not in names and "gap" in names and models.FEATURE_LAYER not in names
    assert names[1:5] == ["conv_0", "bn_0", "relu_0", "pool_0"]
    assert {model.get_layer(f"bn_{i}").momentum for i in range(4)} == {0.9}
    assert default_layer(model, ANY) == default_layer(model, NON_NEGATIVE) == "relu_3"


def test_mobilenetv2_random_is_flat_with_cam_layers_and_scaling():
    cfg = ModelConfig(family="mobilenetv2", weights="random", **SMALL_HEAD)
    model = models.build_model(cfg, CLASSES, 96)
    names = [layer.name for layer in model.layers]
    assert "block_16_depthwise" in names and "out_relu" in names
    from cxrlib.explain import default_layer

    assert default_layer(model) == "block_16_depthwise"
    # [0, 1] inputs become [-1, 1] inside the model, as mobilenet_v2.preprocess_input does to 0..255.
    import keras

    x = _inputs(2, 96)
    scaled = np.asarray(keras.Model(model.input, model.get_layer("mobilenetv2_scaling").output)(x))
    np.testing.assert_allclose(scaled, keras.applications.mobilenet_v2.preprocess_input(x * 255.0),
                               atol=1e-5)


def test_backbone_and_head_share_layers_with_the_full_model():
    model = models.build_model(ModelConfig(family="tiny", **SMALL_HEAD), CLASSES, 32)
    feature_model, head = models.backbone_and_head(model)
    x = _inputs(5)
    composed = np.asarray(head(feature_model(x)))
    np.testing.assert_allclose(composed, np.asarray(model(x)), atol=1e-6)
    # Changing the head model's weights changes the full model: they are the same layers.
    head.get_layer("predictions").kernel.assign(np.zeros(head.get_layer("predictions").kernel.shape))
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(head(feature_model(x))), atol=1e-6)
    with pytest.raises(ValueError, match="global_pool"):
        models.backbone_and_head(models.build_model(
            ModelConfig(family="small_cnn", cnn_filters=(4,), cnn_dense=8), CLASSES, 32))


def test_tiny_backbone_is_the_same_in_every_build():
    a = models.build_model(ModelConfig(family="tiny", **SMALL_HEAD), CLASSES, 32)
    b = models.build_model(ModelConfig(family="tiny", **SMALL_HEAD), CLASSES, 32)
    np.testing.assert_array_equal(a.get_layer("tiny_conv_1").kernel.numpy(),
                                  b.get_layer("tiny_conv_1").kernel.numpy())


def test_class_weights_binary_is_frequency_of_the_other_class():
    labels = ["COVID-19"] * 30 + ["Normal"] * 70
    w = models.class_weights(labels, ("COVID-19", "Normal"))
    np.testing.assert_allclose(w, [0.7, 0.3], atol=1e-7)  # w_pos = P(neg), w_neg = P(pos)


def test_class_weights_three_classes():
    labels = ["COVID-19"] * 10 + ["Normal"] * 30 + ["Viral Pneumonia"] * 60
    w = models.class_weights(labels, CLASSES)
    np.testing.assert_allclose(w, [(1 - 0.1) / 2, (1 - 0.3) / 2, (1 - 0.6) / 2], atol=1e-7)
    assert math.isclose(float(w.sum()), 1.0, rel_tol=1e-6)


def test_class_weighted_loss_equals_the_published_weighted_bce():
    w = models.class_weights(["COVID-19"] * 3 + ["Normal"] * 7, ("COVID-19", "Normal"))  # 0.7, 0.3
    y = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    s = np.array([0.9, 0.2, 0.4])
    p = np.stack([s, 1 - s], axis=1).astype(np.float32)
    # The published weighted BCE on s = P(COVID-19): -(w_pos y log s + w_neg (1 - y) log(1 - s)),
    # batch mean; the engine gets it from Keras's standard loss with class weights as sample weights.
    # The loss is the one every classifier is compiled with; the per-film weights are what the
    # input pipeline attaches (test_input_pipeline_carries_the_class_weight_of_every_film).
    from cxrlib.training.finetune import compile_classifier

    assert w == pytest.approx([0.7, 0.3])
    model = models.build_model(ModelConfig(family="small_cnn", cnn_filters=(4,), cnn_dense=8),
                               TASK_CLASSES["binary"], 32)
    compile_classifier(model, 1e-3)
    hand = -np.mean([0.7 * math.log(0.9), 0.3 * math.log(1 - 0.2), 0.7 * math.log(0.4)])
    loss = model.loss(y, p, sample_weight=w[y.argmax(1)])
    assert float(loss) == pytest.approx(hand, rel=1e-5)


def test_input_pipeline_carries_the_class_weight_of_every_film():
    from cxrlib.core.config import TrainConfig
    from cxrlib.training.input_pipeline import input_pipeline

    images = np.zeros((5, 8, 8), np.uint8)
    onehot = np.eye(2, dtype=np.float32)[[0, 1, 1, 0, 1]]
    batches = list(input_pipeline(images, np.arange(5), onehot, TrainConfig(batch_size=5),
                                  training=False, class_weight=np.array([0.6, 0.4])))
    (x, y, weight), = batches
    assert x.shape == (5, 8, 8, 3)
    np.testing.assert_allclose(np.asarray(weight), [0.6, 0.4, 0.4, 0.6, 0.4])


def test_a_saved_binary_small_cnn_loads_in_plain_keras_without_cxrlib(tmp_path):
    import subprocess
    import sys

    cfg = ModelConfig(family="small_cnn", cnn_filters=(4,), cnn_dense=8)
    model = models.build_model(cfg, TASK_CLASSES["binary"], 32)
    import keras

    model.compile(loss=keras.losses.CategoricalCrossentropy(), optimizer="adam")
    path = tmp_path / "m.keras"
    model.save(path)
    x = _inputs(3)
    np.save(tmp_path / "x.npy", x)
    script = ("import numpy as np, keras, sys; m = keras.models.load_model(sys.argv[1]); "
              "assert not any(k.startswith('cxrlib') for k in sys.modules); "
              "np.save(sys.argv[2], np.asarray(m(np.load(sys.argv[3]))))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "y.npy"),
                          str(tmp_path / "x.npy")], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = np.asarray(model(x))
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-6)
    again = models.load_model(path)
    np.testing.assert_allclose(np.asarray(again(x)), expected, atol=1e-6)


def test_load_model_rejects_wrong_files(tmp_path):
    with pytest.raises(models.ModelFileError, match="no model file"):
        models.load_model(tmp_path / "missing.keras")
    bogus = tmp_path / "notes.keras"
    bogus.write_text("not a model")
    with pytest.raises(models.ModelFileError, match="not a Keras model"):
        models.load_model(bogus)


def test_weights_unavailable_offline_says_choose_random(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("CXR_SHARED_DIR", str(tmp_path / "no-shared"))

    def no_network(cache_dir, **options):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(weights_module, "_download_weights", no_network)
    with pytest.raises(models.WeightsUnavailable, match="weights='random'"):
        models.resolve_imagenet_weights()
    with pytest.raises(models.WeightsUnavailable):
        models.build_model(ModelConfig(family="mobilenetv2", weights="imagenet"), CLASSES, 96)


def test_resolve_weights_finds_the_shared_copy_without_downloading(tmp_path, monkeypatch):
    """A fresh machine has no Keras cache, but the shared folder beside the checkout holds the
    weights: the app's first MobileNetV2 run must use them, not try the network."""
    (tmp_path / "home" / "models").mkdir(parents=True)
    shared = tmp_path / "shared" / "weights" / paths.WEIGHTS_FILE
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CXR_SHARED_DIR", str(tmp_path / "shared"))
    monkeypatch.setattr(weights_module, "_download_weights", lambda d: pytest.fail("must not download"))
    assert models.resolve_imagenet_weights() == shared


def test_an_unreadable_shared_folder_is_skipped_not_a_crash(tmp_path, monkeypatch):
    """A shared folder the user may not read (PermissionError from is_file on Python 3.11) is
    passed over: the answer is the usual WeightsUnavailable, not a traceback."""
    import pathlib

    (tmp_path / "home" / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CXR_SHARED_DIR", str(tmp_path / "locked"))
    real = pathlib.Path.is_file

    def is_file(self):
        if str(self).startswith(str(tmp_path / "locked")):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    def no_network(cache_dir, **options):
        raise OSError("no network")

    monkeypatch.setattr(pathlib.Path, "is_file", is_file)
    monkeypatch.setattr(weights_module, "_download_weights", no_network)
    with pytest.raises(models.WeightsUnavailable, match="locked"):
        models.resolve_imagenet_weights()


def test_a_weights_file_that_is_not_hdf5_is_passed_over(tmp_path, monkeypatch):
    """A 0-byte or truncated download in the Keras cache used to be taken, and Keras then failed
    deep inside a run naming no file; the good shared copy behind it is used instead."""
    (tmp_path / "home" / "models").mkdir(parents=True)
    (tmp_path / "home" / "models" / paths.WEIGHTS_FILE).write_bytes(b"")
    shared = tmp_path / "shared" / "weights" / paths.WEIGHTS_FILE
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CXR_SHARED_DIR", str(tmp_path / "shared"))
    monkeypatch.setattr(weights_module, "_download_weights", lambda d: pytest.fail("must not download"))
    assert models.resolve_imagenet_weights() == shared


def test_a_broken_cached_file_is_downloaded_again_and_checked(tmp_path, monkeypatch):
    """Keras returns a file already in its cache without downloading: a broken one must be
    fetched again (force_download), and what comes back must be an HDF5 file."""
    (tmp_path / "home" / "models").mkdir(parents=True)
    broken = tmp_path / "home" / "models" / paths.WEIGHTS_FILE
    broken.write_bytes(b"")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CXR_SHARED_DIR", str(tmp_path / "none"))
    asked = []

    def cached(cache_dir, **options):  # what Keras does without force_download: the same file
        asked.append(options)
        return broken

    monkeypatch.setattr(weights_module, "_download_weights", cached)
    with pytest.raises(models.WeightsUnavailable, match="not an HDF5"):
        models.resolve_imagenet_weights()
    assert asked == [{"force_download": True}]


def test_resolve_weights_finds_file_in_keras_home(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / paths.WEIGHTS_FILE
    target.write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(weights_module, "_download_weights", lambda d: pytest.fail("must not download"))
    assert models.resolve_imagenet_weights() == target
