"""The bounded queue of background work (issue 22, section 4): at most ``CXR_MAX_RUNS`` runs at
once, the rest wait in FIFO order on disk, cancel takes a waiting run out, and a new process
resumes the queue a dead one left.

Most tests use a fake trainer (a Python start-up per run, no TensorFlow) that logs when it starts
and ends, so overlap and order are read from the trainers' own clocks. One slow test trains three
real tiny runs in the background.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cxrlib.cli import main
from cxrlib.core import paths
from cxrlib.core.config import RunConfig
from cxrlib.runs import queue as run_queue
from cxrlib.runs import runner
from cxrlib.runs import slots

THIS_FILE = Path(__file__).resolve()
CFG = RunConfig()


def timed_execute(run, *, cancel_check) -> None:
    """Fake trainer: logs ``start``/``end`` with its clock to ``QUEUE_LOG``; it trains until the
    file ``QUEUE_GATE`` exists (when set), then ``QUEUE_HOLD`` seconds (``forever``: until cancelled)."""
    log = Path(os.environ["QUEUE_LOG"])
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"start {run.id} {time.time():.4f} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}\n")
    gate = os.environ.get("QUEUE_GATE")
    while gate and not Path(gate).exists() and not cancel_check():
        time.sleep(0.05)
    hold = os.environ.get("QUEUE_HOLD", "0.6")
    deadline = time.monotonic() + (1e9 if hold == "forever" else float(hold))
    while time.monotonic() < deadline:
        if cancel_check():
            run.write_status(state="cancelled", message="cancelled by request")
            return
        run.write_status(state="running", epoch=1, epochs=1)
        time.sleep(0.05)
    run.write_metrics({"accuracy": 1.0})
    run.write_status(state="done")
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"end {run.id} {time.time():.4f} -\n")


@pytest.fixture
def queued(monkeypatch, workspace, tmp_path):
    """Fake trainer, one slot; returns the trainers' log."""
    monkeypatch.setenv(runner.TRAIN_ENTRY_ENV, f"{THIS_FILE}:timed_execute")
    monkeypatch.setenv("QUEUE_LOG", str(tmp_path / "trainers.log"))
    monkeypatch.setenv(slots.MAX_RUNS_ENV, "1")
    monkeypatch.delenv("QUEUE_HOLD", raising=False)
    monkeypatch.delenv("QUEUE_GATE", raising=False)
    return tmp_path / "trainers.log"


def events(log: Path) -> list[tuple[str, str, float]]:
    if not log.exists():
        return []
    return [(what, rid, float(t)) for what, rid, t, _ in (line.split() for line in log.read_text().splitlines())]


def wait_for(predicate) -> bool:
    # Imported here: the background trainer loads this file by path, without tests/ on sys.path.
    from app_fixtures import wait_for as poll  # noqa: PLC0415

    return poll(predicate)


def config(i: int) -> RunConfig:
    return CFG.replace(train=CFG.train.replace(seed=100 + i))


