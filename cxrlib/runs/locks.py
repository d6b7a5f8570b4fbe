"""Exclusive ``flock`` locks on files: held by a process until it releases them or dies.

The kernel drops a ``flock`` when its holder ends in any way (SIGKILL included), so a lock that
is free while a status file says "running" means the process died (see :mod:`.registry`).
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path


class RunLock:
    """An exclusive ``flock`` on a file, released on :meth:`release` or process death."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0, poll: float = 0.05) -> bool:
        """Try to take the lock for up to ``timeout`` seconds; True when taken."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return True
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                os.close(fd)
                return False
            time.sleep(poll)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocking: used for short critical sections
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_is_held(path: Path) -> bool:
    """Whether some open file description holds an exclusive flock on ``path``."""
    if not path.exists():
        return False
    probe = RunLock(path)
    if probe.acquire(timeout=0):
        probe.release()
        return False
    return True

