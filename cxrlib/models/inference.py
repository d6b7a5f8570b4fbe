"""The one compiled forward pass: a model over batches of films, in inference mode.

Training (test-split predictions, backbone features), prediction, explanations and the audit
all call :func:`predict`. It runs ``model(x, training=False)`` inside one ``tf.function`` per
model and input kind, traced once: measured 3-4x faster than ``model.predict`` per call and
~8x faster than an eager call on these CPUs (../shared/NOTES.md). Every batch is padded to the
same size, so the numbers a film gets do not depend on how many films share its batch.

Inputs are either grey uint8 films ``(N, S, S)`` (scaled to [0, 1] and repeated on 3 channels
inside the graph, as :func:`cxrlib.preprocessing.to_model_input` does, so memory-mapped tensor
caches are read batch by batch) or float32 model inputs ``(N, S, S, 3)``.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

_FUNCTIONS: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def forward(model, *, grey: bool = False):
    """The compiled ``model(x, training=False)`` for any batch size, cached per model.

    Args:
        model: a Keras model taking float32 ``(N, S, S, 3)`` in [0, 1].
        grey: take grey uint8 ``(N, S, S)`` films instead (scaled inside the graph).

    Returns:
        A ``tf.function`` mapping a batch tensor to the model's float32 output.
    """
    from cxrlib.core.tfsetup import tf as _tf  # noqa: PLC0415

    tf = _tf()
    kind = "grey" if grey else "float"
    try:
        cached = _FUNCTIONS.setdefault(model, {})
    except TypeError:  # an object that cannot be weakly referenced: no cache
        cached = {}
    if kind not in cached:
        # The function reaches the model through a weak reference: a cached value that held the
        # model itself would keep its WeakKeyDictionary key alive, so no model would be freed.
        ref = weakref.ref(model)
        size = tuple(model.input_shape[1:])
        if grey:
            def run(x):
                x = tf.repeat(tf.cast(x, tf.float32)[..., None] / 255.0, 3, axis=-1)
                return tf.cast(ref()(x, training=False), tf.float32)

            spec = tf.TensorSpec((None, *size[:2]), tf.uint8)
        else:
            def run(x):
                return tf.cast(ref()(x, training=False), tf.float32)

            spec = tf.TensorSpec((None, *size), tf.float32)
        cached[kind] = tf.function(run, input_signature=[spec])
    return cached[kind]


def predict(model, images, *, batch_size: int = 32,
            progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The model's output for every image, batch by batch.

    Args:
        model: a Keras model (probabilities, or features for a backbone).
        images: grey uint8 ``(N, S, S)`` films or float32 ``(N, S, S, 3)`` inputs in [0, 1];
            a single image without the batch axis is a batch of one. Memory-mapped arrays are
            read one batch at a time.
        batch_size: images per call; the last batch is zero-padded to this size.
        progress: ``progress(done, total)`` after each batch.

    Returns:
        float32 ``(N, ...)``: the model's output per image.

    Raises:
        ValueError: for a batch size under 1, or images whose shape the model cannot take.
    """
    from cxrlib.core.tfsetup import tf as _tf  # noqa: PLC0415

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if len(images) == 0:
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    grey = np.asarray(images[:0]).dtype == np.uint8
    expected = tuple(model.input_shape[1:3] if grey else model.input_shape[1:])
    shape = tuple(np.shape(images)[1:])
    if shape and len(shape) == len(expected) - 1:  # one image without its batch axis
        images, shape = np.asarray(images)[None], tuple(np.shape(images))
    if shape != expected:
        raise ValueError(f"the model takes {'grey films' if grey else 'images'} of shape "
                         f"{expected}, got {shape}")
    fn = forward(model, grey=grey)
    out_shape = tuple(model.output_shape[1:])
    n = len(images)
    out = np.empty((n, *out_shape), np.float32)
    tf = _tf()
    for start in range(0, n, batch_size):
        batch = np.asarray(images[start:start + batch_size])
        m = len(batch)
        if m < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - m, *batch.shape[1:]), batch.dtype)])
        out[start:start + m] = fn(tf.constant(batch)).numpy()[:m]
        if progress is not None:
            progress(start + m, n)
    return out