def test_runs_requested_at_once_train_one_after_another_and_cancel_takes_a_waiting_one_out(
        queued, capsys, monkeypatch, tmp_path):
    gate = tmp_path / "gate"
    monkeypatch.setenv("QUEUE_GATE", str(gate))  # the first run trains until the checks are done
    monkeypatch.setenv("QUEUE_HOLD", "0.3")
    barrier = threading.Barrier(4)
    runs: dict[int, object] = {}

    def ask(i: int) -> None:
        barrier.wait()
        runs[i] = runner.start(config(i), fingerprint="fp-queue")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    order = [j.job for j in run_queue.jobs()]  # FIFO: the order the requests reached the queue
    assert sorted(order) == sorted(r.id for r in runs.values())
    waiting = [j.job for j in run_queue.jobs() if j.state == "waiting"]
    assert len(waiting) == 3 and waiting == order[1:]
    by_id = {r.id: r for r in runs.values()}
    for k, rid in enumerate(waiting, 1):
        status = by_id[rid].status()  # waiting is not mistaken for a dead process
        assert status["state"] == "queued" and not status.get("died")
        assert run_queue.describe(rid) == f"queued, position {k} of 3"
    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert all(f"queued, position {k} of 3" in table for k in (1, 2, 3))

    victim = by_id[waiting[1]]
    # Asking again for a run that waits keeps its place (no second row, no process).
    assert runner.start(victim.config, fingerprint="fp-queue") == victim
    assert [j.job for j in run_queue.jobs()] == order and victim.pid is None
    assert runner.cancel(victim.id)["state"] == "cancelled"
    assert victim.id not in [j.job for j in run_queue.jobs()]
    assert run_queue.describe(waiting[2]) == "queued, position 2 of 2"
    gate.touch()

    trained = [rid for rid in order if rid != victim.id]
    for rid in trained:
        final = runner.wait(by_id[rid], timeout=60, poll_s=0.1)
        assert final["state"] == "done", (final, by_id[rid].log_path.read_text() if by_id[rid].log_path.exists() else None)
    log = events(queued)
    starts = [rid for what, rid, _ in log if what == "start"]
    assert starts == trained  # FIFO, and the cancelled run never trained
    spans = {rid: [t for what, r, t in log if r == rid] for rid in trained}
    for first, second in zip(trained, trained[1:]):
        assert spans[first][1] <= spans[second][0]  # one at a time: it ended before the next began
    assert victim.status()["state"] == "cancelled" and not victim.log_path.exists()
    assert run_queue.jobs() == []


def test_two_slots_run_two_at_once(queued, monkeypatch):
    monkeypatch.setenv(slots.MAX_RUNS_ENV, "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,9")  # two GPUs (the fake trainer never uses them)
    monkeypatch.setenv("QUEUE_HOLD", "1.5")
    runs = [runner.start(config(i), fingerprint="fp-two") for i in range(3)]
    for run in runs:
        assert runner.wait(run, timeout=60, poll_s=0.1)["state"] == "done"
    log = events(queued)
    gpus = [line.split()[3] for line in queued.read_text().splitlines() if line.startswith("start")]
    assert sorted(gpus[:2]) == ["7", "9"] and gpus[2] in ("7", "9")  # each process its slot's GPU
    span = {rid: [t for _, r, t in log if r == rid] for rid in (r.id for r in runs)}
    a, b, c = (span[r.id] for r in runs)
    assert b[0] < a[1]  # the first two overlapped...
    assert c[0] >= min(a[1], b[1])  # ...and the third waited for one of them


