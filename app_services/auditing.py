"""Audit services: one ``cxrlib.audit.audit_run`` per run and options, kept for every session."""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import streamlit as st

from cxrlib.audit import pending
from cxrlib.audit.background import AuditProcessLost, audit_in_process
from cxrlib.runs import queue as run_queue
from cxrlib.runs.spawn import train_niceness

from .bytecache import ByteCache, budget
from .runs import run_stamp
from .work import Work, WorkStopped


_log = logging.getLogger(__name__)

AUDIT_SHARE = 0.06
"""The share of ``CXR_CACHE_MB`` that finished audit reports may hold (they keep the test films'
tensors), shared by every session, least recently used first out."""


def new_report_cache() -> ByteCache:
    """An empty cache of finished audit reports, bounded by bytes (:class:`.bytecache.ByteCache`)."""
    return ByteCache(budget(AUDIT_SHARE, "audit reports"), "audit reports")


@st.cache_resource
def _reports() -> ByteCache:
    return new_report_cache()


def audit_key(run, external: str | None, max_films: int | None, method: str,
              adversarial: float = 0.0, masks: str | None = None) -> tuple:
    """Cache key of an audit: the run's artefacts and the options that change the result."""
    return (run_stamp(run), external or None, max_films, method, float(adversarial), masks or None)


def cached_audit(run, external: str | None, max_films: int | None, method: str,
                 adversarial: float = 0.0, masks: str | None = None):
    """The stored report of these options, or ``None`` when it was never computed."""
    return _reports().get(audit_key(run, external, max_films, method, adversarial, masks))


def progress_state(step: str, done: int, total: int) -> tuple[float, str]:
    """The audit bar's value and text. A finished counted step does not leave the bar full:
    the steps after the film scan (duplicates, metadata) and after the lung masks (attention,
    masked evaluation, leave-one-source-out) give no count and took 38 of 85 s, so the bar
    empties and says they are running (issue 26)."""
    if total and done >= total:
        return 0.0, (f"{step}: {done}/{total} done · the next steps give no count: "
                     "running…")
    return (min(done / total, 1.0) if total else 0.0), f"{step}: {done}/{total}"


def _audit_work(run, ds, external, max_films, method, adversarial, masks):
    def work(report):
        # The audit takes one of the server's CXR_MAX_RUNS slots, as a training run does.
        with run_queue.slot("audit", f"audit of run {run.id}",
                            on_wait=lambda k, n: report(0.0, f"queued, position {k} of {n}: "
                                                             "waiting for a free slot")):
            # in a process of its own at the training niceness (cxrlib.audit.background)
            return audit_in_process(run, niceness=train_niceness(), check=report,
                                    progress=lambda *step: report(*progress_state(*step)),
                                    dataset=ds, external=external or None, cam_method=method,
                                    max_films=max_films, adversarial=adversarial,
                                    masks=masks or None)
    return work


@st.cache_resource
def _jobs() -> dict[tuple, Any]:
    return {}


_JOBS_LOCK = threading.Lock()


@st.cache_resource
def _failures() -> dict[tuple, str]:
    return {}


def audit_failure(run, external: str | None, max_films: int | None, method: str,
                  adversarial: float = 0.0, masks: str | None = None) -> str | None:
    """Why the last audit of these options failed, whoever started it and whether or not anyone
    watched (kept until the next audit of them starts); ``None`` when it did not fail."""
    return _failures().get(audit_key(run, external, max_films, method, adversarial, masks))


def audit_job(run, external: str | None, max_films: int | None, method: str,
              adversarial: float = 0.0, masks: str | None = None):
    """The audit of these options running now (:class:`Work`), whoever started it, or ``None``."""
    return _jobs().get(audit_key(run, external, max_films, method, adversarial, masks))


