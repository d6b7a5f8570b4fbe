"""The queue's table (``models/queue/queue.sqlite``): its rows, who waits where, and the one
writer at a time. What runs next, and starting it: :mod:`cxrlib.runs.queue`. Kept apart so
that a run's status (:mod:`cxrlib.runs.run`) can ask whether it is waiting in the queue without
importing the dispatcher, which starts runs."""
from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

from cxrlib.core import paths
from cxrlib.core.clock import now_iso
from cxrlib.runs.locks import RunLock

KINDS = ("train", "audit")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,  -- FIFO order
    job      TEXT NOT NULL UNIQUE,               -- a run id, or 'audit-<hex>'
    kind     TEXT NOT NULL,                      -- 'train' or 'audit'
    ref      TEXT NOT NULL,                      -- train: the run folder; audit: its owner's lock file
    state    TEXT NOT NULL DEFAULT 'waiting',    -- 'waiting' or 'running'
    slot     INTEGER,                            -- which slot (GPU) a running job holds
    label    TEXT NOT NULL DEFAULT '',
    enqueued TEXT NOT NULL,
    started  TEXT
)
"""


class Job(NamedTuple):
    """One row of the queue."""

    seq: int
    job: str
    kind: str
    ref: str
    state: str
    slot: int | None
    label: str
    enqueued: str
    started: str | None


# -- storage ----------------------------------------------------------------------------------
def queue_dir() -> Path:
    """``models/queue/`` in the workspace: the table, its lock and audits' lock files."""
    return paths.workspace() / "models" / "queue"


def _db_path() -> Path:
    return queue_dir() / "queue.sqlite"


@contextmanager
def _connect(*, write: bool) -> Iterator[sqlite3.Connection | None]:
    """A connection; None for a reader when the queue was never made (nothing to read)."""
    path = _db_path()
    if not write and not path.exists():
        yield None
        return
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        if write:
            conn.execute(_SCHEMA)
        yield conn
    finally:
        conn.close()


@contextmanager
def _mutex() -> Iterator[sqlite3.Connection]:
    """The queue's one writer at a time, across threads and processes."""
    queue_dir().mkdir(parents=True, exist_ok=True)
    with RunLock(queue_dir() / "queue.lock"), _connect(write=True) as conn:
        yield conn


def _rows(conn: sqlite3.Connection | None) -> list[Job]:
    if conn is None:
        return []
    try:
        return [Job(*row) for row in conn.execute(
            "SELECT seq, job, kind, ref, state, slot, label, enqueued, started FROM jobs ORDER BY seq")]
    except sqlite3.OperationalError:  # the table is not there yet
        return []


def jobs() -> list[Job]:
    """Every job of the queue, running and waiting, in FIFO order."""
    with _connect(write=False) as conn:
        return _rows(conn)


def run_job(run) -> str:
    """The queue's name of a training run: its id; a multi-worker run's scratch copy on a worker
    (``models/workers/<run id>/worker-<i>``) is ``<run id>/worker-<i>``, so runs never share one."""
    try:
        in_registry = run.folder.parent.resolve() == paths.runs_dir().resolve()
    except OSError:
        in_registry = True
    return run.id if in_registry else f"{run.folder.parent.name}/{run.id}"


def in_queue(job: str) -> bool:
    """Whether ``job`` (a run id) has a row, waiting or just launched. Never raises."""
    try:
        return any(j.job == job for j in jobs())
    except (sqlite3.Error, OSError):
        return False


def position(job: str) -> tuple[int, int] | None:
    """``(k, n)``: ``job`` is k-th of the n waiting jobs; None when it is not waiting."""
    try:
        waiting = [j.job for j in jobs() if j.state == "waiting"]
    except (sqlite3.Error, OSError):
        return None
    return (waiting.index(job) + 1, len(waiting)) if job in waiting else None


def describe(job: str) -> str | None:
    """``"queued, position k of n"`` for a waiting job, else None (what pages and ``runs`` show)."""
    where = position(job)
    return None if where is None else f"queued, position {where[0]} of {where[1]}"


def submit(job: str, kind: str, ref: str | os.PathLike, label: str = "") -> None:
    """Put ``job`` at the end of the queue (a job waiting in it keeps its place).

    The caller knows that no process runs ``job`` now (the runner checks under the run's start
    lock), so a ``running`` row of it is a process that died unseen: it is replaced.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; choose from {KINDS}")
    with _mutex() as conn:
        conn.execute("DELETE FROM jobs WHERE job = ? AND state = 'running'", (job,))
        conn.execute("INSERT OR IGNORE INTO jobs (job, kind, ref, label, enqueued) VALUES (?,?,?,?,?)",
                     (job, kind, str(ref), label, now_iso()))


def withdraw(job: str) -> bool:
    """Take a *waiting* job out of the queue; True when it was waiting (a running one stays)."""
    with _mutex() as conn:
        return conn.execute("DELETE FROM jobs WHERE job = ? AND state = 'waiting'", (job,)).rowcount > 0
