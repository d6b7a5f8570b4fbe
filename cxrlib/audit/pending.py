"""Audits asked for and not yet ended, kept on disk: a server that restarts starts them again.

The app runs an audit for every session (``app_services.auditing``). Its request is written here
when it starts and removed when it ends (with a report, an error or a stop); a request still here
when a server starts is one that a restart (or a crash) cut short. One JSON file per audit, in
``models/queue/audits/`` of the workspace, named by a digest of the audit's key.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from cxrlib.core.clock import now_iso
from cxrlib.core.fsutil import read_json, write_json_atomic
from cxrlib.runs.queue_store import queue_dir


MAX_RESUMES = 2
"""How many times restarts start one audit again. An audit whose process is killed each time
(as when memory runs out) would otherwise run again at every restart, for ever."""


def pending_dir() -> Path:
    """``models/queue/audits/``: one file per audit asked for and not ended."""
    return queue_dir() / "audits"


def request_file(key: tuple) -> Path:
    """The file of the audit ``key``'s request."""
    digest = hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:20]
    return pending_dir() / f"{digest}.json"


def remember(key: tuple, run_id: str, root: str, task: str, options: dict[str, Any],
             resumes: int = 0) -> None:
    """Write the request of the audit ``key``: its run, its dataset (folder and task), the
    options of ``audit_run`` it was asked with, and how many times a restart has started it again
    (``resumes``: 0 when a user started it)."""
    write_json_atomic(request_file(key), {"run": run_id, "root": str(root), "task": task,
                                          "options": options, "resumes": int(resumes),
                                          "asked": now_iso("microseconds")})


def forget(key: tuple) -> None:
    """Remove the request of the audit ``key`` (it ended); nothing when there is none."""
    request_file(key).unlink(missing_ok=True)


def pending() -> list[dict[str, Any]]:
    """Every request left, oldest first, each with its ``file`` and its ``resumes`` (0 when the
    file has none). A file that cannot be read or lacks a field is removed (it could start
    nothing)."""
    found = []
    for path in pending_dir().glob("*.json"):
        try:
            request = read_json(path)
            ok = isinstance(request, dict) and {"run", "root", "task", "options"} <= set(request) \
                and isinstance(request["options"], dict)
        except (OSError, ValueError):
            ok = False
        if not ok:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            continue
        found.append({"resumes": 0, **request, "file": path})
    return sorted(found, key=lambda r: (str(r.get("asked", "")), r["file"].name))
