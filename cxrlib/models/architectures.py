"""The model families, their ImageNet weights, the class-weighted loss, and saved-model loading.

Every model built here is a *flat* functional Keras model: its layers are the backbone's own
layers (``Conv1`` ... ``block_16_depthwise`` ... ``out_relu`` for MobileNetV2), then
``global_pool`` and the head. A CAM can therefore ask ``model.get_layer("block_16_depthwise")``
directly; there is no nested sub-model. Each model takes ``float32 (N, S, S, 3)`` in [0, 1] and
outputs ``(N, n_classes)`` probabilities in task class order (see docs/INTERFACES.md):

* ``mobilenetv2``: ``Rescaling`` to [-1, 1] (what ``mobilenet_v2.preprocess_input`` does to
  0..255 pixels, done here to 0..1 inputs) -> ``keras.applications.MobileNetV2(include_top=False)``
  -> ``global_pool`` (GAP) -> head ``Dense(units, relu) -> Dropout`` per ``ModelConfig.head_units``
  / ``head_dropout`` -> ``predictions`` (softmax, float32 even under mixed precision).
* ``tiny``: [-1, 1] scaling, three small conv layers (about 24 K parameters, fixed-seed
  initialisation so the frozen backbone is the same in every process) and a fixed per-channel
  standardisation (:func:`_tiny_reference_stats`), then the same ``global_pool`` + head, so the
  head-mode mechanics (cached features, :func:`backbone_and_head`) are testable without weights.
* ``small_cnn``: conv + max-pool blocks per ``ModelConfig.cnn_filters``, flatten, dropout 0.2,
  dense ``cnn_dense`` (relu), then softmax for 3 classes; for the binary task one sigmoid unit
  ``s = P(COVID-19)`` followed by :class:`BinaryProbabilities` -> ``[s, 1 - s]``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cxrlib.core import paths
from cxrlib.core.config import ModelConfig

WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
               + paths.WEIGHTS_FILE)
FEATURE_LAYER = "global_pool"
OUTPUT_LAYER = "predictions"
MOBILENET_CAM_LAYER = "block_16_depthwise"
_TINY_SEED = 1234  # the tiny backbone is a fixed random projection, the same in every process


class WeightsUnavailable(RuntimeError):
    """The ImageNet weights are neither on disk nor downloadable."""


class ModelFileError(ValueError):
    """A file that is not a loadable saved model."""


def _keras():
    from cxrlib.core.tfsetup import tf

    tf()  # environment first, then Keras
    import keras  # noqa: PLC0415

    return keras


def _download_weights(cache_dir: Path) -> Path:
    """Let Keras fetch the weights file into ``cache_dir/models`` (its usual download)."""
    keras = _keras()
    return Path(keras.utils.get_file(paths.WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models",
                                     cache_dir=str(cache_dir)))


def resolve_imagenet_weights() -> Path:
    """Find the MobileNetV2 ImageNet (no-top, alpha 1.0) weights file, downloading if needed.

    Looks in ``$KERAS_HOME/models/`` (default ``~/.keras/models``) first, then lets Keras download
    it there as it always does. The 224-px file is used for every input size: the convolution
    weights do not depend on the input size.

    Returns:
        Path of the ``.h5`` weights file.

    Raises:
        WeightsUnavailable: neither on disk nor downloadable. The message tells the user to pass
            ``weights="random"`` explicitly; random weights are never chosen silently.
    """
    local = paths.keras_home() / "models" / paths.WEIGHTS_FILE
    if local.is_file():
        return local
    try:
        return _download_weights(paths.keras_home())
    except Exception as exc:  # URL errors, SSL errors, hash mismatch, read-only folder...
        raise WeightsUnavailable(
            f"MobileNetV2 ImageNet weights are not available: {local} does not exist and the "
            f"download from {WEIGHTS_URL} failed ({type(exc).__name__}: {exc}). Put the file "
            f"{paths.WEIGHTS_FILE} in {local.parent}, or set KERAS_HOME to a folder whose "
            f"models/ holds it, or choose weights='random' explicitly (ModelConfig(weights="
            f"'random'), CLI --weights random) to train from random weights.") from exc


def n_classes_of(classes: int | Sequence[str]) -> int:
    """The number of classes, given their names or their number."""
    return classes if isinstance(classes, int) else len(classes)


def build_model(model_cfg: ModelConfig, classes: int | Sequence[str], input_size: int = 224):
    """Build an uncompiled model of ``model_cfg.family``.

    Args:
        model_cfg: family, weights and architecture.
        classes: the task's class names (or their number); the output has one column each.
        input_size: side ``S`` of the square ``(S, S, 3)`` input in [0, 1].

    Returns:
        A flat functional ``keras.Model`` outputting ``(N, n_classes)`` probabilities.

    Raises:
        WeightsUnavailable: ``weights="imagenet"`` and the file cannot be found or downloaded.
        ValueError: fewer than two classes.
    """
    keras = _keras()
    n = n_classes_of(classes)
    if n < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {n}")
    inputs = keras.Input((input_size, input_size, 3), name="film")
    if model_cfg.family == "small_cnn":
        return _small_cnn(keras, model_cfg, inputs, n)
    if model_cfg.family == "mobilenetv2":
        scaled = keras.layers.Rescaling(2.0, offset=-1.0, name="mobilenetv2_scaling")(inputs)
        weights = str(resolve_imagenet_weights()) if model_cfg.weights == "imagenet" else None
        backbone = keras.applications.MobileNetV2(
            input_shape=(input_size, input_size, 3), include_top=False, weights=weights,
            input_tensor=scaled)
        features = backbone.output
    else:  # tiny
        x = keras.layers.Rescaling(2.0, offset=-1.0, name="tiny_scaling")(inputs)
        for i, (filters, stride) in enumerate(((16, 1), (32, 2), (64, 2))):
            x = keras.layers.Conv2D(
                filters, 3, strides=stride, padding="same", activation="relu",
                kernel_initializer=keras.initializers.HeNormal(seed=_TINY_SEED + i),
                name=f"tiny_conv_{i}")(x)
        mean, variance = _tiny_reference_stats(keras.Model(inputs, x), input_size)
        features = keras.layers.Normalization(mean=mean, variance=variance,
                                              name="tiny_standardise")(x)
    x = keras.layers.GlobalAveragePooling2D(name=FEATURE_LAYER)(features)
    for i, (units, rate) in enumerate(zip(model_cfg.head_units, model_cfg.head_dropout)):
        x = keras.layers.Dense(units, activation="relu", name=f"head_dense_{i}")(x)
        x = keras.layers.Dropout(rate, name=f"head_dropout_{i}")(x)
    outputs = keras.layers.Dense(n, activation="softmax", dtype="float32", name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name=model_cfg.family)


def _tiny_reference_stats(conv_model, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance of the tiny backbone's pooled output on fixed synthetic films.

    A frozen random backbone's pooled features share a large common offset and vary little
    between films, which a freshly initialised head cannot learn from in a few steps. Since
    global average pooling is linear, standardising the last conv map per channel with these
    fixed statistics standardises the pooled features; they depend only on the input size.
    """
    from cxrlib.core.classes import CLASSES  # noqa: PLC0415
    from cxrlib.data.synthetic import synthetic_film  # noqa: PLC0415

    rng = np.random.default_rng(_TINY_SEED)
    films = np.stack([synthetic_film(c, size, rng, vary_anatomy=False) for c in CLASSES for _ in range(8)])
    x = np.repeat(films[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    pooled = np.asarray(conv_model.predict_on_batch(x)).mean(axis=(1, 2))
    return pooled.mean(axis=0), pooled.var(axis=0) + 1e-6


def _small_cnn(keras, model_cfg: ModelConfig, inputs, n: int):
    x = inputs
    for i, filters in enumerate(model_cfg.cnn_filters):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv_{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    x = keras.layers.Dense(model_cfg.cnn_dense, activation="relu", name="dense")(x)
    if n == 2:
        s = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="p_positive")(x)
        outputs = _binary_layer_class()(name=OUTPUT_LAYER)(s)
    else:
        outputs = keras.layers.Dense(n, activation="softmax", dtype="float32", name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def backbone_and_head(model):
    """Split a model with a ``global_pool`` layer into (feature model, head model).

    Both share their layers with ``model``: training the head model trains ``model``'s head, so
    after head-mode training ``model`` itself is the full image -> probabilities model to save.

    Args:
        model: a ``mobilenetv2`` or ``tiny`` model from :func:`build_model`.

    Returns:
        ``(feature_model, head_model)``: images ``(N, S, S, 3)`` -> pooled features ``(N, D)``;
        features ``(N, D)`` -> probabilities ``(N, C)``.

    Raises:
        ValueError: the model has no ``global_pool`` layer (e.g. the small CNN).
    """
    keras = _keras()
    names = [layer.name for layer in model.layers]
    if FEATURE_LAYER not in names:
        raise ValueError(f"model {model.name!r} has no {FEATURE_LAYER!r} layer: it cannot be "
                         "split into a frozen backbone and a head (train all layers instead)")
    pool = model.get_layer(FEATURE_LAYER)
    feature_model = keras.Model(model.input, pool.output, name="backbone")
    feature_input = keras.Input(tuple(pool.output.shape[1:]), name="features")
    x = feature_input
    for layer in model.layers[names.index(FEATURE_LAYER) + 1:]:  # the head is a plain chain
        x = layer(x)
    return feature_model, keras.Model(feature_input, x, name="head")


split_backbone_head = backbone_and_head


def default_cam_layer(model) -> str:
    """The layer a CAM explains by default.

    Returns:
        ``"block_16_depthwise"`` (as published) when the model has it, else the name of the last
        layer with a 4-D output that is a convolution (including depthwise convolutions).

    Raises:
        ValueError: the model has no convolution layer.
    """
    names = {layer.name for layer in model.layers}
    if MOBILENET_CAM_LAYER in names:
        return MOBILENET_CAM_LAYER
    for layer in reversed(model.layers):
        if "Conv" in type(layer).__name__ and len(layer.output.shape) == 4:
            return layer.name
    raise ValueError(f"model {model.name!r} has no convolution layer to explain")


def class_weights(labels: Sequence[str] | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Per-class loss weights from the frequency of the *other* classes.

    ``w_c = (1 - P(c)) / (K - 1)``, ``P(c)`` the share of ``labels`` in class ``c``, ``K`` the
    number of classes. For the binary task this is exactly the published rule
    ``w_pos = P(negative)``, ``w_neg = P(positive)``; for K classes it is the mean frequency of
    the other classes, so a rare class weighs more (weights sum to 1; balanced data gives every
    class ``1 / K``, which only rescales the loss).

    Args:
        labels: class names of the training images.
        classes: the task's classes, in output order.

    Returns:
        ``float32 (K,)`` weights in ``classes`` order.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("class_weights needs at least one label")
    share = np.array([(labels == c).mean() for c in classes], dtype=np.float64)
    return ((1.0 - share) / (len(classes) - 1)).astype(np.float32)


def weighted_loss(weights: Sequence[float]):
    """The class-weighted cross-entropy loss object for :func:`class_weights` weights."""
    return _weighted_loss_class()(weights)


weighted_crossentropy = weighted_loss


def load_model(path: str | Path):
    """Load a model saved by training (``best.keras``), without its optimizer or loss.

    Raises:
        ModelFileError: the file is missing or not a loadable ``.keras`` model.
    """
    import zipfile  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a Keras model file (.keras zip archive)")
    keras = _keras()
    custom = {"BinaryProbabilities": _binary_layer_class(),
              "WeightedCrossentropy": _weighted_loss_class()}
    try:
        return keras.saving.load_model(path, compile=False, custom_objects=custom)
    except Exception as exc:
        raise ModelFileError(f"could not load model {path}: {type(exc).__name__}: {exc}") from exc


_CUSTOM: dict[str, type] = {}


def _binary_layer_class():
    """Defined lazily so that importing this module does not import Keras."""
    if "binary" not in _CUSTOM:
        keras = _keras()

        @keras.saving.register_keras_serializable(package="cxrlib")
        class BinaryProbabilities(keras.layers.Layer):
            """``s (N, 1)`` -> ``[s, 1 - s] (N, 2)``: P(positive), P(negative)."""

            def __init__(self, **kwargs):
                kwargs.setdefault("dtype", "float32")
                super().__init__(**kwargs)

            def call(self, s):
                return keras.ops.concatenate([s, 1.0 - s], axis=-1)

            def compute_output_shape(self, input_shape):
                return (*input_shape[:-1], 2)

        _CUSTOM["binary"] = BinaryProbabilities
    return _CUSTOM["binary"]


def _weighted_loss_class():
    if "loss" not in _CUSTOM:
        keras = _keras()

        @keras.saving.register_keras_serializable(package="cxrlib")
        class WeightedCrossentropy(keras.losses.Loss):
            """``-sum_c w_c y_c log p_c`` per sample, averaged over the batch.

            With one-hot ``y`` and a binary model's ``[s, 1 - s]`` output this is the weighted
            binary cross-entropy ``-(w_pos y log s + w_neg (1 - y) log(1 - s))``.
            """

            def __init__(self, weights, name="weighted_crossentropy", **kwargs):
                super().__init__(name=name, **kwargs)
                self.weights = [float(w) for w in weights]

            def call(self, y_true, y_pred):
                ops = keras.ops
                eps = keras.config.epsilon()
                p = ops.clip(ops.cast(y_pred, "float32"), eps, 1.0 - eps)
                w = ops.convert_to_tensor(self.weights, dtype="float32")
                return -ops.sum(ops.cast(y_true, "float32") * w * ops.log(p), axis=-1)

            def get_config(self):
                return {**super().get_config(), "weights": self.weights}

        _CUSTOM["loss"] = WeightedCrossentropy
    return _CUSTOM["loss"]
