"""Service-layer mechanics that need no page: the shared audit-report cache."""
from __future__ import annotations

import threading


def test_audit_report_cache_is_bounded_lru_and_safe_across_threads():
    from app_services.auditing import _Reports

    reports = _Reports(3)
    for i in range(5):
        reports.put(("run", i), f"report {i}")
    assert [reports.get(("run", i)) for i in range(5)] == [None, None, "report 2", "report 3", "report 4"]
    reports.get(("run", 2))  # used: now the newest
    reports.put(("run", 5), "report 5")
    assert reports.get(("run", 3)) is None and reports.get(("run", 2)) == "report 2"

    shared = _Reports(50)

    def session(k: int) -> None:  # sessions are threads of one server process
        for i in range(200):
            shared.put((k, i), i)
            shared.get((k, i // 2))

    threads = [threading.Thread(target=session, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(shared.items) == 50


def test_the_audit_bar_is_not_left_full_while_later_steps_run():
    """Issue 26, bug 5: the bar sat full at "lung masks 200/200" for 38 of the audit's 85 s."""
    from app_services.auditing import progress_state

    assert progress_state("lung masks", 50, 200) == (0.25, "lung masks: 50/200")
    value, text = progress_state("lung masks", 200, 200)
    assert value < 1.0 and "200/200 done" in text and "running" in text
    assert progress_state("lung masks", 0, 0)[0] == 0.0
