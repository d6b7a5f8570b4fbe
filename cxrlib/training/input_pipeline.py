"""The fine-tune input pipeline: grey uint8 films from the tensor cache into model batches."""
from __future__ import annotations

import numpy as np


def input_pipeline(images: np.ndarray, idx: np.ndarray, onehot: np.ndarray, tcfg, *,
                   training: bool, class_weight: np.ndarray | None = None):
    """``tf.data`` pipeline of grey uint8 films -> (float32 (B, S, S, 3) in [0, 1], one-hot).

    Training: shuffled each epoch (seeded), batched, then random rotation (``tcfg.rotation`` of a
    full turn, reflected borders) and horizontal flip when ``tcfg.augment``, on the whole batch;
    always prefetched. With ``class_weight`` (one weight per class) every film also carries the
    weight of its class as a sample weight, for the class-weighted loss (training and validation
    alike, so the validation loss that picks the best epoch is weighted the same way).
    """
    from cxrlib.core.tfsetup import tf as _tf

    tf = _tf()
    import keras  # noqa: PLC0415

    parts = (np.asarray(images[idx]), onehot[idx])
    if class_weight is not None:
        parts += (np.asarray(class_weight, np.float32)[onehot[idx].argmax(1)],)
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if training:
        ds = ds.shuffle(len(idx), seed=tcfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(tcfg.batch_size)
    layers = []
    if training and tcfg.augment:
        if tcfg.rotation > 0:
            layers.append(keras.layers.RandomRotation(tcfg.rotation, fill_mode="reflect",
                                                      seed=tcfg.seed))
        if tcfg.hflip:
            layers.append(keras.layers.RandomFlip("horizontal", seed=tcfg.seed + 1))

    @tf.autograph.experimental.do_not_convert  # plain tensor code: nothing to convert
    def to_input(x, *rest):
        x = tf.cast(x, tf.float32)[..., None] / 255.0
        for layer in layers:
            x = layer(x, training=True)
        return (tf.repeat(x, 3, axis=-1), *rest)

    return ds.map(to_input, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

