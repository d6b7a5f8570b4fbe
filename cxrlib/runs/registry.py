"""The run registry: one folder per training run, named by a hash of what defines its results.

``paths.runs_dir()/<run id>/`` holds::

    config.json      the RunConfig, dataset fingerprint, classes, creation time
    status.json      state (queued / running / done / failed / cancelled) and progress
    split.csv        rel_path, split, label, patient_id, group_id of every image
    history.csv      one row per epoch
    best.keras       the weights with the best validation loss
    predictions.csv  test-split predictions, one ``p_<class>`` column per class
    metrics.json     test-split metrics
    lock             flock-ed by the process that trains the run, for its whole life
    start.lock       flock-ed while a starter checks the run and spawns its process
    spawn.json       pid of the spawned process (before it writes status.json itself)
    cancel           present when a cancel was requested
    log.txt          the training process's stdout and stderr

Every file is written atomically (:mod:`cxrlib.core.fsutil`). Asking for a run never imports
TensorFlow; only :meth:`Run.load_model` does.

Liveness: the training process holds an exclusive ``flock`` on ``lock``. The kernel drops it
when the process ends in any way (SIGKILL included), so a status that says ``running`` while
the lock is free means the process died: :meth:`Run.status` then reports ``failed`` with
``resumable`` set when a ``best.keras`` checkpoint exists.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from cxrlib.core import paths
from cxrlib.core.classes import task_classes
from cxrlib.core.config import RunConfig, config_hash
from cxrlib.core.fsutil import atomic_path, read_json, write_json_atomic, write_text_atomic
from cxrlib.data.splits import val_is_test

STATES = ("queued", "running", "done", "failed", "cancelled")
TERMINAL_STATES = ("done", "failed", "cancelled")


def run_id(cfg: RunConfig, fingerprint: str) -> str:
    """The id of the run of ``cfg`` on the dataset with ``fingerprint`` (16 hex digits)."""
    return config_hash(cfg.identity(), fingerprint)


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def pid_alive(pid: int | None) -> bool:
    """Whether a process ``pid`` exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


class RunNotFound(KeyError):
    """No run (or more than one) matches an id or prefix."""


class RunLock:
    """An exclusive ``flock`` on a file, released on :meth:`release` or process death."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0, poll: float = 0.05) -> bool:
        """Try to take the lock for up to ``timeout`` seconds; True when taken."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return True
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                os.close(fd)
                return False
            time.sleep(poll)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocking: used for short critical sections
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_is_held(path: Path) -> bool:
    """Whether some open file description holds an exclusive flock on ``path``."""
    if not path.exists():
        return False
    probe = RunLock(path)
    if probe.acquire(timeout=0):
        probe.release()
        return False
    return True


