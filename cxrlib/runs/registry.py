"""The run registry: one folder per training run, named by a hash of what defines its results.

``paths.runs_dir()/<run id>/`` holds::

    config.json      the RunConfig, dataset fingerprint, classes, creation time
    status.json      state (queued / running / done / failed / cancelled) and progress
    split.csv        rel_path, split, label, patient_id, group_id of every image
    history.csv      one row per epoch
    best.keras       the weights with the best validation loss
    predictions.csv  test-split predictions, one ``p_<class>`` column per class
    metrics.json     test-split metrics
    csv_rows.json    rows of split.csv and predictions.csv; another number read is damage
    lock             flock-ed by the process that trains the run, for its whole life
    start.lock       flock-ed while a starter checks the run and spawns its process
    spawn.json       pid of the spawned process (before it writes status.json itself)
    cancel           present when a cancel was requested
    log.txt          the training process's stdout and stderr

Every file is written atomically (:mod:`cxrlib.core.fsutil`). Asking for a run never imports
TensorFlow; only :meth:`Run.load_model` does. A run whose files were damaged from outside is
listed as a broken row (:func:`headline`) and can be deleted (:func:`delete_run`); the other runs
stay usable. The folder itself is :class:`cxrlib.runs.run.Run`.

Liveness: the training process holds an exclusive ``flock`` on ``lock``. The kernel drops it
when the process ends in any way (SIGKILL included), so a status that says ``running`` while
the lock is free means the process died: :meth:`Run.status` then reports ``failed`` with
``resumable`` set when a ``best.keras`` checkpoint exists.
"""
from __future__ import annotations

import os
import shutil
import uuid
from typing import Any

from cxrlib.core import paths
from cxrlib.core.classes import task_classes
from cxrlib.core.config import RunConfig, run_id
from cxrlib.core.fsutil import write_json_atomic
from cxrlib.data.splits import val_is_test
from cxrlib.runs.locks import RunLock
from cxrlib.runs.queue_store import describe
from cxrlib.runs.run import TERMINAL_STATES, Run, RunFileError, now_iso

HEADLINE_COLUMNS = ("id", "state", "task", "model", "mode", "split", "epochs", "accuracy",
                    "macro_auc", "created")


class RunNotFound(KeyError):
    """No run (or more than one) matches an id or prefix."""


class RunBusy(RuntimeError):
    """A run that is being trained right now cannot be deleted (cancel it first)."""


def create_run(cfg: RunConfig, fingerprint: str, *, folder=None) -> Run:
    """Make the run folder with config.json (kept when it already exists) and return the Run.

    ``folder`` puts it elsewhere than the registry (a non-chief worker's scratch copy of a
    multi-worker run, see :func:`worker_run`); its config.json still names the run's id.
    """
    rid = run_id(cfg, fingerprint)
    folder = paths.runs_dir() / rid if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    run = Run(folder)
    if not (folder / "config.json").exists():
        write_json_atomic(folder / "config.json", {
            "run_id": rid, "config": cfg.to_dict(), "fingerprint": fingerprint,
            "classes": list(task_classes(cfg.data.task)), "created": now_iso(),
            "val_is_test": val_is_test(cfg.split)})
    return run


def worker_run(cfg: RunConfig, fingerprint: str, index: int) -> Run:
    """The scratch run folder of worker ``index`` (not the chief) of a multi-worker run:
    ``models/workers/<run id>/worker-<index>/``, outside the registry (never listed). Its
    status.json is that worker's own progress; the chief writes the run itself."""
    folder = paths.workspace() / "models" / "workers" / run_id(cfg, fingerprint) / f"worker-{index}"
    return create_run(cfg, fingerprint, folder=folder)


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
        RunNotFound: (a KeyError) when no run, or more than one, matches, and for a path: a run
            is only ever a folder of the workspace's runs folder, never one a path reaches.
    """
    key = str(run_id_or_prefix).strip()
    root = paths.runs_dir()
    if key in (".", "..") or "/" in key or os.sep in key or "\0" in key:
        raise RunNotFound(f"{key!r} is not a run id: a run id is the name of a run's folder in "
                          f"{root}, not a path")
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


def delete_run(run: Run) -> str | None:
    """Delete a run folder (a finished, failed, cancelled or damaged run).

    The folder is first renamed to a hidden name (so no reader sees it half-deleted), then removed.
    A run "folder" that is a symbolic link is the link only: the link is removed and the folder
    it points to is left as it is (it may be the user's, or another run's).

    Returns:
        None when the folder was deleted; the link's target when only the link was removed.

    Raises:
        RunBusy: a process is training the run (or about to): cancel it first.
    """
    with RunLock(run.folder / "start.lock"):
        if run.is_alive() or run.status().get("state") not in (*TERMINAL_STATES, "broken"):
            raise RunBusy(f"run {run.id} is {run.status().get('state')}: cancel it before deleting it")
        if run.folder.is_symlink():
            target = os.path.realpath(run.folder)
            run.folder.unlink()
            return target
        trash = run.folder.with_name(f".deleted-{run.id}-{uuid.uuid4().hex[:8]}")
        run.folder.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)
    return None


def headline(run: Run) -> dict[str, Any]:
    """One row of the runs table (:data:`HEADLINE_COLUMNS`, plus ``problem`` and ``queue``: the
    place of a run that waits for a slot, ``"queued, position k of n"``, else None).

    A damaged run gives a row with ``state="broken"``, ``problem`` naming the damaged file, and
    ``None`` where its files cannot say; it never raises.
    """
    problem = run.problem()
    if problem is not None:
        row = dict.fromkeys(HEADLINE_COLUMNS)
        return {**row, "id": run.id, "state": "broken", "created": run.created, "problem": problem,
                "queue": None}
    cfg = run.config
    status = run.status()
    # Test metrics only: a running run's status metrics are training-batch figures.
    metrics = run.metrics() or (status.get("metrics") if status.get("state") == "done" else None) or {}
    auc = metrics.get("macro_auc")
    if auc is None and isinstance(metrics.get("auc"), dict):
        auc = metrics["auc"].get("macro")
    epochs = f"{status.get('epoch', 0) or 0}/{status.get('epochs', cfg.train.epochs)}"
    return {"id": run.id, "state": status.get("state", "?"), "task": cfg.data.task,
            "model": cfg.model.label, "mode": cfg.train.mode, "split": cfg.split.kind,
            "epochs": epochs, "accuracy": metrics.get("accuracy"), "macro_auc": auc,
            "created": run.created, "problem": None,
            "queue": describe(run.id) if status.get("state") == "queued" else None}


__all__ = ["HEADLINE_COLUMNS", "Run", "RunBusy", "RunFileError", "RunNotFound", "create_run",
           "delete_run", "find_run", "get_run", "headline", "list_runs", "run_id"]
