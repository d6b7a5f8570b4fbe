"""The training context: what one run's training shares with the modules that fit it.

:func:`cxrlib.training.engine.execute` makes one :class:`TrainingContext` per run and hands it
to the fit of each mode (:mod:`.engine` for the head, :mod:`.full_fit` for fine-tuning), to the
callbacks (:mod:`.callbacks`: status, history, checkpoints) and to the cluster helpers
(:mod:`.distribute`). Everything they read or write about the run goes through its documented
fields and methods; nothing reaches into a private object.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrlib.core.config import RunConfig

STATUS_INTERVAL_S = 0.5  # at most 2 status writes a second


class Cancelled(Exception):
    """Raised inside ``fit`` when ``cancel_check()`` says stop."""


@dataclass(frozen=True)
class HeadStart:
    """The finished head run a fine-tune with ``init_from_head`` starts from (trained first by
    the runner, :func:`cxrlib.runs.runner.execute_run`, and passed in: the engine starts no run).

    Attributes:
        run_id: the head run's id (recorded in metrics.json as ``init_from_head_run``).
        model_path: its ``best.keras``, whose weights the fine-tune loads.
        seconds: how long getting it took (0 when it was already done), added to the
            fine-tune's ``seconds`` and ``timings["init_from_head"]``.
    """

    run_id: str
    model_path: Path
    seconds: float = 0.0


@dataclass
class TrainingContext:
    """One run's training in progress.

    Attributes:
        run: the :class:`cxrlib.runs.run.Run` being trained (folder, status and file writers).
        cfg: its configuration.
        classes: the task's classes, in the model's output order.
        cancel_check: polled after every batch (fine-tune) or epoch (head mode); True stops
            the training with :class:`Cancelled`.
        chief: whether this process writes the run's files (always True outside a cluster).
        start_from: the head run a fine-tune with ``init_from_head`` starts from, or None.
        info: facts for metrics.json (``timings``, cache hits, class weights, best epoch...).
        data: the :class:`cxrlib.training.data.TrainingData` once loaded.
        onehot: ``(N, C)`` true classes of ``data.manifest``'s rows.
        idx: row indices of ``"train"``, ``"val"`` and ``"test"`` (val is test when the split
            has no validation rows).
        model: the model being trained (image -> probabilities).
        head_model_path: in a cluster, the chief's head-run model that every worker loads.
    """

    run: Any
    cfg: RunConfig
    classes: tuple[str, ...]
    cancel_check: Callable[[], bool] = lambda: False
    chief: bool = True
    start_from: HeadStart | None = None
    info: dict = field(default_factory=dict)
    data: Any = None
    onehot: np.ndarray | None = None
    idx: dict[str, np.ndarray] = field(default_factory=dict)
    model: Any = None
    head_model_path: Path | None = None
    t0: float = field(default_factory=time.perf_counter)
    _last_lap: float | None = field(default=None, repr=False)

    def status(self, **fields) -> None:
        """Write ``fields`` into the run's status.json."""
        self.run.write_status(**fields)

    def lap(self, phase: str) -> None:
        """Record the seconds since the previous lap under ``info["timings"][phase]``."""
        now = time.perf_counter()
        timings = self.info.setdefault("timings", {})
        timings[phase] = round(now - (self._last_lap or self.t0), 2)
        self._last_lap = now

    def progress(self, what: str) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback writing ``"<what> done/total"`` (throttled) and
        checking ``cancel_check`` (preprocessing, feature extraction)."""
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] >= STATUS_INTERVAL_S or done == total:
                last[0] = now
                self.status(message=f"{what} {done}/{total}")
            if self.cancel_check():
                raise Cancelled()
        return report

    def class_weight(self) -> np.ndarray | None:
        """The small CNN's class weights (published rule) from the training films, else None;
        recorded in ``info["class_weights"]``."""
        if self.cfg.model.family != "small_cnn":
            return None
        from cxrlib.models import class_weights  # noqa: PLC0415

        labels = np.array(self.classes)[self.onehot[self.idx["train"]].argmax(1)]
        weights = class_weights(labels, self.classes)
        self.info["class_weights"] = dict(zip(self.classes, map(float, weights)))
        return weights
