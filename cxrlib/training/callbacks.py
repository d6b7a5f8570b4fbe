"""The training callbacks and the one epoch driver.

* :func:`best_weights` / :func:`best_weights_class`: **the one best-weights keeper** (the weights
  of the lowest validation loss, what ``best.keras`` holds). Every fit keeps its best weights
  with it: the head fit (:func:`cxrlib.training.head_fit.fit_head`), and fine-tuning through
  :func:`progress_callback`'s class, which extends it.
* :func:`progress_callback`: throttled progress in status.json, cancel checks, history rows and
  the epoch checkpoint that lets a killed run resume (:func:`resume`).
* :func:`run_epochs`: **the one epoch / callback driver** of the hand-written loops (the compiled
  head loop and the replicated step): ``model.fit``'s callback protocol around an epoch function.
"""
from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from cxrlib.core.fsutil import atomic_path, read_json, write_json_atomic
from cxrlib.training.context import STATUS_INTERVAL_S, Cancelled


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
        """Remembers the weights of the lowest ``val_loss`` seen at an epoch end.

        Attributes:
            best: the lowest validation loss so far (``best`` given: a resumed run's).
            best_epoch: its 1-based epoch, or None when no epoch improved on ``best``.
            improved: whether the last epoch set a new best.
        """

        def __init__(self, best: float = math.inf):
            super().__init__()
            self.best, self.best_weights, self.best_epoch, self.improved = best, None, None, False

        def on_epoch_end(self, epoch, logs=None):
            loss = float((logs or {}).get("val_loss", math.inf))
            self.improved = loss < self.best
            if self.improved:
                self.best, self.best_epoch = loss, epoch + 1
                self.best_weights = self.model.get_weights()

        def restore(self) -> None:
            """Put the best weights back into the model (no improvement: left as they are)."""
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return BestWeights


def best_weights(best: float = math.inf):
    """A new best-weights keeper (see :func:`best_weights_class`)."""
    return best_weights_class()(best)


@functools.cache
def _progress_classes() -> dict:
    Keeper = best_weights_class()

    class Progress(Keeper):
        """Best weights (the keeper), throttled status writes, cancel checks, history rows and
        the epoch checkpoint. This epoch-level class checks ``cancel_check`` once an epoch (head
        mode: epochs of well under a second); :class:`BatchProgress` every batch.

        Args:
            ctx: the :class:`cxrlib.training.context.TrainingContext`.
            steps: batches an epoch.
            record: write history.csv.
            checkpoint: save best.keras at every new best, and the epoch checkpoint.
            initial_epoch / best: where a resumed run starts, and its best validation loss.
            cancel_check: what is polled (default ``ctx.cancel_check``; the replicated loop
                stops all workers together instead, so it passes a check that never fires).
        """

        per_batch = False

        def __init__(self, ctx, steps, record, checkpoint, initial_epoch=0, best=math.inf,
                     cancel_check=None):
            super().__init__(best)
            self.ctx, self.steps = ctx, steps
            self.record, self.checkpoint = record, checkpoint
            self.cancel_check = cancel_check or ctx.cancel_check
            self.epochs = ctx.cfg.train.epochs
            self.initial_epoch = initial_epoch
            self.rows = (ctx.run.history().head(initial_epoch).to_dict("records")
                         if record and initial_epoch else [])
            self.last_write, self.epoch = 0.0, initial_epoch
            self.fit_start, self.done_steps = time.perf_counter(), 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            if self.cancel_check():
                raise Cancelled()

        def _write(self, step, logs, **extra):
            total = (self.epochs - self.initial_epoch) * self.steps
            rate = (time.perf_counter() - self.fit_start) / max(1, self.done_steps)
            self.ctx.status(epoch=self.epoch + 1, epochs=self.epochs, step=step, steps=self.steps,
                            eta_s=round(rate * max(0, total - self.done_steps), 1),
                            metrics={k: float(v) for k, v in (logs or {}).items()}, **extra)

        def on_epoch_end(self, epoch, logs=None):
            import keras  # noqa: PLC0415

            logs = logs or {}
            if not self.per_batch:
                self.done_steps += self.steps
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            super().on_epoch_end(epoch, logs)
            if self.improved and self.checkpoint:
                self.ctx.run.save_model(self.ctx.model)
            if self.record:
                self.rows.append({"epoch": epoch + 1, **{k: float(logs.get(k, np.nan)) for k in
                                  ("loss", "accuracy", "val_loss", "val_accuracy")}, "lr": lr})
                self.ctx.run.write_history(pd.DataFrame(self.rows))
            if self.checkpoint:
                folder = self.ctx.run.folder
                with atomic_path(folder / "checkpoint.weights.h5", suffix=".weights.h5") as tmp:
                    self.model.save_weights(tmp)
                write_json_atomic(folder / "checkpoint.json",
                                  {"epoch": epoch + 1, "lr": lr, "best_val_loss": self.best})
            now = time.perf_counter()
            if now - self.last_write >= STATUS_INTERVAL_S or epoch + 1 == self.epochs:
                self.last_write = now
                self._write(self.steps, logs)

        def restore(self) -> None:
            """The best weights of this fit, else (a resumed run with no new best) best.keras."""
            if self.best_weights is None and self.checkpoint and self.ctx.run.model_path.exists():
                with warnings.catch_warnings():  # "skipping optimizer variables": intended
                    warnings.simplefilter("ignore", UserWarning)
                    self.model.load_weights(self.ctx.run.model_path)
            super().restore()
            if self.best_epoch is not None:
                self.ctx.info["best_epoch"] = self.best_epoch

    class BatchProgress(Progress):
        per_batch = True

        def on_train_batch_end(self, batch, logs=None):
            self.done_steps += 1
            if self.cancel_check():
                raise Cancelled()
            now = time.perf_counter()
            if now - self.last_write >= STATUS_INTERVAL_S:
                self.last_write = now
                self._write(batch + 1, logs)

    return {False: Progress, True: BatchProgress}


def progress_callback(per_batch: bool):
    """The progress callback class (a best-weights keeper too); with ``per_batch`` it also
    reports and checks every batch."""
    return _progress_classes()[per_batch]


def resume(ctx, model) -> tuple[int, float]:
    """Continue from checkpoint.json / checkpoint.weights.h5 left by a killed process.

    Returns:
        ``(epoch to start from, best validation loss so far)``; ``(0, inf)`` without a checkpoint.
    """
    folder = ctx.run.folder
    state = read_json(folder / "checkpoint.json")
    if not state or not (folder / "checkpoint.weights.h5").is_file():
        return 0, math.inf
    with warnings.catch_warnings():  # the new optimizer is not built yet: its state restarts
        warnings.simplefilter("ignore", UserWarning)
        model.load_weights(folder / "checkpoint.weights.h5")
    model.optimizer.learning_rate.assign(state["lr"])
    ctx.info["resumed_from_epoch"] = state["epoch"]
    return int(state["epoch"]), float(state["best_val_loss"])
