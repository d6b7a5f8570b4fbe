"""Run registry: ids, folders, status, liveness through the run lock, lookups."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from cxrlib.core import paths
from cxrlib.core.config import RunConfig
from cxrlib.runs.locks import RunLock, lock_is_held
from cxrlib.runs.registry import RunNotFound, create_run, find_run, get_run, headline, list_runs, run_id

ROOT = paths.PROJECT_ROOT


def test_run_id_is_stable_and_follows_config_and_data():
    cfg = RunConfig()
    assert run_id(cfg, "fp1") == run_id(RunConfig(), "fp1")
    assert len(run_id(cfg, "fp1")) == 16
    changed = cfg.replace(train=cfg.train.replace(epochs=3))
    ids = {run_id(cfg, "fp1"), run_id(changed, "fp1"), run_id(cfg, "fp2"),
           run_id(cfg.replace(split=cfg.split.replace(kind="random")), "fp1")}
    assert len(ids) == 4
    # The dataset's location is not part of the identity; its content (fingerprint) is.
    moved = cfg.replace(data=cfg.data.replace(root="/elsewhere"))
    assert run_id(moved, "fp1") == run_id(cfg, "fp1")


def test_create_and_find_runs(workspace):
    cfg = RunConfig().replace(split=RunConfig().split.replace(val_fraction=0.0))
    assert find_run(cfg, "fp") is None and list_runs() == []
    run = create_run(cfg, "fp")
    assert run.folder == paths.runs_dir() / run_id(cfg, "fp")
    record = json.loads((run.folder / "config.json").read_text())
    assert record["fingerprint"] == "fp" and record["run_id"] == run.id
    assert run.config == cfg
    assert run.classes == ("COVID-19", "Normal", "Viral Pneumonia")
    assert run.val_is_test is True
    assert find_run(cfg, "fp") == run
    binary = create_run(cfg.replace(data=cfg.data.replace(task="binary")), "fp")
    assert binary.classes == ("COVID-19", "Normal")
    assert set(list_runs()) == {run, binary}
    assert get_run(run.id) == run and get_run(run.id[:10]) == run
    with pytest.raises(RunNotFound, match="no run"):
        get_run("0123456789abcdef")
    with pytest.raises(KeyError):
        get_run("")


def test_write_status_merges_and_validates(workspace):
    run = create_run(RunConfig(), "fp")
    run.write_status(state="queued")
    run.write_status(epoch=2, epochs=5)
    status = run.raw_status()
    assert status["state"] == "queued" and status["epoch"] == 2 and "updated" in status
    fresh = run.write_status(replace=True, state="done")
    assert "epoch" not in fresh and run.raw_status()["state"] == "done"
    with pytest.raises(ValueError, match="unknown run state"):
        run.write_status(state="finished")
    assert not list(run.folder.glob(".*tmp"))  # atomic writes leave no temporaries


def test_stale_queued_run_without_process_is_failed(workspace):
    run = create_run(RunConfig(), "fp")
    run.write_status(state="queued")
    with RunLock(run.folder / "start.lock"):  # a starter is busy: still queued
        assert run.status()["state"] == "queued"
    status = run.status()
    assert status["state"] == "failed" and status["resumable"] is False
    assert run.raw_status()["state"] == "queued"  # reading never rewrites the file


HOLDER = textwrap.dedent("""
    import sys, time
    from cxrlib.runs.locks import RunLock
    from cxrlib.runs.run import Run
    run = Run(sys.argv[1])
    lock = RunLock(run.lock_path)
    assert lock.acquire(timeout=5)
    run.write_status(state="running", pid=__import__("os").getpid(), epoch=1, epochs=9)
    print("ready", flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("checkpoint", [False, True])
def test_sigkilled_training_process_leaves_a_readable_failed_run(workspace, checkpoint):
    run = create_run(RunConfig(), "fp")
    if checkpoint:
        run.model_path.write_bytes(b"checkpoint")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run.folder)], stdout=subprocess.PIPE,
                            env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert run.is_alive() and lock_is_held(run.lock_path)
        assert run.status()["state"] == "running"
        # The lock is exclusive: nobody else can take it while the trainer lives.
        assert not RunLock(run.lock_path).acquire(timeout=0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not run.is_alive()
    status = run.status()
    assert status["state"] == "failed" and status["died"] is True
    assert status["resumable"] is checkpoint
    assert "process died" in status["error"] and str(proc.pid) in status["error"]
    assert status["epoch"] == 1  # progress so far is still there
    lock = RunLock(run.lock_path)
    assert lock.acquire(timeout=1)  # released by the kernel
    lock.release()


def test_artifacts_headline_and_leakage(workspace):
    run = create_run(RunConfig(), "fp")
    run.write_status(state="done", epoch=4, epochs=4)
    run.write_metrics({"accuracy": 0.9, "auc": {"macro": 0.97, "micro": 0.98}})
    run.write_history(pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5]}))
    table = pd.DataFrame({"rel_path": ["a", "b", "c"], "split": ["train", "test", "test"],
                          "label": ["Normal"] * 3, "patient_id": ["p1", "p1", "p2"],
                          "group_id": ["p1", "p1", "p2"]})
    counts = run.write_split(table)
    assert counts["patients_on_several_sides"] == 1 and run.leakage == counts
    assert run.split_table()["patient_id"].tolist() == ["p1", "p1", "p2"]
    assert run.history()["loss"].tolist() == [1.0, 0.5]
    row = headline(run)
    assert (row["state"], row["accuracy"], row["macro_auc"], row["epochs"]) == ("done", 0.9, 0.97, "4/4")
    assert run.predictions().empty
    with pytest.raises(FileNotFoundError):
        run.load_model()


