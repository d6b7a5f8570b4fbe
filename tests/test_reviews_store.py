"""The review store: concurrent writers lose nothing, the schema is made once and versioned,
invalid answers never reach the table, a repeated save is stored once, a deleted file is
re-created rather than written into the void, and the CSV export holds exactly the rows."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from cxrlib.reviews import (REVIEW_COLUMNS, SCHEMA_VERSION, Review, ReviewStore, ReviewStoreError,
                            latest_reviews)

ROOT = Path(__file__).resolve().parent.parent

_WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from cxrlib.reviews import Review, ReviewStore
db, who, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
(go.parent / f"ready-{{who}}").touch()  # imports done: only the release is left
while not go.exists():
    time.sleep(0.005)
start = time.time()
store = ReviewStore(db)  # both writers open (and make) the new file at the same moment
for i in range(n):
    store.add(Review(reviewer=who, run_id="run1", rel_path=f"COVID/{{i % 25}}.png",
                     agrees_with_label=i % 2 == 0, agrees_with_prediction=i % 3 == 0,
                     heatmap_location="markers", confidence=1 + i % 5, comment=f"{{who}} {{i}}",
                     review_id=f"{{who}}-{{i}}"))
print(start, time.time())
"""


def review(**over) -> Review:
    fields = dict(reviewer="Dr A", run_id="run1", rel_path="COVID/1.png", agrees_with_label=True,
                  agrees_with_prediction=False, heatmap_location="outside_body", confidence=4,
                  comment="text marker top left", label="COVID-19", prediction="Normal")
    return Review(**{**fields, **over})


def test_two_processes_writing_many_reviews_at_once_lose_nothing(tmp_path):
    db, go, n = tmp_path / "reviews.sqlite", tmp_path / "go", 300
    script = _WRITER.format(root=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(db), who, str(n), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("alice", "bob")]
    # release them together once both interpreters are up and polling (a fixed sleep was not
    # enough on a loaded machine: one writer finished before the other had imported)
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{who}").exists() for who in ("alice", "bob")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    stored = ReviewStore(db).reviews()
    assert len(stored) == 2 * n
    for who in ("alice", "bob"):
        mine = stored[stored["reviewer"] == who]
        # every review, each exactly as written, in the order its writer saved them
        assert mine["review_id"].tolist() == [f"{who}-{i}" for i in range(n)]
        assert mine["comment"].tolist() == [f"{who} {i}" for i in range(n)]
        assert mine["confidence"].tolist() == [1 + i % 5 for i in range(n)]
        assert mine["agrees_with_label"].tolist() == [i % 2 == 0 for i in range(n)]
    # the writers really ran at the same time (else this would prove nothing about concurrency):
    # each one's span of saves overlaps the other's (SQLite's lock may still let one writer
    # commit most of its reviews first: the other waits on the busy timeout meanwhile)
    (start_a, end_a), (start_b, end_b) = (map(float, out.split()) for out, _ in outs)
    assert max(start_a, start_b) < min(end_a, end_b), "the writers did not overlap"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*), MAX(version) FROM schema_version").fetchone() == (
            1, SCHEMA_VERSION)