class Run:
    """A run folder. Cheap to make; every accessor reads the files afresh.

    Attributes:
        folder: the run's folder; its name is the run id.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._model = None

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.folder.resolve() == self.folder.resolve()

    def __hash__(self) -> int:
        return hash(str(self.folder.resolve()))

    # -- identity ---------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.folder.name

    def _record(self) -> dict[str, Any]:
        record = read_json(self.folder / "config.json")
        if record is None:
            raise KeyError(f"run folder {self.folder} has no config.json")
        return record

    @property
    def config(self) -> RunConfig:
        """The run's :class:`RunConfig`."""
        return RunConfig.from_dict(self._record()["config"])

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the dataset (for the run's task) the run was made on."""
        return self._record()["fingerprint"]

    @property
    def classes(self) -> tuple[str, ...]:
        """The task's classes, in model output order."""
        return tuple(self._record()["classes"])

    @property
    def created(self) -> str:
        return self._record().get("created", "")

    @property
    def val_is_test(self) -> bool:
        """True when the test split doubled as validation (optimistic test metrics)."""
        return bool(self._record().get("val_is_test", False))

    # -- files --------------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        """``best.keras``: the weights with the best validation loss (also the resume checkpoint)."""
        return self.folder / "best.keras"

    @property
    def lock_path(self) -> Path:
        return self.folder / "lock"

    @property
    def spawn_path(self) -> Path:
        """spawn.json: pid of the process the runner started (before it writes status.json)."""
        return self.folder / "spawn.json"

    @property
    def pid(self) -> int | None:
        """The training process's pid: from status.json once it runs, else from spawn.json."""
        pid = self.raw_status().get("pid")
        if not pid:
            pid = (read_json(self.spawn_path, default={}) or {}).get("pid")
        return int(pid) if pid else None

    @property
    def cancel_path(self) -> Path:
        return self.folder / "cancel"

    @property
    def log_path(self) -> Path:
        return self.folder / "log.txt"

    def has_checkpoint(self) -> bool:
        """Whether a restart can resume: an epoch checkpoint (checkpoint.json + weights) or best.keras."""
        epoch_checkpoint = ((self.folder / "checkpoint.json").is_file()
                            and (self.folder / "checkpoint.weights.h5").is_file())
        return epoch_checkpoint or self.model_path.is_file()

    def cancel_requested(self) -> bool:
        """Whether a cancel was requested (the training loop's ``cancel_check``)."""
        return self.cancel_path.exists()

    def request_cancel(self) -> None:
        """Ask the training process to stop at its next check."""
        write_text_atomic(self.cancel_path, now_iso() + "\n")

    # -- status -------------------------------------------------------------------------------
    def raw_status(self) -> dict[str, Any]:
        """status.json exactly as written (no liveness check)."""
        return read_json(self.folder / "status.json", default={}) or {}

    def is_alive(self) -> bool:
        """Whether a training process holds the run's lock right now."""
        return lock_is_held(self.lock_path)

    def status(self) -> dict[str, Any]:
        """The run's status, with a dead process reported as ``failed``.

        Returns:
            status.json's fields (``state``, ``epoch``, ``epochs``, ``step``, ``steps``,
            ``metrics``, ``eta_s``, ``message``, ``error``, ``pid`` ...). When it says
            ``running`` (or ``queued`` with a started process) but no process holds the lock,
            ``state`` is ``"failed"``, ``error`` says the process died, ``died`` is True and
            ``resumable`` tells whether a checkpoint exists (:meth:`has_checkpoint`).
        """
        status = self.raw_status()
        state = status.get("state")
        if state not in TERMINAL_STATES and not self.is_alive():
            pid = self.pid
            # No state yet: create_run made the folder and a starter is about to write "queued".
            starting = state in (None, "queued") and (pid_alive(pid) if pid else _start_pending(self))
            if not starting:
                resumable = self.has_checkpoint()
                status = dict(status, state="failed", died=True, resumable=resumable,
                              error=f"process died (pid {pid}) while {state or 'starting'}; "
                                    + ("resumable from its checkpoint" if resumable
                                       else "no checkpoint, starts over"))
        return status

    def write_status(self, *, replace: bool = False, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into status.json (atomically) and return the new status.

        Args:
            replace: start from an empty status instead of the current one (a new attempt).
            **fields: e.g. ``state``, ``epoch``, ``epochs``, ``step``, ``steps``, ``metrics``,
                ``eta_s``, ``message``, ``error``.

        Raises:
            ValueError: for an unknown ``state``.
        """
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"unknown run state {fields['state']!r}; choose from {STATES}")
        status = {} if replace else self.raw_status()
        status.update(fields)
        status["updated"] = now_iso()
        write_json_atomic(self.folder / "status.json", status)
        return status

    @property
    def state(self) -> str:
        return self.status().get("state", "queued")

    # -- artifacts ------------------------------------------------------------------------------
    def history(self) -> pd.DataFrame:
        """history.csv (epoch, loss, accuracy, val_loss, val_accuracy, lr); empty when absent."""
        return _read_csv(self.folder / "history.csv")

    def predictions(self) -> pd.DataFrame:
        """predictions.csv (rel_path, path, label, patient_id, group_id, split, pred, p_<class>...)."""
        return _read_csv(self.folder / "predictions.csv")

    def metrics(self) -> dict[str, Any]:
        """metrics.json, or ``{}`` before the run is done."""
        return read_json(self.folder / "metrics.json", default={}) or {}

    def split_table(self) -> pd.DataFrame:
        """split.csv: rel_path, split, label, patient_id, group_id of every image."""
        return _read_csv(self.folder / "split.csv")

    @property
    def leakage(self) -> dict[str, Any]:
        """Patients and groups on more than one side (see :func:`cxrlib.data.splits.leakage`)."""
        found = self.raw_status().get("leakage") or self.metrics().get("leakage")
        if found is None and (self.folder / "split.csv").exists():
            from cxrlib.data.splits import leakage  # noqa: PLC0415

            table = self.split_table()
            found = leakage(table, table["split"])
        return found or {}

    def write_history(self, history: pd.DataFrame) -> None:
        _write_csv(self.folder / "history.csv", history)

    def write_predictions(self, predictions: pd.DataFrame) -> None:
        _write_csv(self.folder / "predictions.csv", predictions)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json_atomic(self.folder / "metrics.json", metrics)

    def write_split(self, table: pd.DataFrame) -> dict[str, Any]:
        """Store split.csv and its leakage counts (also put in status.json); returns the counts."""
        from cxrlib.data.splits import leakage  # noqa: PLC0415

        _write_csv(self.folder / "split.csv", table)
        counts = leakage(table, table["split"])
        self.write_status(leakage=counts)
        return counts

    def save_model(self, model: Any) -> None:
        """Save a Keras model as best.keras atomically (Keras needs the ``.keras`` suffix)."""
        with atomic_path(self.model_path, suffix=".keras") as tmp:
            model.save(tmp)
        self._model = None

    def load_model(self):
        """The best model (loaded once per Run object; imports TensorFlow).

        Raises:
            FileNotFoundError: when the run has no best.keras yet.
        """
        if self._model is None:
            if not self.model_path.exists():
                raise FileNotFoundError(f"run {self.id} has no model yet ({self.model_path})")
            from cxrlib.models.architectures import load_model  # noqa: PLC0415

            self._model = load_model(self.model_path)
        return self._model


def _start_pending(run: Run) -> bool:
    """A queued run with no pid yet: starting only while someone holds its start lock."""
    return lock_is_held(run.folder / "start.lock")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        return pd.DataFrame()


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text_atomic(path, frame.to_csv(index=False))


def create_run(cfg: RunConfig, fingerprint: str) -> Run:
    """Make the run folder with config.json (kept when it already exists) and return the Run."""
    folder = paths.runs_dir() / run_id(cfg, fingerprint)
    folder.mkdir(parents=True, exist_ok=True)
    run = Run(folder)
    if not (folder / "config.json").exists():
        write_json_atomic(folder / "config.json", {
            "run_id": run.id, "config": cfg.to_dict(), "fingerprint": fingerprint,
            "classes": list(task_classes(cfg.data.task)), "created": now_iso(),
            "val_is_test": val_is_test(cfg.split)})
    return run


def list_runs() -> list[Run]:
    """Every run with a config.json, newest first."""
    root = paths.runs_dir()
    if not root.is_dir():
        return []
    runs = [Run(p) for p in root.iterdir() if (p / "config.json").is_file()]
    return sorted(runs, key=lambda r: (r.created, r.id), reverse=True)


def get_run(run_id_or_prefix: str) -> Run:
    """The run with this id (or a unique prefix of one, as the CLI allows).

    Raises:
        RunNotFound: (a KeyError) when no run, or more than one, matches.
    """
    key = str(run_id_or_prefix).strip()
    root = paths.runs_dir()
    if key and (root / key / "config.json").is_file():
        return Run(root / key)
    matches = [r for r in list_runs() if key and r.id.startswith(key)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RunNotFound(f"run id prefix {key!r} is ambiguous: {', '.join(r.id for r in matches)}")
    raise RunNotFound(f"no run {key!r} in {root}")


def find_run(cfg: RunConfig, fingerprint: str) -> Run | None:
    """The run of ``cfg`` on the dataset with ``fingerprint``, or None when it was never made."""
    folder = paths.runs_dir() / run_id(cfg, fingerprint)
    return Run(folder) if (folder / "config.json").is_file() else None


def headline(run: Run) -> dict[str, Any]:
    """One row of the runs table: id, state, model, mode, split, epochs, accuracy, AUC, created."""
    cfg = run.config
    status = run.status()
    # Test metrics only: a running run's status metrics are training-batch figures.
    metrics = run.metrics() or (status.get("metrics") if status.get("state") == "done" else None) or {}
    auc = metrics.get("macro_auc")
    if auc is None and isinstance(metrics.get("auc"), dict):
        auc = metrics["auc"].get("macro")
    epochs = f"{status.get('epoch', 0) or 0}/{status.get('epochs', cfg.train.epochs)}"
    return {"id": run.id, "state": status.get("state", "?"), "task": cfg.data.task,
            "model": cfg.model.family, "mode": cfg.train.mode, "split": cfg.split.kind,
            "epochs": epochs, "accuracy": metrics.get("accuracy"), "macro_auc": auc,
            "created": run.created}
