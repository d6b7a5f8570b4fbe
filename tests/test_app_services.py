"""Service-layer mechanics that need no page: the shared audit-report cache, the audit's priority."""
from __future__ import annotations

import threading
import time

import pytest


def test_audit_report_cache_is_bounded_by_bytes_not_reports(monkeypatch):
    """Issue 22: a report holds the test films' tensors (kilobytes to hundreds of megabytes), so
    the shared cache of finished audits is bounded by bytes, a share of CXR_CACHE_MB, like the
    app's other large caches; least recently used first out."""
    import numpy as np

    from app_services.auditing import AUDIT_SHARE, new_report_cache

    monkeypatch.setenv("CXR_CACHE_MB", "10")
    reports = new_report_cache()
    budget = int(AUDIT_SHARE * 10 * 2**20)
    assert reports.max_bytes == budget
    big = budget // 3 + 1  # three such reports do not fit, two do
    for i in range(3):
        reports.put(("run", i), {"tensors": np.zeros(big, np.uint8)})
    assert reports.get(("run", 0)) is None and reports.get(("run", 2)) is not None
    assert reports.nbytes <= budget
    for i in range(50):
        reports.put(("small", i), {"tensors": np.zeros(10, np.uint8)})
    assert len(reports) >= 50 and reports.get(("small", 0)) is not None  # not bounded by a count


def test_the_audit_bar_is_not_left_full_while_later_steps_run():
    """Issue 26, bug 5: the bar sat full at "lung masks 200/200" for 38 of the audit's 85 s."""
    from app_services.auditing import progress_state

    assert progress_state("lung masks", 50, 200) == (0.25, "lung masks: 50/200")
    value, text = progress_state("lung masks", 200, 200)
    assert value < 1.0 and "200/200 done" in text and "running" in text
    assert progress_state("lung masks", 0, 0)[0] == 0.0


@pytest.mark.parametrize("setting, expected", [(None, 10), ("15", 15)])
def test_the_audit_works_below_the_pages(monkeypatch, setting, expected):
    """Issue 22: one user's audit ran in the server at the pages' priority and took 39 % of the
    CPU from 8 users (bench/serve.py --with-audit). Its work now runs in a thread of its own at
    the training niceness; the page's thread keeps its own, shows the work's progress, and gets
    its result or its error."""
    import os
    import threading

    from app_services.auditing import below_the_pages
    from cxrlib.runs import spawn

    if setting is None:
        monkeypatch.delenv(spawn.NICE_ENV, raising=False)
    else:
        monkeypatch.setenv(spawn.NICE_ENV, setting)
    mine = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, mine)
    shown = []

    def work(report):
        report("half way")
        time.sleep(0.2)
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), threading.get_native_id()

    niceness, worker = below_the_pages(work, lambda *a: shown.append(a), first=("starting",),
                                       poll_s=0.05)
    assert worker != mine
    assert niceness == max(expected, before)
    assert os.getpriority(os.PRIO_PROCESS, mine) == before
    assert shown[-1] == ("half way",) and all(a == ("half way",) for a in shown[1:])
    with pytest.raises(ZeroDivisionError):
        below_the_pages(lambda report: 1 / 0, lambda *a: None, poll_s=0.05)


def test_a_page_that_stops_stops_the_audits_work():
    """The page's thread is not stuck in the audit: a stop or a rerun (raised by Streamlit when
    the page shows progress) leaves at once, and the work ends at its next report instead of
    running on unseen (and a navigation away aborts the audit, as it did in the page's thread)."""
    from app_services.auditing import WorkStopped, below_the_pages

    class Rerun(Exception):
        pass

    ended = threading.Event()
    calls = []

    def work(report):
        try:
            while True:
                report()
                time.sleep(0.01)
        except WorkStopped:
            ended.set()
            raise

    def show():
        calls.append(1)
        if len(calls) == 3:
            raise Rerun

    started = time.monotonic()
    with pytest.raises(Rerun):
        below_the_pages(work, show, poll_s=0.05)
    assert time.monotonic() - started < 2
    assert ended.wait(2)
