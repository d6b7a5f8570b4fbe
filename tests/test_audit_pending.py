"""The app's audits not yet ended, on disk (cxrlib.audit.pending): what a restarted server reads."""
from __future__ import annotations


def test_requests_round_trip_oldest_first_and_damaged_files_are_dropped(tmp_path, monkeypatch):
    from cxrlib.audit import pending

    monkeypatch.setenv("CXR_WORKSPACE", str(tmp_path))
    options = {"external": None, "max_films": 200, "method": "xgradcam", "adversarial": 0.0,
               "masks": "/data/lungs"}
    pending.remember(("stamp-a", None, 200), "aaaa", "/data/cxr3", "3class", options)
    pending.remember(("stamp-b", None, 50), "bbbb", "/data/other", "binary", {})
    folder = tmp_path / "models" / "queue" / "audits"
    assert folder == pending.pending_dir()
    # the same key names the same file: asked again, it is one request, not two, asked last
    pending.remember(("stamp-a", None, 200), "aaaa", "/data/cxr3", "3class", options)
    (folder / "damaged.json").write_text('{"run": "cccc", "root": "/x"')  # cut short
    (folder / "partial.json").write_text('{"run": "dddd", "root": "/x", "task": "3class"}')
    (folder / "wrong.json").write_text('["run", "root", "task", "options"]')
    found = pending.pending()
    assert [(r["run"], r["root"], r["task"], r["options"]) for r in found] == [
        ("bbbb", "/data/other", "binary", {}), ("aaaa", "/data/cxr3", "3class", options)]
    assert sorted(p.name for p in folder.iterdir()) == sorted(r["file"].name for r in found)
    pending.forget(("stamp-a", None, 200))
    pending.forget(("never", "asked"))  # nothing to remove: no error
    assert [r["run"] for r in pending.pending()] == ["bbbb"]


def test_a_request_counts_its_resumes_and_an_older_file_counts_none(tmp_path, monkeypatch):
    from cxrlib.audit import pending

    monkeypatch.setenv("CXR_WORKSPACE", str(tmp_path))
    pending.remember(("k",), "aaaa", "/data/cxr3", "3class", {}, resumes=2)
    older = pending.pending_dir() / "older.json"  # written before requests counted their resumes
    older.write_text('{"run": "bbbb", "root": "/x", "task": "3class", "options": {}, '
                     '"asked": "9999"}')
    assert [(r["run"], r["resumes"]) for r in pending.pending()] == [("aaaa", 2), ("bbbb", 0)]
