"""Work below the pages: a server's long job (an audit) in a thread of its own at the training
niceness, which any session may watch, leave and come back to (:class:`Work`)."""
from __future__ import annotations

import threading

from cxrlib.runs.spawn import train_niceness


class WorkStopped(BaseException):
    """Raised in a :class:`Work`'s work at its next report or check once it is stopped (a
    ``BaseException``: no handler of ordinary errors on the way takes it for one; the audit's
    process is then ended by :func:`cxrlib.audit.background.audit_in_process`)."""


class Work:
    """``work(report)`` in a thread of its own at the training niceness (``CXR_TRAIN_NICE``), so
    the pages come first, for any session that watches it (:meth:`watch`).

    ``report(*args)`` keeps the work's latest progress (``first`` until it reports), which a
    watcher's, the script's, thread shows every ``poll_s``: so the page still sees a stop, a rerun
    or a switch at once (Streamlit checks for them when an element is sent) and leaves; the work
    goes on. :meth:`stop` ends it at its next report (:class:`WorkStopped`). ``ended(work)`` is
    called in its thread when it ends, before any watcher returns."""

    def __init__(self, work, *, first: tuple = (), ended=None) -> None:
        self.latest, self.out = first, {}
        self._stopped = threading.Event()
        self._ended = ended
        self._thread = threading.Thread(target=self._body, args=(work,),
                                        name="cxr-below-the-pages", daemon=True)

    def start(self) -> "Work":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def report(self, *args) -> None:  # without args: only the check
        if self._stopped.is_set():
            raise WorkStopped
        if args:
            self.latest = args

    def _body(self, work) -> None:
        from cxrlib.core.processes import lower_priority  # noqa: PLC0415

        lower_priority(threading.get_native_id(), train_niceness())
        try:
            self.out["value"] = work(self.report)
        except BaseException as exc:  # noqa: BLE001 - given back to the watchers
            self.out["error"] = exc
        finally:
            if self._ended is not None:
                self._ended(self)

    def watch(self, show, poll_s: float = 0.5):
        """Show the progress with ``show(*latest)`` every ``poll_s`` until the work ends; return
        what it returned, raise what it raised."""
        while self._thread.is_alive():
            self._thread.join(poll_s)
            show(*self.latest)
        if "error" in self.out:
            raise self.out["error"]
        return self.out["value"]
