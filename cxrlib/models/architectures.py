"""The model families: MobileNetV2 transfer learning, the small CNN, and a tiny test backbone.

Every model built here is a *flat* functional Keras model of standard layers only (so a saved
``best.keras`` loads in plain Keras): its layers are the backbone's own layers (``Conv1`` ...
``block_16_depthwise`` ... ``out_relu`` for MobileNetV2), then ``global_pool`` and the head. A
CAM can therefore ask ``model.get_layer("block_16_depthwise")`` directly; there is no nested
sub-model. Each model takes ``float32 (N, S, S, 3)`` in [0, 1] and outputs ``(N, n_classes)``
probabilities in task class order (see docs/INTERFACES.md):

* ``mobilenetv2``: ``Rescaling`` to [-1, 1] (what ``mobilenet_v2.preprocess_input`` does to
  0..255 pixels, done here to 0..1 inputs) -> ``keras.applications.MobileNetV2(include_top=False)``
  -> ``global_pool`` (GAP) -> head ``Dense(units, relu) -> Dropout`` per ``ModelConfig.head_units``
  / ``head_dropout`` -> ``predictions`` (softmax, float32 even under mixed precision).
* ``tiny``: [-1, 1] scaling, three small conv layers (about 24 K parameters, fixed-seed
  initialisation so the frozen backbone is the same in every process) and a fixed per-channel
  standardisation (:func:`_tiny_reference_stats`), then the same ``global_pool`` + head, so the
  head-mode mechanics (cached features, :func:`backbone_and_head`) are testable without weights.
* ``small_cnn``: conv + max-pool blocks per ``ModelConfig.cnn_filters``, flatten, dropout 0.2,
  dense ``cnn_dense`` (relu), then softmax for 3 classes (``cnn_arch="bn_gap"``: each conv
  followed by BatchNormalization and a ``relu_<i>`` layer, and global average pooling (``gap``,
  not ``global_pool``: the small CNN has no head mode) instead of the flatten); for the binary task one sigmoid unit
  ``s = P(COVID-19)`` and ``predictions = Concatenate([s, Rescaling(-1, offset=1)(s)])``, i.e.
  ``[s, 1 - s]``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrlib.core.config import ModelConfig
from cxrlib.core.tfsetup import keras as _keras
from cxrlib.models.weights import resolve_imagenet_weights

FEATURE_LAYER = "global_pool"
OUTPUT_LAYER = "predictions"
_TINY_SEED = 1234  # the tiny backbone is a fixed random projection, the same in every process


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
    bn_gap = model_cfg.cnn_arch == "bn_gap"
    for i, filters in enumerate(model_cfg.cnn_filters):
        if bn_gap:
            # momentum 0.9: with ~50 steps an epoch the Keras default 0.99 lags the weights so far
            # that the inference-mode statistics called every validation film one class
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv_{i}")(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn_{i}")(x)
            x = keras.layers.ReLU(name=f"relu_{i}")(x)
        else:
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv_{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    if bn_gap:
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)  # not FEATURE_LAYER: no head mode
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    x = keras.layers.Dense(model_cfg.cnn_dense, activation="relu", name="dense")(x)
    if n == 2:
        s = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="p_positive")(x)
        rest = keras.layers.Rescaling(-1.0, offset=1.0, dtype="float32", name="p_negative")(s)
        outputs = keras.layers.Concatenate(dtype="float32", name=OUTPUT_LAYER)([s, rest])
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

