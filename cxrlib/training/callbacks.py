"""The training runs' progress callback, and resuming a killed run.

* :func:`progress_callback`: throttled progress in status.json, cancel checks, history rows and
  the epoch checkpoint that lets a killed run resume (:func:`resume`). It is a best-weights
  keeper too: it extends **the one best-weights keeper**,
  :func:`cxrlib.models.epochs.best_weights_class` (the weights of the lowest validation loss,
  what ``best.keras`` holds), which the head fit (:func:`cxrlib.training.head_fit.fit_head`)
  uses directly.
* **The one epoch / callback driver** of the hand-written loops (the compiled head loop, the
  replicated step, the lung segmenter's loop) is :func:`cxrlib.models.epochs.run_epochs`.
"""
from __future__ import annotations

import functools
import math
import time
import warnings

import numpy as np
import pandas as pd

from cxrlib.core.fsutil import atomic_path, read_json, write_json_atomic
from cxrlib.models.epochs import best_weights_class
from cxrlib.training.context import STATUS_INTERVAL_S, Cancelled


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
