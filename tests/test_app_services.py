"""Service-layer mechanics that need no page: the shared audit-report cache."""
from __future__ import annotations


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