def start_audit(run, ds, external: str | None, max_films: int | None, method: str,
                adversarial: float = 0.0, masks: str | None = None, resumes: int = 0):
    """The running audit of these options, started now when none is (:class:`Work`). It runs
    for every session, whoever watches it (:func:`watch_audit`): its report is stored
    (:func:`cached_audit`) when it ends, and a page that stops watching leaves it running; its
    ``stop()`` ends it. ``adversarial`` > 0 also measures leave-one-source-out with the
    source-adversarial head; ``masks``: a folder of lung masks that win over the predicted
    ones; ``resumes``: how many times a restart has started it again (kept in its request)."""
    key = audit_key(run, external, max_films, method, adversarial, masks)

    def ended(job) -> None:
        error = job.out.get("error")
        try:
            if "value" in job.out:
                _reports().put(key, job.out["value"])
            elif not isinstance(error, WorkStopped):  # kept for the next visitor
                _failures()[key] = str(error) or type(error).__name__
            # Its process killed from outside (a stopping server ends it first): cut short, not
            # ended, so its request stays for the next server to start it again.
            if not isinstance(error, AuditProcessLost):
                with contextlib.suppress(OSError):
                    pending.forget(key)
        finally:  # whatever happened above, it is no longer running
            with _JOBS_LOCK:
                if _jobs().get(key) is job:
                    del _jobs()[key]

    with _JOBS_LOCK:
        job = _jobs().get(key)
        if job is None:
            _failures().pop(key, None)
            try:  # on disk until it ends: a server restarted meanwhile starts it again
                pending.remember(key, run.id, str(ds.root), ds.task, dict(
                    external=external, max_films=max_films, method=method,
                    adversarial=adversarial, masks=masks), resumes=resumes)
            except OSError:  # an unwritable workspace: the audit's queue slot says so
                pass
            job = Work(_audit_work(run, ds, external, max_films, method, adversarial, masks),
                       first=(0.0, "starting"), ended=ended)
            _jobs()[key] = job
            job.start()
    return job


def resume_pending() -> list:
    """Start again every audit that a server restart (or a crash) cut short
    (:mod:`cxrlib.audit.pending`), as it was asked; return their jobs. One whose run is gone, or
    that cannot be read, is dropped; one whose dataset no longer opens, or that restarts have
    already started again ``pending.MAX_RESUMES`` times, is dropped and kept as failed, with the
    reason, for the Audit page."""
    from cxrlib.core.config import DataConfig  # noqa: PLC0415
    from cxrlib.runs.registry import get_run  # noqa: PLC0415

    from .data import open_dataset  # noqa: PLC0415

    started = []
    try:
        requests = pending.pending()
    except Exception as exc:  # noqa: BLE001 - a store it cannot read: left for the next server
        _log.warning("audits left by a restart were not resumed: %s", exc)
        return started
    for request in requests:
        try:
            run = get_run(str(request["run"]))
            options = request["options"]
            key = audit_key(run, **options)  # options it does not take: a TypeError
            hash(key)  # options of odd types (lists): a TypeError
            resumes = int(request["resumes"]) + 1
            status = None if resumes > pending.MAX_RESUMES else open_dataset(
                DataConfig(root=str(request["root"]), task=str(request["task"])))
            if status is None:
                _failures()[key] = (
                    f"it was cut short {resumes} times (by server restarts, or its process was "
                    "killed, as when memory runs out) and is not started again by itself: run it "
                    "again to retry.")
            elif status.level != "ok":
                _failures()[key] = ("it was cut short by a server restart and could not start "
                                    f"again: {status.message}")
            else:
                started.append(start_audit(run, status.dataset, **options, resumes=resumes))
                if pending.request_file(key) == request["file"]:  # kept under the same key
                    continue
        except Exception as exc:  # noqa: BLE001 - nothing that could be started: dropped
            _log.warning("an audit request left by a restart was dropped: %s: %s",
                         request["file"], exc)
        with contextlib.suppress(OSError):  # done with, or kept under its run's new key
            request["file"].unlink(missing_ok=True)
    return started


@st.cache_resource
def resume_audits() -> list:
    """:func:`resume_pending`, once per server process (the router calls it on every run); it
    never stops a page."""
    return resume_pending()


STOPPED = "au_stopped"
"""Session key: this session's page is to say that the audit was stopped (once)."""


def stopped_here(job=None) -> None:
    """The Stop button's callback (ends ``job``), and what a watcher of a stopped audit calls:
    the page says so once, whichever run sees the audit end first."""
    if job is not None:
        job.stop()
    st.session_state[STOPPED] = True


def watch_audit(job):
    """Show a running audit (:func:`start_audit`, :func:`audit_job`) with its progress and a Stop
    button until it ends, and return its report (stored for next time by then). Raises the
    audit's error, or :class:`WorkStopped` when someone stopped it; a page that is left or rerun
    stops watching, and the audit goes on."""
    with st.status("Auditing the run…", expanded=True) as box:
        bar = st.progress(0.0, text="starting")
        while_running = st.empty()
        with while_running.container():
            st.button("Stop the audit", on_click=stopped_here, args=(job,),
                      icon=":material/stop_circle:", key="au_stop")
            st.caption("You may leave this page: the audit goes on, and its report is kept for "
                       "this run, for everyone.")
        try:
            result = job.watch(lambda value, text: bar.progress(value, text=text))
        except (WorkStopped, Exception) as exc:  # not Streamlit's rerun or stop: the page goes
            while_running.empty()
            box.update(label="Audit stopped" if isinstance(exc, WorkStopped) else
                       "Audit failed", state="error", expanded=False)
            raise
        while_running.empty()
        box.update(label="Audit finished", state="complete", expanded=False)
    return result
