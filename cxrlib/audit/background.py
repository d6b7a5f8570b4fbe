"""An audit in a process of its own at a lower CPU priority, for a server that others use.

The app keeps an audit's report in the server for every session, but its work need not run
there: in the server its model calls ran in TensorFlow's process-wide thread pools at the pages'
priority (39 % of the cores beside 8 users, ``bench/serve.py --with-audit``). Here the work runs
in a spawned child at ``niceness``; the report comes back pickled.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

POLL_S = 0.2
"""How often the caller looks for the child's messages, and calls ``check``."""


class AuditProcessError(RuntimeError):
    """The audit failed in its process (the child's message), or the process ended without a
    report (:class:`AuditProcessLost`)."""


class AuditProcessLost(AuditProcessError):
    """The audit's process ended without a report and without an error of its own: it was killed
    from outside (a server stopping ends it first; out of memory). The audit did not fail: it was
    cut short, and may be asked again."""


def audit_in_process(run, *, niceness: int, progress: Callable[[str, int, int], None],
                     check: Callable[[], None] = lambda: None, **options: Any):
    """:func:`cxrlib.audit.audit_run` of ``run`` in a spawned process at ``niceness``.

    Args:
        run: a finished :class:`cxrlib.runs.run.Run` (the child opens its folder).
        niceness: the child's scheduling niceness (0-19).
        progress: ``progress(step, done, total)``, called in the caller's thread.
        check: called every :data:`POLL_S`; whatever it raises stops the child and is raised.
        options: :func:`~cxrlib.audit.audit_run`'s keyword arguments (``dataset`` among them).

    Returns:
        The :class:`~cxrlib.audit.AuditReport`.

    Raises:
        AuditProcessError: the audit failed in the child (its one-line reason).
        AuditProcessLost: the child ended without a report (killed, out of memory).
    """
    import multiprocessing  # noqa: PLC0415

    ctx = multiprocessing.get_context("spawn")  # a fork would copy the server's TF threads
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, str(run.folder), niceness, options),
                        name="cxr-audit", daemon=True)
    child.start()
    send.close()
    try:
        while True:
            check()
            if receive.poll(POLL_S):
                try:
                    kind, payload = receive.recv()
                except EOFError:
                    kind, payload = "ended", None
                if kind == "progress":
                    progress(*payload)
                elif kind == "done":
                    return payload
                elif kind == "error":
                    raise AuditProcessError(payload)
                else:  # the pipe closed without a report
                    child.join(5)
                    raise AuditProcessLost(f"the audit's process ended without a report "
                                           f"(exit code {child.exitcode})")
            elif not child.is_alive():
                raise AuditProcessLost(f"the audit's process ended without a report (exit "
                                       f"code {child.exitcode})")
    finally:
        receive.close()
        if child.is_alive():
            child.terminate()
        child.join(10)


def _child(send, folder: str, niceness: int, options: dict) -> None:
    import os  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from cxrlib.core.processes import lower_priority  # noqa: PLC0415

    lower_priority(os.getpid(), niceness)
    lock = threading.Lock()  # a step may report from its own threads: one message at a time

    def progress(*step) -> None:
        with lock:
            send.send(("progress", step))

    try:
        from cxrlib.audit.report import audit_run  # noqa: PLC0415
        from cxrlib.runs.run import Run  # noqa: PLC0415

        report = audit_run(Run(folder), progress=progress, **options)
        with lock:
            send.send(("done", report))
    except Exception as exc:  # noqa: BLE001 - said in one line to the caller
        with lock:
            send.send(("error", str(exc) or type(exc).__name__))
    finally:
        send.close()
