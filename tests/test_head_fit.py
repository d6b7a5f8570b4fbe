"""``fit_head_compiled`` against Keras's own ``model.fit`` on the same head, data and batch order.

Two heads start from the same weights. One is fitted by ``fit_head_compiled``; the other by
``model.fit`` on a generator that yields exactly the batches ``fit_head_compiled`` documents
(every epoch a permutation from ``np.random.default_rng(seed)``, cut into ``batch_size`` rows,
the last batch smaller). Both get the same callbacks (ReduceLROnPlateau and EarlyStopping set
to fire), so the learning-rate schedule read at every step and the stop are compared too.

Dropout: each ``Dropout`` layer draws its masks from its own seeded ``SeedGenerator``, whose
state advances once per training call. Both loops call the head once per batch with
``training=True``, so with equal generator seeds they draw the same masks in the same order;
the test runs with dropout 0 and with dropout, and the second shows that the seeded dropout of
the compiled loop is the one ``fit`` uses.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

FEATURES, CLASSES, N_TRAIN, N_VAL, BATCH, EPOCHS, SEED = 12, 3, 70, 20, 16, 12, 5


def _keras():
    from cxrlib.core.tfsetup import tf

    tf()
    import keras

    return keras


def _data():
    """Features whose class is the argmax of a fixed linear map (learnable, not separable at once)."""
    rng = np.random.default_rng(0)
    proj = rng.normal(size=(FEATURES, CLASSES))
    x = rng.normal(size=(N_TRAIN + N_VAL, FEATURES)).astype(np.float32)
    labels = (x @ proj + 0.5 * rng.normal(size=(len(x), CLASSES))).argmax(axis=1)
    y = np.eye(CLASSES, dtype=np.float32)[labels]
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def _head(dropout: float, weights=None):
    keras = _keras()
    inp = keras.Input((FEATURES,))
    h = keras.layers.Dense(16, activation="relu", name="dense_1")(inp)
    h = keras.layers.Dropout(dropout, seed=11, name="dropout_1")(h)
    out = keras.layers.Dense(CLASSES, activation="softmax", name="predictions")(h)
    head = keras.Model(inp, out)
    if weights is not None:
        head.set_weights(weights)
    # As cxrlib.training.engine compiles a head: Adam, the loss object, categorical accuracy.
    head.compile(optimizer=keras.optimizers.Adam(3e-2), loss=keras.losses.CategoricalCrossentropy(),
                 metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    return head


def _callbacks():
    keras = _keras()
    # min_delta 0.05: a plateau within a few epochs, so the rate drops and training stops early
    return [keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=1, min_delta=0.05),
            keras.callbacks.EarlyStopping("val_loss", patience=2, min_delta=0.05)]


class _Record:
    """Collects what ``on_epoch_end`` receives, and the learning rate at that moment."""

    def __init__(self, head):
        keras = _keras()

        record = self
        self.logs: list[dict] = []

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                record.logs.append({**logs, "lr": float(head.optimizer.learning_rate)})

        self.callback = Callback()


def _batches(x, y):
    """The batches fit_head_compiled documents, epoch after epoch."""
    rng = np.random.default_rng(SEED)
    for _ in range(EPOCHS):
        perm = rng.permutation(len(x))
        for start in range(0, len(x), BATCH):
            rows = perm[start:start + BATCH]
            yield x[rows], y[rows]


@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_compiled_head_fit_equals_keras_fit(dropout):
    from cxrlib.training.head_fit import fit_head_compiled

    keras = _keras()
    keras.utils.set_random_seed(1)
    x, y, xv, yv = _data()
    compiled = _head(dropout)
    start = compiled.get_weights()
    plain = _head(dropout, start)

    ours = _Record(compiled)
    fit_head_compiled(compiled, x, y, xv, yv, epochs=EPOCHS, batch_size=BATCH, seed=SEED,
                      callbacks=[*_callbacks(), ours.callback])
    theirs = _Record(plain)
    plain.fit(_batches(x, y), steps_per_epoch=math.ceil(N_TRAIN / BATCH), epochs=EPOCHS,
              validation_data=(xv, yv), validation_batch_size=N_VAL, shuffle=False, verbose=0,
              callbacks=[*_callbacks(), theirs.callback])

    assert 2 <= len(theirs.logs) < EPOCHS  # early stopping fired, after a learning-rate drop
    assert theirs.logs[-1]["lr"] < 3e-2
    assert len(ours.logs) == len(theirs.logs)
    for epoch, (a, b) in enumerate(zip(ours.logs, theirs.logs)):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (epoch, key, a, b)
    for w_ours, w_theirs in zip(compiled.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(w_ours, w_theirs, rtol=1e-4, atol=1e-5)
    assert int(compiled.optimizer.iterations) == int(plain.optimizer.iterations)
    # The head did learn: the comparison is not between two heads that stood still.
    assert theirs.logs[-1]["loss"] < 0.8 * theirs.logs[0]["loss"]
