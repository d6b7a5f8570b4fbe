"""The one launcher of training processes: ``python -m cxrlib train --run-dir FOLDER`` in its
own session, its pid in the run's ``spawn.json``, reaped by a thread so it never lingers as a
zombie of a long-lived caller (the app). The queue (:mod:`cxrlib.runs.queue`) decides when."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

from cxrlib.core import paths
from cxrlib.core.clock import now_iso
from cxrlib.core.fsutil import write_json_atomic
from cxrlib.core.processes import lower_priority
from cxrlib.runs.run import Run


def spawn_training(run: Run, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the training process of a queued run (:func:`cxrlib.runs.queue.dispatch` calls it;
    the one launcher of training processes)."""
    run.spawn_path.unlink(missing_ok=True)
    env = os.environ.copy()
    for key, value in _train_env().items():
        env.setdefault(key, value)
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(paths.PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    with open(run.log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cxrlib", "train", "--run-dir", str(run.folder)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd=str(paths.PROJECT_ROOT), close_fds=True)
    # Below the server and its users: a training run takes the cores that pages leave idle
    # (issue 22: one user's training must not freeze the others' pages). Set before the child
    # has imported TensorFlow, so its threads inherit it.
    lower_priority(proc.pid, train_niceness())
    # Its own file, not status.json: the child may already be writing status.json.
    write_json_atomic(run.spawn_path, {"pid": proc.pid, "spawned": now_iso()})
    # Reap the child when it ends so it never lingers as a zombie of a long-lived caller (the app).
    threading.Thread(target=proc.wait, name=f"reap-{run.id}", daemon=True).start()
    return proc


NICE_ENV = "CXR_TRAIN_NICE"
DEFAULT_NICENESS = 10


def train_niceness() -> int:
    """The niceness of training processes: ``CXR_TRAIN_NICE`` (0-19), default 10; a value that
    is not a whole number is the default."""
    try:
        return max(0, min(19, int(os.environ.get(NICE_ENV, DEFAULT_NICENESS))))
    except ValueError:
        return DEFAULT_NICENESS


def _train_env() -> dict[str, str]:
    """The training engine's measured-fastest environment; a user's own setting wins."""
    from cxrlib.training.engine import TRAIN_ENV  # noqa: PLC0415 (TF-free at import, but only needed to spawn)

    return TRAIN_ENV
