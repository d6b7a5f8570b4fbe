"""Reviews in an embedded SQLite database in the workspace (``reviews.sqlite``).

Why it can be trusted with what reviewers type:

- **Append only.** A review is never updated or deleted; reviewing a film again adds a row,
  and the statistics use each reviewer's latest review of a film (:func:`latest_reviews`).
  So no rerun, refresh or second tab can overwrite an earlier verdict.
- **One transaction per review.** Each save is ``BEGIN IMMEDIATE; INSERT; COMMIT``: a save
  is either entirely on disk or not at all, and the caller hears which (a failed save raises
  :class:`ReviewStoreError`; the app's form keeps its values).
- **Concurrent writers wait, they do not fail.** WAL mode lets readers read while one writer
  writes; writers queue on SQLite's lock through a busy timeout (:data:`BUSY_TIMEOUT_S`).
  ``synchronous`` stays at its FULL default: a committed review survives a power cut.
- **Idempotent saves.** ``review_id`` is unique and a repeated id is ignored
  (``ON CONFLICT DO NOTHING``, which, unlike ``INSERT OR IGNORE``, still rejects rows that break
  a CHECK), so a double click stores one review.
- **A versioned schema.** ``schema_version`` holds one row; opening the store applies the
  missing migrations of :data:`MIGRATIONS` inside one write transaction, so two processes
  opening a new file at once make it once, and a file from a newer version is refused.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

import pandas as pd

from cxrlib.core import paths
from cxrlib.core.csvio import csv_text
from cxrlib.core.outputs import UserOutput
from cxrlib.reviews.records import HEATMAP_LOCATIONS, REVIEW_COLUMNS, Review, now_iso

FILE_NAME = "reviews.sqlite"
BUSY_TIMEOUT_S = 30.0

_LOCATIONS_SQL = ", ".join(f"'{code}'" for code in HEATMAP_LOCATIONS)
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        f"""CREATE TABLE IF NOT EXISTS reviews (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            review_id TEXT NOT NULL UNIQUE,
            run_id TEXT NOT NULL,
            rel_path TEXT NOT NULL,
            film_digest TEXT,
            reviewer TEXT NOT NULL,
            label TEXT,
            prediction TEXT,
            agrees_with_label INTEGER NOT NULL CHECK (agrees_with_label IN (0, 1)),
            agrees_with_prediction INTEGER NOT NULL CHECK (agrees_with_prediction IN (0, 1)),
            heatmap_location TEXT NOT NULL CHECK (heatmap_location IN ({_LOCATIONS_SQL})),
            confidence INTEGER NOT NULL CHECK (confidence BETWEEN 1 AND 5),
            comment TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS reviews_by_film ON reviews (run_id, rel_path)",
        "CREATE INDEX IF NOT EXISTS reviews_by_reviewer ON reviews (run_id, reviewer)",
    ),
    # Who logged in (issue 22): the OIDC issuer and subject. Earlier reviews keep every value
    # they had and read NULL here (a typed name, not a login).
    2: (
        "ALTER TABLE reviews ADD COLUMN issuer TEXT",
        "ALTER TABLE reviews ADD COLUMN subject TEXT",
        "CREATE INDEX IF NOT EXISTS reviews_by_login ON reviews (issuer, subject)",
    ),
}
"""Schema migrations: version -> statements that bring the previous version to it."""
SCHEMA_VERSION = max(MIGRATIONS)


class ReviewStoreError(RuntimeError):
    """The review database cannot be used (busy too long, damaged, or from a newer version)."""


def default_path() -> Path:
    """``<workspace>/reviews.sqlite`` (:func:`cxrlib.core.paths.workspace`)."""
    return paths.workspace() / FILE_NAME


