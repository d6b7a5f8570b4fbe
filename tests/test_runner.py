"""Background runs: cache hits without TensorFlow, one process per run, cancel, crashes.

Most tests inject a fake trainer (``fake_execute`` below, through ``CXR_TRAIN_ENTRY``) so a
background process costs a Python start-up, not a TensorFlow import. One test trains a real
tiny run in the background and cancels it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cxrlib.core import paths

from cxrlib.runs import runner
from cxrlib.core.config import RunConfig
from cxrlib.core.processes import pid_alive
from cxrlib.runs.locks import lock_is_held
from cxrlib.runs.registry import create_run, find_run, get_run

THIS_FILE = Path(__file__).resolve()


# ----------------------------------------------------------------------------- fake trainer
def fake_execute(run, *, cancel_check) -> None:
    """Stands in for cxrlib.training.engine.execute in the background process (``FAKE_TRAIN`` picks how)."""
    with open(run.folder / "trainers.txt", "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    how = os.environ.get("FAKE_TRAIN", "wait")
    if how == "fail":
        raise RuntimeError("synthetic failure")
    if how == "checkpoint":
        run.model_path.write_bytes(b"fake checkpoint")
    for step in range(100000):
        if how != "ignore_cancel" and cancel_check():
            run.write_status(state="cancelled", message="cancelled by request")
            return
        run.write_status(state="running", epoch=1, epochs=3, step=step, steps=100000)
        if how == "finish" and step == 2:
            run.write_metrics({"accuracy": 1.0, "macro_auc": 1.0})
            run.write_status(state="done")
            return
        time.sleep(0.05)


@pytest.fixture
def fake_trainer(monkeypatch, workspace):
    """Background processes run :func:`fake_execute`; returns a setter for its behaviour."""
    monkeypatch.setenv(runner.TRAIN_ENTRY_ENV, f"{THIS_FILE}:fake_execute")
    monkeypatch.setenv("FAKE_TRAIN", "wait")
    return lambda how: monkeypatch.setenv("FAKE_TRAIN", how)


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def trainers(run) -> list[str]:
    path = run.folder / "trainers.txt"
    return path.read_text().split() if path.exists() else []


CFG = RunConfig()


# ------------------------------------------------------------------------------------ tests
def test_finished_run_is_returned_without_training_or_tensorflow(workspace, tmp_path):
    run = create_run(CFG, "fp-done")
    run.write_status(state="done", epoch=3, epochs=3)
    run.write_metrics({"accuracy": 0.9})
    script = textwrap.dedent("""
        import json, sys, time
        t0 = time.perf_counter()
        from cxrlib.runs import runner
        from cxrlib.core.config import RunConfig
        run = runner.start(RunConfig(), fingerprint="fp-done")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print(json.dumps({"id": run.id, "state": run.status()["state"], "heavy": heavy,
                          "seconds": time.perf_counter() - t0}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(paths.PROJECT_ROOT)))
    result = json.loads(out.stdout)
    assert result == {**result, "id": run.id, "state": "done", "heavy": []}
    assert result["seconds"] < 5
    assert not run.log_path.exists() and not (run.folder / "trainers.txt").exists()


def test_concurrent_starts_in_threads_make_one_process_and_cancel_stops_it(fake_trainer):
    barrier = threading.Barrier(6)
    runs = []

    def ask():
        barrier.wait()
        runs.append(runner.start(CFG, fingerprint="fp-threads"))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run = runs[0]
    assert all(r == run for r in runs)
    wait_for(lambda: trainers(run) and run.is_alive(), what="the trainer")
    pid = run.pid
    assert runner.start(CFG, fingerprint="fp-threads").pid == pid  # attaches
    time.sleep(0.3)
    assert trainers(run) == [str(pid)]
    status = runner.cancel(run.id, grace_s=10)
    assert status["state"] == "cancelled" and status["message"] == "cancelled by request"
    assert not run.is_alive()
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the process to exit")


def test_concurrent_starts_in_processes_make_one_process(fake_trainer):
    script = ("from cxrlib.runs import runner; from cxrlib.core.config import RunConfig; "
              "r = runner.start(RunConfig(), fingerprint='fp-procs'); print(r.pid)")
    env = dict(os.environ, PYTHONPATH=str(paths.PROJECT_ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    pids = {p.communicate(timeout=60)[0].strip() for p in procs}
    run = get_run(create_run(CFG, "fp-procs").id)
    wait_for(lambda: trainers(run) and run.is_alive(), what="the trainer")
    time.sleep(0.3)
    assert len(pids) == 1 and trainers(run) == list(pids)
    runner.cancel(run.id, grace_s=10)


def test_sigkilled_run_is_reported_failed_and_restarts(fake_trainer):
    fake_trainer("checkpoint")
    run = runner.start(CFG, fingerprint="fp-kill")
    wait_for(lambda: trainers(run), what="the trainer")
    pid = run.pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not run.is_alive(), what="lock released")
    status = run.status()
    assert status["state"] == "failed" and status["died"] and status["resumable"]
    assert not lock_is_held(run.lock_path)
    # Asking again restarts it (a new process, attempt 2) and the registry stays consistent.
    fake_trainer("finish")
    again = runner.start(CFG, fingerprint="fp-kill")
    seen: list[str] = []
    final = runner.wait(again, timeout=30, poll_s=0.02, on_status=lambda s: seen.append(s["state"]))
    assert final["state"] == "done" and final["attempt"] == 2
    order = ["queued", "running", "done"]  # states only move forward; polling may skip some
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)
    assert trainers(run)[0] == str(pid) and len(trainers(run)) == 2
    assert runner.start(CFG, fingerprint="fp-kill").pid == final["pid"]  # cache