def test_threads_sharing_one_store_lose_nothing(tmp_path):
    store = ReviewStore(tmp_path / "reviews.sqlite")

    def write(who: str) -> None:
        for i in range(40):
            store.add(review(reviewer=who, rel_path=f"f{i}", review_id=f"{who}-{i}"))

    threads = [threading.Thread(target=write, args=(f"tab{t}",)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = store.reviews("run1")
    assert sorted(stored["review_id"]) == sorted(f"tab{t}-{i}" for t in range(4) for i in range(40))


def test_schema_creation_is_idempotent_and_versioned(tmp_path):
    db = tmp_path / "reviews.sqlite"
    first = ReviewStore(db)
    assert first.journal_mode == "wal" and first.schema_version() == SCHEMA_VERSION
    first.add(review(review_id="kept"))
    with sqlite3.connect(db) as conn:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    for _ in range(3):
        again = ReviewStore(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == schema
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # persistent
    assert again.reviews()["review_id"].tolist() == ["kept"]
    assert {"reviews", "schema_version", "reviews_by_film", "reviews_by_reviewer"} <= {s[1] for s in schema}


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    db = tmp_path / "reviews.sqlite"
    ReviewStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ReviewStoreError, match="newer"):
        ReviewStore(db)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    db = tmp_path / "reviews.sqlite"
    db.write_bytes(b"these are not the reviews you are looking for" * 50)
    with pytest.raises(ReviewStoreError, match="review database"):
        ReviewStore(db)


@pytest.mark.parametrize("bad", [dict(heatmap_location="lungs"), dict(confidence=0),
                                 dict(confidence=6), dict(confidence=True), dict(confidence=2.5),
                                 dict(reviewer="   "), dict(rel_path=""), dict(run_id=""),
                                 dict(agrees_with_label="yes")])
def test_invalid_answers_are_refused(bad):
    with pytest.raises(ValueError):
        review(**bad)


def test_the_table_itself_rejects_invalid_rows(tmp_path):
    """CHECK constraints guard the file too (a save never uses INSERT OR IGNORE, which would
    silently drop such a row)."""
    store = ReviewStore(tmp_path / "reviews.sqlite")
    row = review().as_row()
    for column, value in (("heatmap_location", "chin"), ("confidence", 9),
                          ("agrees_with_label", 2)):
        bad = {**row, column: value, "review_id": f"bad-{column}"}
        with sqlite3.connect(store.path) as conn, pytest.raises(sqlite3.IntegrityError):
            conn.execute(f"INSERT INTO reviews ({', '.join(bad)}) VALUES "
                         f"({', '.join('?' for _ in bad)})", list(bad.values()))
    assert len(store.reviews()) == 0


def test_saving_the_same_review_twice_stores_it_once_and_a_re_review_adds_a_row(tmp_path):
    store = ReviewStore(tmp_path / "reviews.sqlite")
    first = review(review_id="r1", agrees_with_label=False)
    assert store.add(first) is True
    assert store.add(first) is False  # a double click / rerun
    assert store.add(review(review_id="r2", agrees_with_label=True, comment="changed my mind"))
    stored = store.reviews("run1", rel_path="COVID/1.png", reviewer="Dr A")
    assert stored["review_id"].tolist() == ["r1", "r2"]  # the earlier verdict is kept
    latest = latest_reviews(stored)
    assert latest["review_id"].tolist() == ["r2"] and bool(latest["agrees_with_label"].iloc[0])


def test_a_deleted_database_is_made_again_not_written_into_the_void(tmp_path):
    db = tmp_path / "reviews.sqlite"
    store = ReviewStore(db)
    store.add(review(review_id="old"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    store.add(review(review_id="new"))
    assert ReviewStore(db).reviews()["review_id"].tolist() == ["new"]


def test_csv_export_holds_every_review_of_the_run(tmp_path):
    store = ReviewStore(tmp_path / "reviews.sqlite")
    store.add(review(review_id="a", comment='quotes " and, commas\nand a new line'))
    store.add(review(review_id="b", reviewer="Dr B", film_digest="ab12"))
    store.add(review(review_id="other", run_id="run2"))
    out = tmp_path / "reviews.csv"
    assert store.export_csv(out, "run1") == 2
    back = pd.read_csv(out, keep_default_na=False)
    assert list(back.columns) == list(REVIEW_COLUMNS)
    assert back["review_id"].tolist() == ["a", "b"]
    assert back["comment"].iloc[0] == 'quotes " and, commas\nand a new line'
    assert back["film_digest"].tolist() == ["", "ab12"]
    assert back["heatmap_location"].tolist() == ["outside_body"] * 2
    assert store.run_ids() == ["run1", "run2"]
