"""An audit in a process of its own (issue 22: one user's audit must not take the pages' CPU):
the same report as in the caller, at the niceness asked, its progress and its errors carried
back, and stopped at once when the caller stops."""
from __future__ import annotations

import multiprocessing
import os
import time

import pandas as pd
import pytest
from app_fixtures import app_workspace, trained_run  # noqa: F401

from cxrlib.audit import audit_run
from cxrlib.audit.background import AuditProcessError, AuditProcessLost, audit_in_process

STEPS = ("attention", "masked")


def test_the_child_gives_the_callers_report_at_its_niceness(trained_run):
    seen, niceness = [], []

    def check():
        for child in multiprocessing.active_children():
            if child.name == "cxr-audit":
                niceness.append(os.getpriority(os.PRIO_PROCESS, child.pid))

    report = audit_in_process(trained_run, niceness=13, steps=STEPS, check=check,
                              progress=lambda *step: seen.append(step))
    here = audit_run(trained_run, steps=STEPS)
    pd.testing.assert_frame_equal(report.attention, here.attention)
    untimed = lambda r: {k: v for k, v in r.summary().items() if k != "timings"}  # noqa: E731
    assert untimed(report) == untimed(here)
    assert seen and all(len(step) == 3 for step in seen)
    assert niceness and niceness[-1] == max(13, os.nice(0))
    assert not [c for c in multiprocessing.active_children() if c.name == "cxr-audit"]


def test_an_error_in_the_child_is_one_line_here(trained_run, tmp_path):
    missing = tmp_path / "no such folder"
    with pytest.raises(Exception) as here:
        audit_run(trained_run, steps=("per_source",), external=str(missing))
    with pytest.raises(AuditProcessError) as there:
        audit_in_process(trained_run, niceness=10, progress=lambda *a: None,
                         steps=("per_source",), external=str(missing))
    assert str(there.value) == str(here.value)
    assert not isinstance(there.value, AuditProcessLost)  # it failed: not cut short


def test_a_child_killed_from_outside_is_lost_not_failed(trained_run):
    """A server that stops ends its audit's process first (SIGTERM to the service, or
    multiprocessing ending its daemon children at exit): the audit was cut short, not failed,
    and a restart may start it again."""
    import signal

    def check():
        for child in multiprocessing.active_children():
            if child.name == "cxr-audit" and child.is_alive():
                os.kill(child.pid, signal.SIGTERM)

    with pytest.raises(AuditProcessLost, match="ended without a report"):
        audit_in_process(trained_run, niceness=10, progress=lambda *a: None, check=check)


def test_a_caller_that_stops_stops_the_child_at_once(trained_run):
    class Left(Exception):
        pass

    started = time.monotonic()

    def check():
        if time.monotonic() - started > 1.0:
            raise Left

    with pytest.raises(Left):
        audit_in_process(trained_run, niceness=10, progress=lambda *a: None, check=check)
    assert time.monotonic() - started < 15
    assert not [c for c in multiprocessing.active_children() if c.name == "cxr-audit"]