def test_cancel_escalates_to_sigterm_and_failures_are_recorded(fake_trainer):
    fake_trainer("ignore_cancel")
    run = runner.start(CFG, fingerprint="fp-stubborn")
    wait_for(lambda: trainers(run), what="the trainer")
    status = runner.cancel(run.id, grace_s=0.5, kill_s=10)
    assert status["state"] == "cancelled" and "SIGTERM" in status["message"]
    assert not run.is_alive()

    fake_trainer("fail")
    failing = runner.start(CFG.replace(train=CFG.train.replace(epochs=2)), fingerprint="fp-stubborn")
    final = runner.wait(failing, timeout=30, poll_s=0.1)
    assert final["state"] == "failed" and "synthetic failure" in final["error"]
    assert "RuntimeError" in failing.log_path.read_text()
    assert runner.start(failing.config, fingerprint="fp-stubborn", restart=False).status()["state"] == "failed"


@pytest.mark.slow
def test_real_tiny_run_is_cancelled_by_its_training_loop(workspace, synthetic_dataset, monkeypatch):
    """cxrlib.training.engine.execute under execute_run, in this process (one TensorFlow import shared with
    test_cli); the detached-process mechanics are the same as with the fake trainer above."""
    monkeypatch.delenv(runner.TRAIN_ENTRY_ENV, raising=False)
    cfg = RunConfig().replace(
        data=RunConfig().data.replace(root=str(synthetic_dataset)),
        preprocess=RunConfig().preprocess.replace(size=32),
        model=RunConfig().model.replace(family="small_cnn", weights="random", cnn_filters=(4,)),
        train=RunConfig().train.replace(mode="finetune", epochs=500, batch_size=4))
    seen = []
    trainer = threading.Thread(target=runner.train_foreground, args=(cfg,),
                               kwargs={"on_status": seen.append, "poll_s": 0.1})
    trainer.start()
    try:
        run = wait_for(lambda: find_run(cfg, runner.dataset_fingerprint(cfg)),
                       what="the run folder")
        status = wait_for(lambda: (s := run.status()).get("epoch", 0) >= 2 and s, timeout=120,
                          what="epoch 2")
        assert status["state"] == "running" and status["epochs"] == 500 and run.is_alive()
        # A second request while it trains attaches instead of starting another process.
        assert runner.start(cfg) == run and not run.log_path.exists()
        started = time.monotonic()
        final = runner.cancel(run.id, grace_s=60)
    finally:
        trainer.join(timeout=60)
    assert final["state"] == "cancelled" and time.monotonic() - started < 60
    assert final["message"] == "cancelled by request"  # the training loop stopped itself
    assert not run.is_alive() and seen[-1]["state"] == "cancelled"
    assert any(s.get("step") for s in seen)  # progress reached the caller while training
    assert len(run.split_table()) == 72 and run.leakage["groups_on_several_sides"] == 0


def test_cancelling_a_foreground_run_never_signals_the_users_process_group(fake_trainer, tmp_path):
    """A foreground `train` in a shell job shares its process group with the job's other
    processes (e.g. `| tee log`): a forced cancel must stop the trainer only."""
    fake_trainer("ignore_cancel")
    script = textwrap.dedent(f"""
        import os, subprocess, sys, time
        os.setpgid(0, 0)  # lead a process group, as a shell job's first process does
        sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(tmp_path / 'sibling.pid')!r}, "w").write(str(sibling.pid))
        from cxrlib.core.config import RunConfig
        from cxrlib.runs import runner
        runner.train_foreground(RunConfig(), fingerprint="fp-foreground")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script],
                            env=dict(os.environ, PYTHONPATH=str(paths.PROJECT_ROOT)))
    try:
        run = get_run(create_run(CFG, "fp-foreground").id)
        wait_for(lambda: trainers(run) and run.is_alive(), what="the foreground trainer")
        sibling = int(wait_for(lambda: (tmp_path / "sibling.pid").exists()
                               and (tmp_path / "sibling.pid").read_text(), what="the sibling"))
        assert run.raw_status().get("own_session") is False
        status = runner.cancel(run.id, grace_s=0.5, kill_s=5)
        assert status["state"] in ("cancelled", "failed")
        proc.wait(timeout=20)  # the trainer itself was stopped by the signal...
        assert pid_alive(sibling)  # ...and the job's other process was not touched
        os.kill(sibling, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
