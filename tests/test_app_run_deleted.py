"""A run deleted meanwhile (``cxrlib delete RUN`` by another user, or the Training page's delete
in another tab) while a page shows it, or compares with it (hunt 2, BROKE 10). Every page used
to switch to another run without a word, and a review saved for the deleted run was stored but
never said so. Now the page the user is on says it once, and the review's save says where the
review went. Copies of the tiny run in a fresh workspace: deleting them touches no other test."""
from __future__ import annotations

import shutil

import pytest
from app_fixtures import app, app_workspace, texts, trained_run  # noqa: F401

from cxrlib.reviews import ReviewStore
from cxrlib.runs import registry
from cxrlib.runs.run import Run


@pytest.fixture
def copies(tmp_path, trained_run, monkeypatch):
    """Three copies of the tiny run in a fresh workspace, under other short ids."""
    runs_dir = tmp_path / "ws" / "models" / "runs"
    monkeypatch.setenv("CXR_WORKSPACE", str(tmp_path / "ws"))
    made = []
    for prefix in ("aaaa", "cccc", "eeee"):
        folder = runs_dir / (prefix + trained_run.id[len(prefix):])
        shutil.copytree(trained_run.folder, folder)
        made.append(Run(folder))
    return made


def _delete(run) -> None:
    registry.delete_run(registry.get_run(run.id))  # what ``cxrlib delete RUN`` does


def _button(at, label: str):
    return [b for b in at.button if b.label == label][0]


def _gone(at, run) -> list[str]:
    return [w for w in texts(at.warning) if f"Run `{run.id[:8]}` was deleted meanwhile" in w]


def test_explain_says_its_run_was_deleted_once(app, copies):
    a = copies[0]
    at = app("views/explain.py", run_id=a.id)
    _delete(a)
    _button(at, "Next film").click().run()
    assert not at.exception, [e.value for e in at.exception]
    now = at.session_state["run_id"]
    assert now != a.id
    notes = _gone(at, a)
    assert len(notes) == 1 and f"showing run `{now[:8]}` instead" in notes[0]
    at.run()
    assert not _gone(at, a)  # once


def test_evaluation_says_the_compared_run_was_deleted(app, copies):
    a, c = copies[0], copies[1]
    at = app("views/evaluation.py", run_id=a.id)
    at.selectbox(key="ev_other").set_value(c.id).run()
    assert at.query_params.get("compare") == c.id
    _delete(c)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    notes = _gone(at, c)
    assert len(notes) == 1 and "no longer compared" in notes[0]
    assert at.session_state["run_id"] == a.id and "compare" not in at.query_params
    at.run()
    assert not _gone(at, c)


def test_a_review_saved_for_a_deleted_run_says_where_it_went(app, copies):
    a = copies[0]
    at = app("views/review.py", run_id=a.id, rv_blind=False)
    at.text_input(key="rv_reviewer_name").input("Dora")
    _button(at, "Start reviewing").click().run()
    radios = {r.label.split(" (")[0]: r for r in at.radio}
    radios["Agree with the label"].set_value(True)
    radios["Agree with the prediction"].set_value(False)
    radios["Where does the heatmap fall?"].set_value("lung_findings")
    at.text_area[0].input("my careful reading")
    _delete(a)
    _button(at, "Save review").click().run()
    assert not at.exception, [e.value for e in at.exception]
    stored = ReviewStore().reviews(a.id)
    assert list(stored["comment"]) == ["my careful reading"]  # kept: exportable by design
    said = [s for s in texts(at.success) if "deleted meanwhile" in s]
    assert len(said) == 1 and a.id[:8] in said[0] and f"reviews export {a.id}" in said[0]
    assert _gone(at, a)  # and the page says which run it shows now
