"""One head trained afresh on cached features, as a head-mode run trains its own.

Leave-one-source-out trains the run's head once per held-out source: the same architecture
(a fresh copy of the run's head layers, initialised from the run's seed), compilation and
callbacks (:func:`cxrlib.training.finetune.compile_classifier` and
:func:`~cxrlib.training.finetune.fit_callbacks`, which the engine uses too), epochs, batch size,
best-validation-loss weights and compiled loop (:func:`cxrlib.training.head_fit.fit_head_compiled`)
as :mod:`cxrlib.training.engine`, on other rows, without a run folder.
"""
from __future__ import annotations

import functools
import math

import numpy as np


def train_head(template, features: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray,
               onehot: np.ndarray, tcfg, *, sources=None, adversarial: float = 0.0):
    """A fresh copy of ``template`` (a head: features -> probabilities) fitted on some rows.

    Args:
        template: the head whose architecture is copied (its weights are not used).
        features: ``(copies + 1, N, D)`` cached features; the training rows use every copy,
            validation the originals, as in head-mode training.
        train_rows / val_rows: row indices into ``features[k]``.
        onehot: ``(N, C)`` true classes.
        tcfg: the run's :class:`cxrlib.core.config.TrainConfig`.
        sources: source name of every row (needed with ``adversarial`` and with
            ``tcfg.source_balance``).
        adversarial: weight of the source-adversarial branch (0: plain head).

    Returns:
        The fitted head, holding the weights of its best validation loss.
    """
    from cxrlib.core.tfsetup import keras as _keras  # noqa: PLC0415
    from cxrlib.training.adversarial import SourceAdversary  # noqa: PLC0415
    from cxrlib.training.finetune import compile_classifier, fit_callbacks  # noqa: PLC0415
    from cxrlib.training.head_fit import fit_head_compiled  # noqa: PLC0415

    keras = _keras()
    keras.utils.set_random_seed(tcfg.seed)  # the same initial weights for every fold
    head = keras.models.clone_model(template)
    compile_classifier(head, tcfg.learning_rate)
    copies = features.shape[0]
    x_train = np.concatenate([features[k][train_rows] for k in range(copies)])
    y_train = np.concatenate([onehot[train_rows]] * copies)
    extra = None
    if adversarial > 0:
        extra = SourceAdversary(head, list(np.asarray(sources)[train_rows]) * copies, y_train, adversarial)
    from cxrlib.training.source_balance import training_weights  # noqa: PLC0415 (issue 23 hook)

    weights = training_weights(tcfg, onehot, sources, train_rows, copies)
    keep = _keep_best_type()()
    callbacks = [keep, *fit_callbacks(tcfg, math.ceil(len(x_train) / tcfg.batch_size))]
    fit_head_compiled(head, x_train, y_train, features[0][val_rows], onehot[val_rows],
                      epochs=tcfg.epochs, batch_size=tcfg.batch_size, seed=tcfg.seed,
                      callbacks=callbacks, extra=extra, sample_weight=weights)
    keep.restore()
    return head


@functools.cache
def _keep_best_type():
    """The callback class, made on first use (Keras is imported only when a head trains)."""
    from cxrlib.core.tfsetup import keras  # noqa: PLC0415

    class KeepBest(keras().callbacks.Callback):
        """Remembers the weights of the lowest validation loss (what best.keras holds)."""

        def __init__(self):
            super().__init__()
            self.best, self.weights = math.inf, None

        def on_epoch_end(self, epoch, logs=None):
            loss = float((logs or {}).get("val_loss", math.inf))
            if loss < self.best:
                self.best, self.weights = loss, self.model.get_weights()

        def restore(self):
            if self.weights is not None:
                self.model.set_weights(self.weights)

    return KeepBest
