"""The training callbacks: throttled progress in status.json, cancel checks, history rows,
best-weights keeping and the epoch checkpoint that lets a killed run resume."""
from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pandas as pd

from cxrlib.core.fsutil import atomic_path, read_json, write_json_atomic

STATUS_INTERVAL_S = 0.5  # at most 2 status writes a second


class Cancelled(Exception):
    """Raised inside ``fit`` when ``cancel_check()`` says stop."""


_PROGRESS_CLASSES: dict = {}


def progress_callback(per_batch: bool):
    """The progress callback class; with ``per_batch`` it also reports and checks every batch."""
    if not _PROGRESS_CLASSES:
        epoch_level = _make_progress_class()

        class BatchProgress(epoch_level):
            per_batch = True

            def on_train_batch_end(self, batch, logs=None):
                self.done_steps += 1
                if self.t.cancel_check():
                    raise Cancelled()
                now = time.perf_counter()
                if now - self.last_write >= STATUS_INTERVAL_S:
                    self.last_write = now
                    self._write(batch + 1, logs)

        _PROGRESS_CLASSES.update({False: epoch_level, True: BatchProgress})
    return _PROGRESS_CLASSES[per_batch]


def _make_progress_class():
    import keras  # noqa: PLC0415

    class Progress(keras.callbacks.Callback):
        """Status writes (throttled), cancel checks, history rows and best-weights keeping.

        This epoch-level class checks ``cancel_check`` once an epoch (head mode: epochs of
        well under a second); the per-batch subclass from :func:`progress_callback` every batch.
        """

        per_batch = False

        def __init__(self, training, model, steps, record, checkpoint, initial_epoch, best):
            super().__init__()
            self.t, self.net, self.steps = training, model, steps
            self.record, self.checkpoint = record, checkpoint
            self.best, self.best_weights, self.best_epoch = best, None, None
            self.epochs = training.cfg.train.epochs
            self.initial_epoch = initial_epoch
            self.rows = (training.run_.history().head(initial_epoch).to_dict("records")
                         if record and initial_epoch else [])
            self.last_write, self.epoch = 0.0, initial_epoch
            self.fit_start, self.done_steps = time.perf_counter(), 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            if self.t.cancel_check():
                raise Cancelled()

        def _write(self, step, logs, **extra):
            total = (self.epochs - self.initial_epoch) * self.steps
            rate = (time.perf_counter() - self.fit_start) / max(1, self.done_steps)
            self.t.status(epoch=self.epoch + 1, epochs=self.epochs, step=step, steps=self.steps,
                          eta_s=round(rate * max(0, total - self.done_steps), 1),
                          metrics={k: float(v) for k, v in (logs or {}).items()}, **extra)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if not self.per_batch:
                self.done_steps += self.steps
            lr = float(keras.ops.convert_to_numpy(self.net.optimizer.learning_rate))
            val_loss = float(logs.get("val_loss", math.inf))
            if val_loss < self.best:
                self.best, self.best_epoch = val_loss, epoch + 1
                self.best_weights = self.net.get_weights()
                if self.checkpoint:
                    self.t.run_.save_model(self.t.model)
            if self.record:
                self.rows.append({"epoch": epoch + 1, **{k: float(logs.get(k, np.nan)) for k in
                                  ("loss", "accuracy", "val_loss", "val_accuracy")}, "lr": lr})
                self.t.run_.write_history(pd.DataFrame(self.rows))
            if self.checkpoint:
                folder = self.t.run_.folder
                with atomic_path(folder / "checkpoint.weights.h5", suffix=".weights.h5") as tmp:
                    self.net.save_weights(tmp)
                write_json_atomic(folder / "checkpoint.json",
                                  {"epoch": epoch + 1, "lr": lr, "best_val_loss": self.best})
            now = time.perf_counter()
            if now - self.last_write >= STATUS_INTERVAL_S or epoch + 1 == self.epochs:
                self.last_write = now
                self._write(self.steps, logs)

        def restore_best(self):
            if self.best_weights is not None:
                self.net.set_weights(self.best_weights)
            elif self.checkpoint and self.t.run_.model_path.exists():  # resumed, no new best
                with warnings.catch_warnings():  # "skipping optimizer variables": intended
                    warnings.simplefilter("ignore", UserWarning)
                    self.net.load_weights(self.t.run_.model_path)
            if self.best_epoch is not None:
                self.t.info["best_epoch"] = self.best_epoch

    return Progress



def resume(training, model) -> tuple[int, float]:
    """Continue from checkpoint.json / checkpoint.weights.h5 left by a killed process.

    Returns:
        ``(epoch to start from, best validation loss so far)``; ``(0, inf)`` without a checkpoint.
    """
    folder = training.run_.folder
    state = read_json(folder / "checkpoint.json")
    if not state or not (folder / "checkpoint.weights.h5").is_file():
        return 0, math.inf
    with warnings.catch_warnings():  # the new optimizer is not built yet: its state restarts
        warnings.simplefilter("ignore", UserWarning)
        model.load_weights(folder / "checkpoint.weights.h5")
    model.optimizer.learning_rate.assign(state["lr"])
    training.info["resumed_from_epoch"] = state["epoch"]
    return int(state["epoch"]), float(state["best_val_loss"])
