"""One run folder: its files, its status and liveness, and its artifacts.

See :mod:`cxrlib.runs.registry` for the folder layout and how runs are found by id.
Every file is written atomically (:mod:`cxrlib.core.fsutil`); a file damaged from outside
(a truncated config.json, status.json or metrics.json) raises :class:`RunFileError` naming the
run and the file, and :meth:`Run.status` then says ``broken``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from cxrlib.core.clock import now_iso  # noqa: F401 (runs' time stamps: callers import it here)
from cxrlib.core.config import RunConfig
from cxrlib.core.csvio import CsvCountError, count_problem, csv_text, read_counted, write_counted
from cxrlib.core.fsutil import atomic_path, read_json, write_json_atomic, write_text_atomic
from cxrlib.core.processes import pid_alive
from cxrlib.models.io import keras_file_problem
from cxrlib.runs.locks import lock_is_held
from cxrlib.runs.queue_store import in_queue, run_job

STATES = ("queued", "running", "done", "failed", "cancelled")
"""States a run's status.json may hold (``broken`` is reported, never written)."""
TERMINAL_STATES = ("done", "failed", "cancelled")


class RunFileError(ValueError):
    """A file of a run folder that is damaged or missing.

    Attributes:
        run_id: the run.
        file: the file's name in the run folder (e.g. ``"status.json"``).
        reason: what is wrong with it.
    """

    def __init__(self, run_id: str, file: str, reason: str) -> None:
        self.run_id, self.file, self.reason = run_id, file, reason
        super().__init__(f"run {run_id}: {file} is damaged ({reason})")


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

    def _json(self, name: str, default: Any = None) -> Any:
        """A JSON object file of the run folder; a damaged one raises :class:`RunFileError`."""
        try:
            value = read_json(self.folder / name, default=default)
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise RunFileError(self.id, name, str(exc).splitlines()[0][:120]) from None
        # Every run file is an object; valid JSON of another kind ("[1, 2]") is damage too.
        if value is not None and not isinstance(value, dict):
            raise RunFileError(self.id, name, f"a JSON {type(value).__name__}, not an object")
        return value

    def _read_csv(self, name: str) -> pd.DataFrame:
        """A CSV of the run folder (empty when absent); RunFileError if not the rows written."""
        try:
            return read_counted(self.folder, name)
        except FileNotFoundError:
            return pd.DataFrame()
        except CsvCountError as exc:
            raise RunFileError(self.id, name, str(exc)) from None


    def _record(self) -> dict[str, Any]:
        record = self._json("config.json")
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise RunFileError(self.id, "config.json",
                               "missing" if record is None else "not a run record")
        return record

    def damage(self) -> RunFileError | None:
        """The first damaged file of config.json, status.json, metrics.json, best.keras, or None.

        Returns:
            A :class:`RunFileError` whose ``file`` names the file and ``reason`` says what is
            wrong (a config.json that parses but is no valid configuration counts too).
        """
        try:
            self._record()
            try:
                self.config  # noqa: B018  (parses the configuration)
            except (ValueError, KeyError, TypeError) as exc:
                raise RunFileError(self.id, "config.json", str(exc).splitlines()[0][:120]) from None
            self._json("status.json")
            self._json("metrics.json")
            if self.model_path.exists() and keras_file_problem(self.model_path):  # cannot be "done"
                raise RunFileError(self.id, "best.keras", keras_file_problem(self.model_path))
            for name in ("split.csv", "predictions.csv"):  # rows of another count (csvio)
                if count_problem(self.folder, name):
                    raise RunFileError(self.id, name, count_problem(self.folder, name))
        except RunFileError as exc:
            return exc
        return None

    def problem(self) -> str | None:
        """What is damaged in the run folder (see :meth:`damage`), or None.

        A damaged run is listed, shown as a broken row and can be deleted; it never stops the
        other runs from being listed or used.
        """
        damage = self.damage()
        return None if damage is None else str(damage)

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
        """Creation time (ISO 8601), or "" when config.json is damaged (for sorting lists)."""
        try:
            return str(self._record().get("created", ""))
        except RunFileError:
            return ""

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
        pid = self.raw_status().get("pid") or (self._json("spawn.json", default={}) or {}).get("pid")
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
        """status.json exactly as written (no liveness check).

        Raises:
            RunFileError: status.json is damaged.
        """
        return self._json("status.json", default={}) or {}

    def is_alive(self) -> bool:
        """Whether a training process holds the run's lock right now."""
        return lock_is_held(self.lock_path)

    def status(self) -> dict[str, Any]:
        """The run's status, with a dead process reported as ``failed``, a damaged one as ``broken``.

        Returns:
            status.json's fields (``state``, ``epoch``, ``epochs``, ``step``, ``steps``,
            ``metrics``, ``eta_s``, ``message``, ``error``, ``pid`` ...). When it says
            ``running`` (or ``queued`` with a started process) but no process holds the lock,
            ``state`` is ``"failed"``, ``error`` says the process died, ``died`` is True and
            ``resumable`` tells whether a checkpoint exists (:meth:`has_checkpoint`). A damaged
            status.json gives ``state="broken"`` with ``error`` naming the file.
        """
        try:
            status = self.raw_status()
        except RunFileError as exc:
            return {"state": "broken", "error": str(exc), "damaged": exc.file}
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
        return self._read_csv("history.csv")

    def predictions(self) -> pd.DataFrame:
        """predictions.csv (rel_path, path, label, patient_id, group_id, split, pred, p_<class>...)."""
        return self._read_csv("predictions.csv")

    def test_predictions(self) -> pd.DataFrame:
        """The rows of predictions.csv on the run's test split
        (:func:`cxrlib.evaluation.core.test_rows`, the one filter), index reset."""
        from cxrlib.evaluation.core import test_rows  # noqa: PLC0415

        return test_rows(self.predictions())

    def audit_attention(self) -> pd.DataFrame | None:
        """The CAM in-lung shares of the test films that an audit of the present predictions
        stored (audit_attention.csv: ``rel_path``, ``in_lung_share``, ...; what orders the
        review queue), or None: no audit measured them, or the run was trained again since."""
        path, preds = self.folder / "audit_attention.csv", self.folder / "predictions.csv"
        if not path.is_file() or (preds.is_file()
                                  and path.stat().st_mtime_ns < preds.stat().st_mtime_ns):
            return None
        try:
            return read_counted(self.folder, "audit_attention.csv")
        except (FileNotFoundError, CsvCountError):  # gone meanwhile, or damaged: none stored
            return None

    def write_audit_attention(self, table: pd.DataFrame) -> None:
        """Store an audit's attention table, unless the stored one covers more films (of several
        audits, whatever their options, the one that measured the most films; the newest of a tie)."""
        stored = self.audit_attention()
        if stored is None or len(table) >= len(stored):
            write_counted(self.folder, "audit_attention.csv", table)

    def metrics(self) -> dict[str, Any]:
        """metrics.json, or ``{}`` before the run is done (a damaged file raises :class:`RunFileError`)."""
        return self._json("metrics.json", default={}) or {}

    def split_table(self) -> pd.DataFrame:
        """split.csv: rel_path, split, label, patient_id, group_id of every image."""
        return self._read_csv("split.csv")

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
        write_text_atomic(self.folder / "history.csv", csv_text(history, for_people=False))

    def write_predictions(self, predictions: pd.DataFrame) -> None:
        write_counted(self.folder, "predictions.csv", predictions)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json_atomic(self.folder / "metrics.json", metrics)

    def write_split(self, table: pd.DataFrame) -> dict[str, Any]:
        """Store split.csv and its leakage counts (also put in status.json); returns the counts."""
        from cxrlib.data.splits import leakage  # noqa: PLC0415

        write_counted(self.folder, "split.csv", table)
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
            from cxrlib.models.io import load_model  # noqa: PLC0415

            self._model = load_model(self.model_path)
        return self._model


def _start_pending(run: Run) -> bool:
    """A queued run with no pid yet: starting while someone holds its start lock, or waiting
    in the queue of background runs (:mod:`cxrlib.runs.queue`) for a free slot."""
    return lock_is_held(run.folder / "start.lock") or in_queue(run_job(run))
