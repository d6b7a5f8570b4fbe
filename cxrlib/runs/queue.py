"""The bounded queue of background work: at most ``CXR_MAX_RUNS`` jobs at once, the rest wait.

A department's server must not start every user's training run as a new process on the same
cores. Every background training run (and the app's audits) therefore goes through one FIFO
queue kept on disk in the workspace (``models/queue/queue.sqlite``), so that it survives a server
restart. A job is a row: ``waiting`` until :func:`dispatch` gives it a free slot, then
``running`` until its process ends. Nothing here polls by itself: :func:`dispatch` is called when
a run is requested (:func:`cxrlib.runs.runner.start`), when a training process ends (it starts the
next one itself), on cancel, and by the app's keeper thread every few seconds, so a restarted
server (or any new process that calls :func:`dispatch`) resumes the queue where it was.

How many slots, and which GPU each gives a training process: :mod:`cxrlib.runs.slots`.

Whether a running job still holds its slot is read from the kernel, not trusted from the table:
a training job holds its run's ``lock`` (or, between its launch and that lock, is a live pid in
``spawn.json``); an audit's owner holds a lock file of its own. A job whose process died (even by
SIGKILL) frees its slot at the next :func:`dispatch`. Changes to the table happen under one
``flock`` (``models/queue/queue.lock``); reads take none.
"""
from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from cxrlib.core.processes import pid_alive
from cxrlib.runs.locks import RunLock, lock_is_held
# The table's names are this module's too (callers use ``queue.jobs()``, ``queue.describe()``).
from cxrlib.runs.queue_store import (KINDS, Job, _db_path, _mutex, _rows, describe,  # noqa: F401
                                     in_queue, jobs, position, queue_dir, run_job, submit,
                                     withdraw)
from cxrlib.runs.run import Run, RunFileError, now_iso
from cxrlib.runs.slots import max_runs, slot_env
from cxrlib.runs.spawn import spawn_training


def cancel_waiting(run: Run) -> bool:
    """Cancel a run that waits for a slot: out of the queue, status ``cancelled``. True when it
    was waiting (a run whose process has started is cancelled by the runner instead).

    Under the run's start lock, as :func:`cxrlib.runs.runner.start` queues it: a start asked
    meanwhile (another session) comes before or after the whole cancel, never between the
    queue and the status (which would say cancelled while the queue holds the run)."""
    if not run.folder.is_dir():
        return False  # deleted meanwhile: nothing waits (the lock must not make its folder again)
    with RunLock(run.folder / "start.lock"):
        if not withdraw(run_job(run)):
            return False
        run.write_status(state="cancelled", message="cancelled while queued", finished=now_iso())
    return True


def _remove(conn: sqlite3.Connection, job: str) -> None:
    conn.execute("DELETE FROM jobs WHERE job = ?", (job,))


# -- liveness ---------------------------------------------------------------------------------
def _holds_slot(job: Job) -> bool:
    """Whether a running job's process is still there (read from locks and pids)."""
    if job.kind == "audit":
        return lock_is_held(Path(job.ref))
    run = Run(job.ref)
    if run.is_alive():
        return True
    try:
        # Launched, not yet holding its lock: the spawned pid is alive and the run still queued.
        return run.raw_status().get("state") == "queued" and pid_alive(run.pid)
    except RunFileError:
        return False


def _may_start(job: Job) -> bool:
    """Whether a waiting job is still wanted: its owner is there (audit), or its run folder still
    says queued, with no cancel asked and no other process training it (train)."""
    if job.kind == "audit":
        return lock_is_held(Path(job.ref))
    run = Run(job.ref)
    if not (run.folder / "config.json").is_file() or run.is_alive():
        return False
    try:
        state = run.raw_status().get("state")
    except RunFileError:
        return False
    if state == "queued" and run.cancel_requested():
        run.write_status(state="cancelled", message="cancelled while queued", finished=now_iso())
        return False
    return state == "queued"


# -- dispatch ---------------------------------------------------------------------------------
def _launch_training(run: Run, env: dict[str, str]) -> None:
    spawn_training(run, extra_env=env)


def dispatch(launch: Callable[[Run, dict[str, str]], None] | None = None) -> list[str]:
    """Free the slots of ended jobs and start waiting jobs, oldest first, while slots are free.

    Args:
        launch: starts a training run's process given its environment (default: the runner's).

    Returns:
        The jobs started now (an audit "starts" when its waiting owner sees its row running).

    Raises:
        ValueError: ``CXR_MAX_RUNS`` is not valid (see :func:`max_runs`).
    """
    if not _db_path().exists():
        return []  # nothing was ever queued in this workspace
    slots = max_runs()
    launch = launch or _launch_training
    started = []
    with _mutex() as conn:
        busy = set()
        for job in _rows(conn):
            if job.state == "running":
                if _holds_slot(job):
                    busy.add(job.slot)
                else:
                    _remove(conn, job.job)
        free = [s for s in range(slots) if s not in busy]
        for job in _rows(conn):
            if job.state != "waiting":
                continue
            if not _may_start(job):
                _remove(conn, job.job)
                continue
            if not free:
                break
            slot = free.pop(0)
            conn.execute("UPDATE jobs SET state = 'running', slot = ?, started = ? WHERE job = ?",
                         (slot, now_iso(), job.job))
            if job.kind == "train":
                try:
                    launch(Run(job.ref), slot_env(slot, slots))
                except OSError as exc:  # e.g. no memory to fork: the run says why, the queue goes on
                    _remove(conn, job.job)
                    Run(job.ref).write_status(state="failed", finished=now_iso(),
                                              error=f"could not start its process: {exc}")
                    free.insert(0, slot)
                    continue
            started.append(job.job)
    return started


def dispatch_quietly() -> list[str]:
    """:func:`dispatch` for callers that must not fail (a training process's exit, a keeper
    thread): a bad ``CXR_MAX_RUNS`` or an unwritable workspace starts nothing."""
    try:
        return dispatch()
    except (ValueError, OSError, sqlite3.Error):
        return []


# -- work that runs in the caller's process (the app's audits) ----------------------------------
@contextmanager
def slot(kind: str = "audit", label: str = "", *, poll_s: float = 0.5,
         on_wait: Callable[[int, int], None] | None = None) -> Iterator[None]:
    """Hold one of the queue's slots for the body of a ``with`` block, waiting in line first.

    The caller's own lock file marks it alive: if its process dies, its row is dropped.

    Args:
        kind: the job kind (``"audit"``).
        label: what the job is, for people reading the queue.
        poll_s: how often to look again while waiting.
        on_wait: called with ``(position, waiting)`` while the job waits.
    """
    job = f"{kind}-{uuid.uuid4().hex[:12]}"
    lock = RunLock(queue_dir() / f"{job}.lock")
    lock.acquire()
    try:
        submit(job, kind, lock.path, label)
        while True:
            dispatch()
            if any(j.job == job and j.state == "running" for j in jobs()):
                break
            where = position(job)
            if on_wait is not None and where is not None:
                on_wait(*where)
            time.sleep(poll_s)
        yield
    finally:
        with _mutex() as conn:
            _remove(conn, job)
        lock.release()
        lock.path.unlink(missing_ok=True)
        dispatch_quietly()


__all__ = ["Job", "cancel_waiting", "describe", "dispatch", "dispatch_quietly", "in_queue", "jobs",
           "position", "queue_dir", "run_job", "slot", "submit", "withdraw"]
