"""Browser tier: ``bench/serve.py``'s wait for the end of an action (issue 22).

The bench used Playwright's ``wait_for_function``, which tests its condition on every animation
frame: 8 waiting tabs drew frames all the time on the 2 cores the server shares. ``_until`` tests
on each change of the page instead; these tests check that it still sees every kind of change
the bench waits for (an attribute, an image that finishes loading), and that it fails in time.
"""
from __future__ import annotations

import sys
import time

import cv2
import numpy as np
import pytest
from app_fixtures import ROOT
from local_http import serve
from test_browser import CHROMIUM, CHROMIUM_ARGS, _require_browser

pytestmark = pytest.mark.browser
sys.path.insert(0, str(ROOT / "bench"))
from serve import _IMAGES, _until  # noqa: E402


@pytest.fixture(scope="module")
def tab():
    _require_browser()
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser.new_page()
        browser.close()


def test_until_resolves_on_the_attribute_change_it_waits_for(tab):
    tab.set_content('<div id="app" data-state="running"></div><script>setTimeout(() => '
                    'document.getElementById("app").setAttribute("data-state", "notRunning"), '
                    '400)</script>')
    started = time.perf_counter()
    assert tab.evaluate(_until("() => document.getElementById('app')"
                               ".getAttribute('data-state') === 'notRunning'"), 10_000) is True
    waited = time.perf_counter() - started
    assert 0.3 <= waited < 5.0, waited  # it waited for the change, and saw it when it came
    assert tab.get_attribute("#app", "data-state") == "notRunning"


@pytest.fixture(params=['<div data-testid="stImage">{}</div>', '<div class="cxv">{}</div>'],
                ids=["st.image", "film viewer"])
def holder(request):
    return request.param


def test_until_sees_an_image_finish_loading_without_any_mutation(tab, holder):
    """An image's load changes no attribute: only the load event can tell the bench. The image
    comes from a server of the test's own that answers 0.6 s late; in an ``st.image`` or in the
    film viewer (both are images the bench waits for)."""
    png = cv2.imencode(".png", np.full((4, 6), 200, np.uint8))[1].tobytes()

    server, base = serve(lambda path: (200, "image/png", png), delay_s=0.6)
    try:
        url = f"{base}/film.png"
        # not waiting for the page's load event, which waits for the image
        tab.set_content(holder.format(f'<img src="{url}">'), wait_until="domcontentloaded")
        started = time.perf_counter()
        assert tab.evaluate(_until(_IMAGES), 10_000) is True
        waited = time.perf_counter() - started
        assert tab.evaluate("() => document.querySelector('img').naturalWidth") == 6
    finally:
        server.shutdown()
        server.server_close()
    assert 0.2 <= waited < 5.0, waited


def test_until_fails_after_its_limit_when_the_condition_never_holds(tab):
    tab.set_content('<div id="app" data-state="running"></div>')
    started = time.perf_counter()
    with pytest.raises(Exception, match="not met in 300 ms"):
        tab.evaluate(_until("() => document.getElementById('app')"
                            ".getAttribute('data-state') === 'notRunning'"), 300)
    assert time.perf_counter() - started < 5.0