def test_a_new_process_resumes_the_queue_a_dead_one_left(queued, monkeypatch):
    monkeypatch.setenv("QUEUE_HOLD", "forever")
    first = runner.start(config(0), fingerprint="fp-restart")
    assert wait_for(first.is_alive)
    second = runner.start(config(1), fingerprint="fp-restart")
    assert run_queue.describe(second.id) == "queued, position 1 of 1"
    # The first run's process dies without a word (SIGKILL, a reboot): it cannot start the next.
    os.kill(first.pid, signal.SIGKILL)
    assert wait_for(lambda: not first.is_alive())
    time.sleep(0.5)
    assert second.status()["state"] == "queued" and not (second.folder / "spawn.json").exists()
    # A new process (a restarted server) looks at the queue on disk and starts the waiting run.
    env = dict(os.environ, PYTHONPATH=str(paths.PROJECT_ROOT), QUEUE_HOLD="0.3")
    out = subprocess.run([sys.executable, "-c", "from cxrlib.runs import queue; print(queue.dispatch())"],
                         env=env, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == repr([second.id])
    assert runner.wait(second, timeout=60, poll_s=0.1)["state"] == "done"
    assert first.status()["state"] == "failed" and first.status()["died"]


def test_a_cancel_asked_before_the_slot_frees_is_honoured(queued, monkeypatch):
    """The app asks with a cancel file first: the dispatcher drops such a run, never starts it."""
    monkeypatch.setenv("QUEUE_HOLD", "0.8")
    first = runner.start(config(0), fingerprint="fp-cancel-file")
    second = runner.start(config(1), fingerprint="fp-cancel-file")
    second.request_cancel()
    assert runner.wait(first, timeout=60, poll_s=0.1)["state"] == "done"
    assert wait_for(lambda: second.status()["state"] != "queued")
    final = second.status()
    assert final["state"] == "cancelled" and not second.log_path.exists()


def test_slots_count_gpus_without_tensorflow(monkeypatch):
    monkeypatch.delenv(slots.MAX_RUNS_ENV, raising=False)
    monkeypatch.delenv(slots.SERVER_GPUS_ENV, raising=False)
    monkeypatch.setattr(slots, "_gpus_on_machine", lambda: 0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert slots.max_runs() == 1 and slots.slot_env(0, 1) == {}
    monkeypatch.setattr(slots, "_gpus_on_machine", lambda: 4)
    assert slots.max_runs() == 4
    assert [slots.slot_env(s, 4)["CUDA_VISIBLE_DEVICES"] for s in range(4)] == ["0", "1", "2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    pinned = slots.slot_env(1, 2)
    assert slots.max_runs() == 2 and pinned == {"CUDA_VISIBLE_DEVICES": "5", "CXR_SERVER_GPUS": "2,5"}
    # In the pinned process (which starts the next run when it ends): still the server's two GPUs.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    monkeypatch.setenv("CXR_SERVER_GPUS", "2,5")
    assert slots.max_runs() == 2 and slots.slot_env(0, 2)["CUDA_VISIBLE_DEVICES"] == "2"
    monkeypatch.delenv("CXR_SERVER_GPUS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert slots.max_runs() == 1
    monkeypatch.setenv(slots.MAX_RUNS_ENV, "3")
    assert slots.max_runs() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(slots.MAX_RUNS_ENV, bad)
        with pytest.raises(ValueError, match=f"CXR_MAX_RUNS='{bad}': it must be a whole number"):
            slots.max_runs()


def test_a_bad_max_runs_is_refused_before_anything_is_queued(queued, monkeypatch, capsys):
    monkeypatch.setenv(slots.MAX_RUNS_ENV, "many")
    with pytest.raises(ValueError, match="CXR_MAX_RUNS"):
        runner.start(config(0), fingerprint="fp-bad")
    assert run_queue.jobs() == [] and not paths.runs_dir().exists()  # no half-made run


def test_audits_share_the_slots_with_training(queued, monkeypatch):
    monkeypatch.setenv("QUEUE_HOLD", "1.0")
    run = runner.start(config(0), fingerprint="fp-audit")
    assert wait_for(run.is_alive)
    waited, entered = [], []
    with run_queue.slot("audit", "an audit", poll_s=0.05, on_wait=lambda k, n: waited.append((k, n))):
        entered.append(time.time())
        assert run.status()["state"] == "done"  # the audit began only once the run had ended
        behind = runner.start(config(1), fingerprint="fp-audit")  # and a run asked now waits for it
        assert run_queue.describe(behind.id) == "queued, position 1 of 1"
    assert waited and waited[0] == (1, 1)
    assert runner.wait(behind, timeout=60, poll_s=0.1)["state"] == "done"
    start_behind = [t for what, rid, t in events(queued) if what == "start" and rid == behind.id][0]
    assert start_behind >= entered[0]
    assert not list(run_queue.queue_dir().glob("audit-*.lock"))


@pytest.mark.slow
def test_three_real_tiny_runs_with_one_slot_train_one_after_another(workspace, synthetic_dataset,
                                                                    monkeypatch):
    from app_fixtures import tiny_config

    monkeypatch.delenv(runner.TRAIN_ENTRY_ENV, raising=False)
    monkeypatch.setenv(slots.MAX_RUNS_ENV, "1")
    cfgs = [tiny_config(synthetic_dataset, epochs=2, seed=s) for s in (1, 2, 3, 4)]
    cfgs = [c.replace(preprocess=c.preprocess.replace(size=32)) for c in cfgs]
    fingerprint = runner.dataset_fingerprint(cfgs[0])
    runs = [runner.start(c, fingerprint=fingerprint) for c in cfgs]
    assert [run_queue.describe(r.id) for r in runs[1:]] == [f"queued, position {k} of 3" for k in (1, 2, 3)]
    assert runner.cancel(runs[2].id)["state"] == "cancelled"
    kept = [runs[0], runs[1], runs[3]]
    finals = [runner.wait(r, timeout=300, poll_s=0.5) for r in kept]
    assert [f["state"] for f in finals] == ["done"] * 3, [f.get("error") for f in finals]

    def at(stamp: str) -> dt.datetime:
        return dt.datetime.fromisoformat(stamp)

    for before, after in zip(finals, finals[1:]):
        # The engine's last write says done; the next process started after it.
        assert at(before.get("finished") or before["updated"]) <= at(after["started"])
    assert all(r.metrics().get("accuracy") is not None for r in kept)
    assert runs[2].status()["state"] == "cancelled" and not runs[2].log_path.exists()


def test_scratch_copies_of_two_multi_worker_runs_are_two_jobs(queued, monkeypatch, tmp_path):
    from cxrlib.runs.registry import worker_run

    gate = tmp_path / "gate"
    monkeypatch.setenv("QUEUE_GATE", str(gate))
    a, b = worker_run(config(0), "fp-w", 1), worker_run(config(1), "fp-w", 1)
    assert a.id == b.id == "worker-1"  # each run's worker 1 copy: one folder name
    runner.start(config(0), fingerprint="fp-w", run=a)
    runner.start(config(1), fingerprint="fp-w", run=b)
    assert [(j.job, j.state) for j in run_queue.jobs()] == [
        (f"{a.folder.parent.name}/worker-1", "running"), (f"{b.folder.parent.name}/worker-1", "waiting")]
    assert b.status()["state"] == "queued"
    gate.touch()
    assert [runner.wait(r, timeout=60, poll_s=0.1)["state"] for r in (a, b)] == ["done", "done"]


def niceness_execute(run, *, cancel_check) -> None:
    """Fake trainer: writes its own scheduling niceness and its autogroup line (``-`` where the
    kernel has none) to ``QUEUE_LOG`` and finishes."""
    Path(os.environ["QUEUE_LOG"]).write_text(f"{os.nice(0)}\n{_autogroup()}", encoding="utf-8")
    run.write_metrics({"accuracy": 1.0})
    run.write_status(state="done")


@pytest.mark.parametrize("setting, expected", [(None, 10), ("15", 15), ("lots", 10)])
def test_background_training_runs_below_the_server(queued, monkeypatch, setting, expected):
    """Issue 22: one user's training must not freeze the others' pages, so a training process
    yields the CPU to the server (niceness 10; CXR_TRAIN_NICE, 0-19, changes it)."""
    from cxrlib.runs import spawn

    monkeypatch.setenv(runner.TRAIN_ENTRY_ENV, f"{THIS_FILE}:niceness_execute")
    if setting is None:
        monkeypatch.delenv(spawn.NICE_ENV, raising=False)
    else:
        monkeypatch.setenv(spawn.NICE_ENV, setting)
    own = _autogroup()
    run = runner.start(config(7), fingerprint="fp-nice")
    assert runner.wait(run, timeout=60, poll_s=0.1)["state"] == "done"
    niceness, group = queued.read_text().splitlines()
    assert int(niceness) == max(expected, os.nice(0))
    if own != "-":  # Linux with autogroup scheduling: groups share the CPU, not processes
        # A training process leads its own session, so its own autogroup; a process's niceness
        # alone would weigh only inside that group, and the group would take a full share next
        # to the server's (measured: 2/3 of the CPU for two such processes). The group's
        # niceness is the training niceness too, and this process's group is left as it was.
        assert group != own
        assert group.endswith(f"nice {max(expected, _group_nice(own))}")
        assert _autogroup() == own  # the caller's group (the server's) keeps its niceness


def _autogroup() -> str:
    """This process's autogroup line, or ``-`` where the kernel has none: no file, or an empty
    one (a kernel booted without autogroup scheduling, as on CI)."""
    group = Path("/proc/self/autogroup")
    return (group.read_text().strip() if group.exists() else "") or "-"


def _group_nice(line: str) -> int:
    return int(line.split()[-1])


def _start_meanwhile(cfg, fingerprint: str) -> threading.Thread:
    """Another session's start of ``cfg``, in a thread given 1.5 s to get as far as it can (up
    to the lock it waits on) before the caller goes on; the caller joins it."""
    thread = threading.Thread(target=runner.start, args=(cfg,), kwargs={"fingerprint": fingerprint})
    thread.start()
    thread.join(1.5)
    return thread


def test_a_start_that_meets_a_cancel_of_the_waiting_run_is_not_lost(queued, monkeypatch):
    """Two sessions: one cancels a waiting run while the other asks for it again. The cancel took
    the run out of the queue, the start queued it anew, then the cancel wrote "cancelled" over
    the new attempt: the status said cancelled while the queue held the run, and the next
    dispatch dropped it, so the second user's start was lost."""
    from cxrlib.runs import queue_store

    monkeypatch.setenv("QUEUE_HOLD", "forever")
    first = runner.start(config(0), fingerprint="fp-meet")
    second = runner.start(config(1), fingerprint="fp-meet")
    try:
        assert run_queue.describe(second.id) == "queued, position 1 of 1"
        withdraw, restart = queue_store.withdraw, []

        def withdraw_then_start(job: str) -> bool:  # the other session's start comes in between
            taken = withdraw(job)
            restart.append(_start_meanwhile(config(1), "fp-meet"))
            return taken

        monkeypatch.setattr(run_queue, "withdraw", withdraw_then_start)
        assert run_queue.cancel_waiting(second)
        restart[0].join(30)
        monkeypatch.setattr(run_queue, "withdraw", withdraw)
        # The start came last: the run waits again, and its status says so.
        assert second.status()["state"] == "queued"
        assert run_queue.describe(second.id) == "queued, position 1 of 1"
        run_queue.dispatch()
        assert run_queue.describe(second.id) == "queued, position 1 of 1"
    finally:
        runner.cancel(second.id, grace_s=5)
        runner.cancel(first.id, grace_s=5)


def test_a_start_that_meets_the_end_of_a_cancel_is_not_lost(queued, monkeypatch):
    """The cancel's last step (a process it stopped, or none left: it writes "cancelled" when
    the status did not end) came after a start of the same run from another session, and wrote
    "cancelled" over the new attempt, which the queue then dropped."""
    from cxrlib.runs import queue_store

    monkeypatch.setenv("QUEUE_HOLD", "forever")
    first = runner.start(config(0), fingerprint="fp-end")
    second = runner.start(config(1), fingerprint="fp-end")
    try:
        queue_store.withdraw(run_queue.run_job(second))  # queued, no row, no process: cancel's last step
        wait_dead, restart = runner._wait_dead, []

        def dead_then_start(run, timeout):
            done = wait_dead(run, timeout)
            restart.append(_start_meanwhile(config(1), "fp-end"))
            return done

        monkeypatch.setattr(runner, "_wait_dead", dead_then_start)
        # "queued" when the start came first: the new attempt is not the one asked to stop
        assert runner.cancel(second.id, grace_s=1)["state"] in ("cancelled", "queued")
        restart[0].join(30)
        assert second.status()["state"] == "queued"  # the start came last
        assert run_queue.describe(second.id) == "queued, position 1 of 1"
    finally:
        monkeypatch.setattr(runner, "_wait_dead", wait_dead)
        runner.cancel(second.id, grace_s=5)
        runner.cancel(first.id, grace_s=5)