class ReviewStore:
    """The review database at ``path`` (created, with its schema, on first use).

    Keeps one connection, used by one thread at a time, so one store may be shared by threads
    (the app keeps one per process); processes each have their own and SQLite's lock orders them.

    Args:
        path: the SQLite file (default :func:`default_path`).
        busy_timeout_s: how long a write waits for another writer before giving up.

    Attributes:
        path: the database file.
        journal_mode: what SQLite accepted (``"wal"``; another mode on file systems without
            shared memory, where SQLite refuses WAL).

    Raises:
        ReviewStoreError: the file is not a database, or was made by a newer schema.
    """

    def __init__(self, path: str | Path | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path) if path is not None else default_path()
        self.busy_timeout_s = float(busy_timeout_s)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple | None = None
        self.journal_mode = ""
        with self._connect():
            pass  # opens the file and makes its schema

    # -- connections ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """The store's connection, for this thread alone while the block runs.

        One connection is kept open: closing the last connection of a WAL database checkpoints
        and deletes the WAL, which made every save ~4× slower. It is reopened in a forked child
        and when the file was removed or replaced (never write to a deleted file's inode).
        """
        with self._lock:
            if self._conn is None or self._identity != self._file_identity():
                self._open()
            try:
                yield self._conn
            except sqlite3.DatabaseError as exc:
                self.close()
                raise ReviewStoreError(f"the review database {self.path} failed: {exc}") from exc

    def _file_identity(self) -> tuple | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return os.getpid(), st.st_dev, st.st_ino

    def _open(self) -> None:
        if self._identity is not None and self._identity[0] != os.getpid():
            self._conn = None  # the parent's connection: never use or close it in a forked child
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: no implicit transactions; each write says BEGIN IMMEDIATE,
            # taking the write lock up front (a deferred one could fail on its upgrade).
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            self.journal_mode = _set_wal(conn, self.busy_timeout_s)
            self._conn, self._identity = conn, self._file_identity()
            _ensure_schema(conn, self.path)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise ReviewStoreError(f"cannot open the review database {self.path}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
            self._conn, self._identity = None, None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the store's connection (see :func:`_transaction`)."""
        with self._connect() as conn, _transaction(conn):
            yield conn

    def schema_version(self) -> int:
        """The schema version stored in the file."""
        with self._connect() as conn:
            return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])

    # -- writes and reads -----------------------------------------------------------------------
    def add(self, review: Review) -> bool:
        """Save one review in its own transaction.

        Returns:
            True when it was stored, False when a review with its ``review_id`` already was.

        Raises:
            ReviewStoreError: it could not be saved (e.g. the database stayed busy for
                ``busy_timeout_s``); nothing of it is stored then.
        """
        row = review.as_row()
        columns = ", ".join(REVIEW_COLUMNS)
        marks = ", ".join("?" for _ in REVIEW_COLUMNS)
        with self._write() as conn:
            cur = conn.execute(f"INSERT INTO reviews ({columns}) VALUES ({marks}) "
                               "ON CONFLICT (review_id) DO NOTHING",
                               [row[c] for c in REVIEW_COLUMNS])
            return cur.rowcount == 1

    def reviews(self, run_id: str | None = None, *, rel_path: str | None = None,
                reviewer: str | None = None) -> pd.DataFrame:
        """Every stored review (optionally of one run, film or reviewer), oldest first.

        Returns:
            A frame of :data:`REVIEW_COLUMNS`; the agreement columns are booleans.
        """
        where, args = [], []
        for column, value in (("run_id", run_id), ("rel_path", rel_path), ("reviewer", reviewer)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT {', '.join(REVIEW_COLUMNS)} FROM reviews"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY seq", args).fetchall()
        frame = pd.DataFrame(rows, columns=list(REVIEW_COLUMNS))
        for column in ("agrees_with_label", "agrees_with_prediction"):
            frame[column] = frame[column].astype(bool)
        frame["confidence"] = frame["confidence"].astype("int64")
        return frame

    def run_ids(self) -> list[str]:
        """Runs that have at least one review."""
        with self._connect() as conn:
            rows = conn.execute("SELECT DISTINCT run_id FROM reviews ORDER BY run_id")
            return [r[0] for r in rows]

    def export_csv(self, out: str | Path, run_id: str | None = None, *, output=None) -> int:
        """Write the reviews (of one run, or all) to a CSV file atomically.

        Args:
            out: the CSV file.
            run_id: one run's reviews, or ``None`` for all.
            output: the :class:`cxrlib.core.outputs.UserOutput` rules to write by (default: no
                ``--overwrite``: an existing file is refused).

        Returns:
            The number of reviews written.
        """
        frame = self.reviews(run_id)
        (output or UserOutput()).write(out, csv_text(frame, for_people=True))
        return len(frame)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create or migrate the schema in one write transaction (idempotent; see the module doc)."""
    with _transaction(conn):
        conn.execute("""CREATE TABLE IF NOT EXISTS schema_version (
            id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL,
            updated TEXT NOT NULL)""")
        found = conn.execute("SELECT version FROM schema_version").fetchone()
        current = found[0] if found else 0
        if current > SCHEMA_VERSION:
            raise ReviewStoreError(
                f"{path} has review schema version {current}, newer than this CXR "
                f"Explorer's {SCHEMA_VERSION}: update CXR Explorer to read it")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        if current < SCHEMA_VERSION:
            conn.execute("INSERT INTO schema_version (id, version, updated) VALUES (1, ?, ?) "
                         "ON CONFLICT (id) DO UPDATE SET version = excluded.version, "
                         "updated = excluded.updated", (SCHEMA_VERSION, now_iso()))


def latest_reviews(reviews: pd.DataFrame) -> pd.DataFrame:
    """Each reviewer's latest review of each film (of each run): the verdicts statistics use."""
    keys = ["run_id", "rel_path", "reviewer"]
    return reviews.drop_duplicates(keys, keep="last").reset_index(drop=True)


def _set_wal(conn: sqlite3.Connection, timeout_s: float) -> str:
    """Switch the file to WAL (persistent). The switch needs the file to itself for a moment and
    can report busy without waiting on the busy handler, so retry until the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise ReviewStoreError(f"the review database stayed busy: {exc}") from exc
            time.sleep(0.02)
