"""Damaged run files: a truncated config.json, status.json or metrics.json of one run is a broken
row naming the run and the file; every other run stays usable; the damaged run can be deleted."""
from __future__ import annotations

import json

import pytest

from cxrlib.cli import main
from cxrlib.core.config import RunConfig, TrainConfig
from cxrlib.runs.registry import RunBusy, create_run, delete_run, get_run, headline, list_runs


def _done_run(epochs: int):
    run = create_run(RunConfig(train=TrainConfig(epochs=epochs)), "fp-files")
    run.write_status(state="done", epoch=epochs, epochs=epochs)
    run.write_metrics({"accuracy": 0.5, "macro_auc": 0.75})
    return run


@pytest.mark.parametrize("damaged", ["config.json", "status.json", "metrics.json"])
def test_a_truncated_run_file_is_a_broken_row_and_the_others_stay_usable(workspace, capsys, damaged):
    good, bad = _done_run(3), _done_run(4)
    path = bad.folder / damaged
    path.write_text(path.read_text()[:17])  # truncated mid-way: invalid JSON

    assert {r.id for r in list_runs()} == {good.id, bad.id}
    rows = {r["id"]: r for r in map(headline, list_runs())}
    assert rows[bad.id]["state"] == "broken" and damaged in rows[bad.id]["problem"]
    assert rows[good.id]["state"] == "done" and rows[good.id]["accuracy"] == 0.5
    if damaged == "status.json":
        assert bad.status()["state"] == "broken" and bad.status()["damaged"] == "status.json"

    assert main(["runs"]) == 0
    out, err = capsys.readouterr()
    assert good.id in out and bad.id in out and "broken" in out
    assert f"run {bad.id}: {damaged} is damaged" in err
    assert main(["runs", "--json"]) == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[bad.id]["state"] == "broken" and listed[good.id]["macro_auc"] == 0.75

    assert main(["delete", bad.id]) == 0
    assert not bad.folder.exists() and [r.id for r in list_runs()] == [good.id]


def test_runs_json_is_strict_json_without_nan(workspace, capsys):
    run = _done_run(2)
    run.write_metrics({"accuracy": 0.5, "macro_auc": float("nan")})
    assert main(["runs", "--json"]) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text and json.loads(text)[0]["macro_auc"] is None


def test_a_running_run_cannot_be_deleted(workspace):
    from cxrlib.runs.locks import RunLock

    run = create_run(RunConfig(), "fp-busy")
    run.write_status(state="running", epoch=1, epochs=5)
    lock = RunLock(run.lock_path)
    assert lock.acquire()
    try:
        with pytest.raises(RunBusy, match="cancel it"):
            delete_run(get_run(run.id))
        assert run.folder.exists()
    finally:
        lock.release()