def test_lock_probe_is_momentary():
    """A reader probing the lock must not keep it: the trainer's retry then succeeds."""
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "lock"
    assert not lock_is_held(path)
    holder = RunLock(path)
    start = time.monotonic()
    assert holder.acquire(timeout=1) and time.monotonic() - start < 0.5
    assert lock_is_held(path)
    holder.release()
    assert not lock_is_held(path)


def test_new_run_without_status_is_starting_while_a_starter_holds_the_start_lock(workspace):
    run = create_run(RunConfig(), "fp")  # folder made, status.json not yet written
    with RunLock(run.folder / "start.lock"):
        assert run.status() == {} and run.state == "queued"
    assert run.status()["state"] == "failed"  # nobody is starting it any more


@pytest.mark.parametrize("spelling", ["absolute", "dotdot", "dot"])
def test_a_run_id_is_a_name_never_a_path(workspace, tmp_path, spelling):
    """Found by the hostile hunt: ``delete /any/folder`` (or ``../../folder``) deleted any folder
    holding a config.json and a status.json, the user's files with it, and said "deleted run";
    ``cancel`` wrote into it. ``get_run`` joined the runs folder with whatever it was given."""
    victim = tmp_path / "thesis"
    victim.mkdir()
    (victim / "config.json").write_text("{}")
    (victim / "status.json").write_text("x")
    (victim / "thesis.tex").write_text("mine")
    runs = paths.runs_dir()
    runs.mkdir(parents=True, exist_ok=True)
    key = {"absolute": str(victim), "dotdot": os.path.relpath(victim, runs), "dot": "."}[spelling]
    if spelling == "dot":  # the runs folder itself, made to look like a run
        (runs / "config.json").write_text("{}")
    with pytest.raises(RunNotFound, match="is not a run id"):
        get_run(key)
    for command in ("delete", "cancel"):
        done = subprocess.run([sys.executable, "-m", "cxrlib", command, key], cwd=ROOT,
                              capture_output=True, text=True, env=dict(os.environ))
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"error: {key!r} is not a run id: a run id is the name of a run's folder in {runs}, "
            "not a path"], done.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["config.json", "status.json",
                                                        "thesis.tex"]
    assert (victim / "status.json").read_text() == "x"
