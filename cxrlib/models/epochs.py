"""The one epoch driver and the one best-weights keeper of every hand-written Keras loop.

* :func:`run_epochs`: ``model.fit``'s callback protocol around an epoch function. It drives the
  classifier's compiled head loop and replicated step (:mod:`cxrlib.training`) and the lung
  segmenter's loop (:mod:`cxrlib.lungs.train`).
* :func:`best_weights` / :func:`best_weights_class`: the weights of the best epoch by one logged
  value (the lowest ``val_loss`` by default: what ``best.keras`` holds; the highest
  ``val_dice`` for the lung segmenter). :mod:`cxrlib.training.callbacks`' progress callback
  extends it.

They live here, below ``lungs`` and ``training`` in the layer order, because both use them and
they need nothing but Keras.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable


def run_epochs(model, callbacks, *, epochs: int, steps: int, initial_epoch: int = 0,
               epoch: Callable[[int, object], dict]) -> None:
    """Drive ``epoch(number, callback_list) -> logs`` from ``initial_epoch`` to ``epochs`` as
    ``model.fit`` drives its epochs: ``on_train_begin``, then per epoch ``on_epoch_begin``, the
    epoch (which may call the batch hooks of the callback list it gets), ``on_epoch_end(logs)``
    and a stop when ``model.stop_training`` (early stopping) is set, then ``on_train_end``."""
    import keras  # noqa: PLC0415

    cbs = keras.callbacks.CallbackList(list(callbacks), model=model, epochs=epochs, steps=steps,
                                       verbose=0)
    model.stop_training = False
    cbs.on_train_begin()
    for number in range(initial_epoch, epochs):
        cbs.on_epoch_begin(number)
        cbs.on_epoch_end(number, epoch(number, cbs))
        if model.stop_training:
            break
    cbs.on_train_end()


@functools.cache
def best_weights_class():
    """The keeper's class, made on first use (Keras is imported only when something trains)."""
    import keras  # noqa: PLC0415

    class BestWeights(keras.callbacks.Callback):
        """Remembers the weights of the best ``monitor`` value seen at an epoch end (the lowest,
        or with ``higher_is_better`` the highest); an epoch that did not log it never improves.

        Attributes:
            best: the best value so far (``best`` given: a resumed run's).
            best_epoch: its 1-based epoch, or None when no epoch improved on ``best``.
            improved: whether the last epoch set a new best.
        """

        def __init__(self, best: float = math.inf, monitor: str = "val_loss",
                     higher_is_better: bool = False):
            super().__init__()
            self.monitor, self.sign = monitor, -1.0 if higher_is_better else 1.0
            self.best, self.best_weights, self.best_epoch, self.improved = best, None, None, False

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(self.monitor)
            self.improved = value is not None and self.sign * float(value) < self.sign * self.best
            if self.improved:
                self.best, self.best_epoch = float(value), epoch + 1
                self.best_weights = self.model.get_weights()

        def restore(self) -> None:
            """Put the best weights back into the model (no improvement: left as they are)."""
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return BestWeights


def best_weights(best: float = math.inf, monitor: str = "val_loss",
                 higher_is_better: bool = False):
    """A new best-weights keeper (see :func:`best_weights_class`)."""
    return best_weights_class()(best, monitor, higher_is_better)
