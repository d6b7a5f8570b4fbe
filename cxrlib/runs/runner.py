"""Start, follow and cancel training runs in their own processes.

:func:`start` is what the app and the CLI call. It never trains in the caller's process and
never imports TensorFlow: a finished run is returned at once, a live run is attached to, and
anything else is (re)started as ``python -m cxrlib train --run-dir <folder>``, a detached
process (own session) that writes its output to ``<folder>/log.txt``.

Only one process ever trains a run: creation and spawning happen under an exclusive ``flock``
on ``<folder>/start.lock`` (so two threads, tabs or processes asking at once get one run), and
the training process itself holds ``<folder>/lock`` for its whole life (see
:mod:`cxrlib.runs.registry`). :func:`execute_run` is that process's body; it also resolves a
run's prerequisite (a fine-tune's head run, :func:`cxrlib.training.engine.prerequisite`) by
training it first and passing its weights to the trainer, so the trainer never starts a run.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

from cxrlib.core.config import RunConfig
from cxrlib.core.processes import pid_alive
from cxrlib.runs import queue as run_queue
from cxrlib.runs.locks import RunLock
from cxrlib.runs.registry import create_run
from cxrlib.runs.run import TERMINAL_STATES, Run, now_iso
from cxrlib.runs.slots import max_runs

TRAIN_ENTRY_ENV = "CXR_TRAIN_ENTRY"
"""Environment variable naming the training function as ``module:function`` or
``/path/file.py:function`` (default ``cxrlib.training.engine:execute``); tests inject a fake trainer."""

LOCK_WAIT_S = 5.0


def dataset_fingerprint(cfg: RunConfig) -> str:
    """Fingerprint of the run's data (its task's rows), from :func:`cxrlib.data.datasets.scan_dataset`."""
    from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415 (TF-free, but not needed by every caller)

    return scan_dataset(cfg.data.root, bacterial=cfg.data.bacterial).for_task(cfg.data.task).fingerprint


def start(cfg: RunConfig, *, fingerprint: str | None = None, restart: bool = True,
          run: Run | None = None) -> Run:
    """Return the run of ``cfg``, starting a background training process only when needed.

    Args:
        cfg: the run's configuration.
        fingerprint: the dataset fingerprint when the caller already has it (saves a scan).
        restart: restart a failed or cancelled run (from scratch; the trainer may resume from
            ``best.keras``). When False such a run is returned as it is.
        run: the run folder when it is not the registry's (a worker's scratch copy).

    Returns:
        The :class:`Run`: done, running (attached), or freshly queued: it waits in
        :mod:`cxrlib.runs.queue` until one of the ``CXR_MAX_RUNS`` slots is free.
    """
    max_runs()  # a bad CXR_MAX_RUNS is refused before any folder is made
    fingerprint = fingerprint or dataset_fingerprint(cfg)
    run = run or create_run(cfg, fingerprint)
    if run.raw_status().get("state") == "done":
        return run  # the cache hit: no lock, no process, no TensorFlow
    with RunLock(run.folder / "start.lock"):
        if _claimed(run) or (not restart and run.raw_status().get("state") in TERMINAL_STATES):
            return run
        _mark_queued(run)
        run_queue.submit(run_queue.run_job(run), "train", run.folder)
        # Under the start lock, so that another caller attaches to a started process when a slot
        # was free (the queue never takes a start lock: no lock-order cycle).
        run_queue.dispatch()
    return run


def _claimed(run: Run) -> bool:
    """Done, or some process is training / about to train it (caller holds the start lock)."""
    status = run.raw_status()
    if status.get("state") == "done":
        return True
    if run.is_alive():
        return True
    return status.get("state") == "queued" and (pid_alive(run.pid) or run_queue.in_queue(run_queue.run_job(run)))


def _mark_queued(run: Run) -> None:
    run.cancel_path.unlink(missing_ok=True)
    run.spawn_path.unlink(missing_ok=True)
    previous = run.raw_status()
    run.write_status(replace=True, state="queued", message="waiting for a free slot",
                     queued=now_iso(), attempt=int(previous.get("attempt", 0)) + 1,
                     resumable=run.has_checkpoint())


def _train_entry() -> Callable[..., None]:
    spec = os.environ.get(TRAIN_ENTRY_ENV, "cxrlib.training.engine:execute")
    module_name, _, func = spec.rpartition(":")
    if module_name.endswith(".py"):
        loader = importlib.util.spec_from_file_location("_cxr_train_entry", module_name)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, func)


class _Terminated(BaseException):
    """Raised in the training process by SIGTERM (a forced cancel)."""


def execute_run(run: Run, *, lock_wait: float = LOCK_WAIT_S, lock: RunLock | None = None,
                on_error: Callable[[Exception], None] | None = None) -> int:
    """Body of the training process: hold the run lock, train, record how it ended.

    Args:
        run: an existing run folder.
        lock_wait: seconds to wait for the run lock (a reader may probe it for a moment).
        lock: the run lock when the caller already holds it (it is released at the end).
        on_error: given the error a failed run recorded (its traceback is in status.json), to
            report it; without it the traceback goes to stderr (a spawned run's log.txt).

    Returns:
        Process exit code: 0 done or cancelled, 1 failed, 3 another process holds the run.
    """
    lock = lock or RunLock(run.lock_path)
    if not lock.held and not lock.acquire(timeout=lock_wait):
        print(f"run {run.id} is already being trained by another process", file=sys.stderr)
        return 3
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main else None
    try:
        if run.raw_status().get("state") == "done":
            return 0
        # A process the runner spawned leads its own session: cancel may signal its whole group
        # (tf.data workers included). A foreground CLI run shares the user's shell session, so
        # only the process itself may be signalled, never its process group.
        run.write_status(state="running", pid=os.getpid(), own_session=os.getsid(0) == os.getpid(),
                         started=now_iso(), error=None,
                         message="starting")
        if run.cancel_requested():
            run.write_status(state="cancelled", message="cancelled before training started",
                             finished=now_iso())
            return 0
        try:
            start_from = _resolve_prerequisite(run)
            extra = {"start_from": start_from} if start_from is not None else {}
            _train_entry()(run, cancel_check=run.cancel_requested, **extra)
        except (_Terminated, KeyboardInterrupt) as exc:
            how = "SIGTERM" if isinstance(exc, _Terminated) else "interrupt"
            if run.cancel_requested() or isinstance(exc, KeyboardInterrupt):
                run.write_status(state="cancelled", message=f"cancelled ({how})", finished=now_iso())
                return 0
            run.write_status(state="failed", error=f"terminated by {how}", finished=now_iso(),
                             resumable=run.has_checkpoint())
            return 1
        except Exception as exc:  # the run records any failure; the process reports it
            if on_error is None:
                traceback.print_exc()
            run.write_status(state="failed", error=f"{type(exc).__name__}: {exc}",
                             traceback=traceback.format_exc(limit=20), finished=now_iso(),
                             resumable=run.has_checkpoint())
            if on_error is not None:
                on_error(exc)
            return 1
        state = run.raw_status().get("state")
        if state not in TERMINAL_STATES:
            state = "cancelled" if run.cancel_requested() else "done"
            run.write_status(state=state, finished=now_iso())
        if state == "done":
            _tensorboard(run)
        return 1 if state == "failed" else 0
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        lock.release()
        run_queue.dispatch_quietly()  # this slot is free: start the next queued run


def _resolve_prerequisite(run: Run):
    """The finished head run a fine-tune with ``init_from_head`` starts from, trained first when
    needed (:class:`cxrlib.training.engine.HeadStart`), or None (no prerequisite, or a worker
    of a cluster other than the chief: the chief's copy reaches it by broadcast).

    On one machine the head run trains in this process. In a cluster the chief trains it as a
    process of its own outside the cluster (the fine-tune's strategy spans the workers, a head
    run does not), and waits for it.

    Raises:
        RuntimeError: the head run did not finish.
    """
    from cxrlib.core.cluster import role  # noqa: PLC0415
    from cxrlib.training.engine import HeadStart, prerequisite  # noqa: PLC0415 (TF-free)

    head_cfg = prerequisite(run.config)
    r = role()
    if head_cfg is None or (r is not None and not r.chief):
        return None
    from cxrlib.training.distribute import without_cluster_env  # noqa: PLC0415

    t0 = time.perf_counter()
    run.write_status(message="training the head first (init from head)")
    if r is None:
        head_run = train_foreground(head_cfg, fingerprint=run.fingerprint)
    else:
        with without_cluster_env():
            head_run = start(head_cfg, fingerprint=run.fingerprint)
        wait(head_run, poll_s=1.0)
    state = head_run.status().get("state")
    if state != "done":
        raise RuntimeError(f"the head run {head_run.id} to start from ended {state}: "
                           f"{head_run.status().get('error') or ''}".strip())
    return HeadStart(head_run.id, head_run.model_path, time.perf_counter() - t0)


def _tensorboard(run: Run) -> None:
    """Issue 23: the run's curves as TensorBoard scalars (derived files: a failure to write
    them is reported and never fails the run)."""
    try:
        from cxrlib.runs.tensorboard import write_run_scalars  # noqa: PLC0415

        write_run_scalars(run)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: no TensorBoard scalars for run {run.id}: {exc}", file=sys.stderr)


def train_foreground(cfg: RunConfig, *, fingerprint: str | None = None,
                     on_status: Callable[[dict[str, Any]], None] | None = None,
                     poll_s: float = 0.5, run: Run | None = None,
                     on_error: Callable[[Exception], None] | None = None) -> Run:
    """Train ``cfg`` in this process (the CLI without ``--background``), reporting progress.

    A done run is returned at once and a run trained elsewhere is followed to its end, so this
    never makes a second copy of a run. Ctrl-C cancels the run.

    Args:
        cfg: the run's configuration.
        fingerprint: the dataset fingerprint when already known.
        on_status: called with the status about every ``poll_s`` seconds and at the end.
        poll_s: progress polling period.
        run: the run folder when it is not the registry's (a worker's scratch copy).
        on_error: given the error of a run that failed here (:func:`execute_run`).
    """
    fingerprint = fingerprint or dataset_fingerprint(cfg)
    run = run or create_run(cfg, fingerprint)
    lock = RunLock(run.lock_path)
    with RunLock(run.folder / "start.lock"):
        if not _claimed(run):
            if not lock.acquire(timeout=LOCK_WAIT_S):
                lock = None
            else:
                run.cancel_path.unlink(missing_ok=True)
                attempt = int(run.raw_status().get("attempt", 0)) + 1
                run.write_status(replace=True, state="queued", pid=os.getpid(), attempt=attempt,
                                 queued=now_iso(), resumable=run.has_checkpoint())
        else:
            lock = None
    if lock is None:
        wait(run, on_status=on_status, poll_s=poll_s)
        return run
    done = threading.Event()

    def _follow() -> None:
        while not done.wait(poll_s):
            if on_status is not None:
                on_status(run.raw_status())

    follower = threading.Thread(target=_follow, name=f"progress-{run.id}", daemon=True)
    follower.start()
    try:
        execute_run(run, lock=lock, on_error=on_error)
    finally:
        done.set()
        follower.join()
        if on_status is not None:
            on_status(run.status())
    return run


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated()


def cancel(run_id: str, *, grace_s: float = 15.0, kill_s: float = 5.0) -> dict[str, Any]:
    """Cancel a run: ask its training loop to stop, then SIGTERM (then SIGKILL) it if it won't.

    Args:
        run_id: run id or unique prefix.
        grace_s: how long the training loop has to notice the cancel request.
        kill_s: after SIGTERM, how long before SIGKILL.

    Returns:
        The final status (``cancelled``, or ``done``/``failed`` when it had already ended).

    Raises:
        KeyError: for an unknown run.
    """
    from cxrlib.runs.registry import get_run  # noqa: PLC0415

    run = get_run(run_id)
    first = run.raw_status()
    if first.get("state") in TERMINAL_STATES:
        return run.status()
    if run_queue.cancel_waiting(run):  # still waiting for a slot: no process to stop
        return run.raw_status()
    run.request_cancel()
    if not _wait_dead(run, grace_s):
        pid, group = run.pid, bool(run.raw_status().get("own_session"))
        for sig, wait_s in ((signal.SIGTERM, kill_s), (signal.SIGKILL, kill_s)):
            _signal(pid, sig, group=group)
            if _wait_dead(run, wait_s):
                break
    # Under the start lock, and only for the attempt asked to stop: a start of the run from
    # another session meanwhile (a new attempt) is not written over (as in queue.cancel_waiting).
    if not run.folder.is_dir():  # ended and deleted meanwhile (the lock must not make it again)
        return {**first, "state": "cancelled"}
    with RunLock(run.folder / "start.lock"):
        status = run.raw_status()
        if status.get("state") not in TERMINAL_STATES and status.get("attempt") == first.get("attempt"):
            status = run.write_status(state="cancelled", message="cancelled", finished=now_iso())
    run_queue.dispatch_quietly()  # a killed process could not start the next run itself
    return status


def _wait_dead(run: Run, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        status = run.raw_status()
        alive = run.is_alive() or (status.get("state") == "queued" and pid_alive(run.pid))
        if not alive:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _signal(pid: int | None, sig: int, *, group: bool) -> None:
    """Signal a training process; its whole process group only when it leads its own session."""
    if not pid:
        return
    try:
        if group and os.getpgid(int(pid)) == int(pid):
            os.killpg(int(pid), sig)
        else:
            os.kill(int(pid), sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait(run: Run, timeout: float | None = None, *, poll_s: float = 0.5,
         on_status: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Poll a run until it ends or ``timeout`` seconds pass; returns the last status.

    Args:
        run: the run to follow.
        timeout: seconds, or None to wait for the end.
        poll_s: polling period.
        on_status: called with every status read (progress bars).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = run.status()
        if on_status is not None:
            on_status(status)
        if status.get("state") in TERMINAL_STATES:
            return status
        if deadline is not None and time.monotonic() >= deadline:
            return status
        time.sleep(poll_s)
