"""The fine-tune input pipeline: grey uint8 films from the tensor cache into model batches."""
from __future__ import annotations

import numpy as np


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the ``n`` training films in ``epoch``: a permutation drawn from
    ``np.random.default_rng([seed, epoch])`` alone, so every process (a worker of a cluster, a
    resumed run) sees the same order for the same epoch."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def input_pipeline(images: np.ndarray, idx: np.ndarray, onehot: np.ndarray, tcfg, *,
                   training: bool, class_weight: np.ndarray | None = None,
                   epochs: range | None = None, positions: bool = False):
    """``tf.data`` pipeline of grey uint8 films -> (float32 (B, S, S, 3) in [0, 1], one-hot).

    Training: for every epoch of ``epochs`` (default: one, epoch 0) the films in the order
    :func:`epoch_order`, cut into batches of ``tcfg.batch_size`` (the last one of an epoch
    smaller; batches never span two epochs), so the dataset holds ``len(epochs)`` epochs one
    after the other (iterate it once, ``steps_per_epoch`` batches an epoch). Then random rotation
    (``tcfg.rotation`` of a full turn, reflected borders) and horizontal flip when
    ``tcfg.augment``, on the whole batch; always prefetched. With ``class_weight`` (one weight per
    class) every film also carries the weight of its class as a sample weight, for the
    class-weighted loss (training and validation alike, so the validation loss that picks the
    best epoch is weighted the same way). With ``positions`` (training only) a batch is
    ``(x, y, w, rows)``: ``w`` ones without ``class_weight``, ``rows`` each film's position in
    ``idx`` (what an extra loss term of :func:`cxrlib.training.replicated_fit.fit_replicated`
    gathers its targets by).
    """
    from cxrlib.core.tfsetup import tf as _tf

    tf = _tf()
    import keras  # noqa: PLC0415

    parts = (np.asarray(images[idx]), onehot[idx])
    if class_weight is not None:
        parts += (np.asarray(class_weight, np.float32)[onehot[idx].argmax(1)],)
    positions = positions and training
    if positions and class_weight is None:
        parts += (np.ones(len(idx), np.float32),)
    bs = int(tcfg.batch_size)
    if training:
        epochs = range(1) if epochs is None else epochs
        table = tuple(tf.constant(p) for p in parts)
        orders = np.stack([epoch_order(len(idx), tcfg.seed, e) for e in epochs]).astype(np.int64)
        batches = len(epochs) * -(-len(idx) // bs)  # flat_map hides the count: state it
        ds = (tf.data.Dataset.from_tensor_slices(orders)
              .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(bs))
              .apply(tf.data.experimental.assert_cardinality(batches))
              .map(lambda rows: tuple(tf.gather(t, rows) for t in table)
                   + ((rows,) if positions else ())))
    else:
        ds = tf.data.Dataset.from_tensor_slices(parts).batch(bs)
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

    # Several workers: tf.data auto-sharding by element (batches, after the distribution
    # rebatches each global batch into the replicas' shares); in-memory arrays have no files to
    # shard by. Every worker shuffles and augments identically (same seeds), so the shares
    # together are exactly the single-process global batch. No effect on one device.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.map(to_input, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(options)

