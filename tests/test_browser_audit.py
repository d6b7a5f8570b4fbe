"""Browser tier: an audit outlives the page that started it, and its Stop button ends it.

Before, a user who left the Audit page mid-audit lost the audit (its process was ended with the
page's run) and found the Run button again. Now the audit runs for the server: leaving the page,
or coming back in another session, finds it running or its report kept.
"""
from __future__ import annotations

import os
import re
import signal

import pytest
from app_fixtures import app_workspace  # noqa: F401 (fixture: a workspace with a tiny run)
from test_browser import _chromium, _require_browser, _settle, _streamlit, _visit
from test_browser import driver  # noqa: F401 (fixture: Playwright's Chromium)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(app_workspace, synthetic_dataset, tmp_path_factory):  # noqa: F811
    """A server of this module's own: the other browser tests keep a report of the default
    audit in theirs."""
    _require_browser()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    with _streamlit(synthetic_dataset, app_workspace, log) as url:
        yield url


@pytest.fixture(scope="module")
def page(server, driver):  # noqa: F811
    with _chromium(driver) as tab:
        yield tab


def _audit_processes(url: str) -> list[int]:
    """The audit processes of the server at ``url`` (its spawned children)."""
    port = url.rsplit(":", 1)[1].encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                command = fh.read()
            with open(f"/proc/{pid}/stat") as fh:
                parent = fh.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{parent}/cmdline", "rb") as fh:
                parent_command = fh.read().split(b"\0")
        except OSError:
            continue
        if b"spawn_main" in command and b"--server.port" in parent_command \
                and parent_command[parent_command.index(b"--server.port") + 1] == port:
            found.append(int(pid))
    assert found, "no audit process found"
    return found


def _stop_button(tab):
    return tab.get_by_role("button", name="Stop the audit")


def test_the_stop_button_ends_the_audit(page, server):
    _visit(page, server, "audit")
    page.get_by_text("Also measure a source-adversarial head").click()  # options of its own
    _settle(page)
    page.get_by_role("button", name="Run the audit").click()
    _stop_button(page).wait_for()
    _stop_button(page).click()
    page.get_by_text("The audit was stopped before it finished").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Run the audit").wait_for()
    _settle(page)
    assert page.get_by_text("Metadata-only accuracy").count() == 0
    # no Stop button for an audit that has ended (it stayed, under "Auditing the run…", next to
    # the message), and no stale Run button either
    assert _stop_button(page).count() == 0
    assert page.get_by_role("button", name="Run the audit").count() == 1
    assert page.locator('[data-testid="stException"]').count() == 0


def test_an_audit_left_mid_way_goes_on_and_its_report_is_there_on_return(page, server):
    """Through the sidebar, as a user would, with an option switched on: the options are kept
    on return (the adversarial switch was not, so the page showed the Run button again)."""
    _visit(page, server, "audit")
    page.get_by_text("Also measure a source-adversarial head").click()
    _settle(page)
    page.get_by_role("button", name="Run the audit").click()
    _stop_button(page).wait_for()  # it has started: leave at once
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.get_by_role("link", name="Home", exact=True).click()
    page.get_by_role("heading", name="CXR Explorer", exact=True).first.wait_for()
    nav.get_by_role("link", name="Audit", exact=True).click()
    # no click: the running audit is shown, then its report
    page.get_by_text("Metadata-only accuracy").first.wait_for(timeout=180_000)
    _settle(page)
    assert page.get_by_role("button", name="Run the audit").count() == 0
    switch = page.locator('[data-testid="stCheckbox"]').filter(has_text="source-adversarial")
    assert switch.locator("input").is_checked()
    assert page.locator('[data-testid="stException"]').count() == 0


def test_an_audit_cut_short_by_a_server_restart_starts_again_on_the_next_server(
        app_workspace, synthetic_dataset, driver, tmp_path):  # noqa: F811
    """Issue 22: "a server restart resumes the queue". An audit running when its server stopped
    was lost: the next server showed the Run button. Now the next server starts it again, and
    its report comes with no click."""
    from test_browser import PAGES

    pending = app_workspace / "models" / "queue" / "audits"
    with _chromium(driver) as tab:
        with _streamlit(synthetic_dataset, app_workspace, tmp_path / "first.log") as url:
            _visit(tab, url, "audit")
            tab.get_by_role("button", name="Run the audit").click()
            tab.get_by_text(re.compile(r": \d+/\d+")).first.wait_for()  # at work
            # A restart (systemctl) sends SIGTERM to the service's every process: the audit's
            # may end first, and the server then saw "ended without a report" as the audit's end
            # and dropped its request (found in review). The worst order, for certain:
            for pid in _audit_processes(url):
                os.kill(pid, signal.SIGTERM)
            tab.get_by_text("Audit failed").first.wait_for()
        # the server has stopped mid-audit (SIGTERM, as a restart does): its request is left
        assert len(list(pending.glob("*.json"))) == 1
        with _streamlit(synthetic_dataset, app_workspace, tmp_path / "second.log") as url:
            path, title = PAGES["audit"]
            tab.goto(f"{url}/{path}")
            tab.get_by_role("heading", name=title, exact=True).first.wait_for()
            tab.get_by_text("Metadata-only accuracy").first.wait_for(timeout=180_000)
            _settle(tab)
            assert tab.get_by_role("button", name="Run the audit").count() == 0
            assert tab.locator('[data-testid="stException"]').count() == 0
            assert list(pending.glob("*.json")) == []
