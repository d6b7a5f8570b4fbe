"""Browser tier: a server with a login (issue 22, section 4).

Starts an OpenID Connect provider for tests (``oidc-provider-mock``) on 127.0.0.1, the real
server with an ``[auth]`` section pointing at it, and headless Chromium; logs in as a subject,
saves a review on the Review page, and checks that the review database stored the provider's
issuer and that subject. Skipped, saying why, without Chromium, Playwright or the provider.
"""
from __future__ import annotations

import json
import shutil
import threading
import urllib.request

import pytest
from app_fixtures import app_workspace  # noqa: F401 (fixture: a workspace with a tiny run)
from test_browser import _chromium, _free_port, _require_browser, _settle, _streamlit

pytestmark = pytest.mark.browser

SUBJECT = "radiologist-7"


@pytest.fixture
def provider():
    """An OIDC provider for tests on 127.0.0.1 (any client id and secret are accepted)."""
    _require_browser()
    mock = pytest.importorskip("oidc_provider_mock",
                               reason="browser login test skipped: oidc-provider-mock missing "
                                      "(pip install -r requirements-dev.txt)")
    pytest.importorskip("authlib", reason="browser login test skipped: authlib missing "
                                          "(st.login needs it; pip install -r requirements.txt)")
    import werkzeug.serving

    server = werkzeug.serving.make_server("127.0.0.1", _free_port(), mock.app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_logged_in_reviewer_is_stored_with_the_providers_issuer_and_subject(
        provider, app_workspace, synthetic_dataset, tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    from cxrlib.reviews import ReviewStore

    workspace = tmp_path / "ws"  # a copy: the review stays out of the shared app workspace
    shutil.copytree(app_workspace / "models" / "runs", workspace / "models" / "runs")
    port = _free_port()
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "a test cookie secret that is long enough"\n'
        'client_id = "cxr-explorer"\nclient_secret = "test-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n')
    monkeypatch.setenv("STREAMLIT_SECRETS_FILES", str(secrets))
    monkeypatch.setenv("CXR_REVIEWERS", SUBJECT)
    with urllib.request.urlopen(f"{provider}/.well-known/openid-configuration", timeout=10) as r:
        issuer = json.load(r)["issuer"]
    with _streamlit(synthetic_dataset, workspace, tmp_path / "streamlit.log", port=port) as url, \
            sync_playwright() as pw, _chromium(pw) as tab:
        tab.goto(f"{url}/review")
        _settle(tab)
        tab.get_by_role("button", name="Log in").click()
        tab.locator('input[name="sub"]').fill(SUBJECT)  # the provider's own form
        tab.get_by_role("button", name="Authorize").click()
        tab.wait_for_url(f"{url}/**")
        tab.goto(f"{url}/review?blind=0")  # unblinded: the form asks agree / disagree
        _settle(tab)
        tab.get_by_text(f"Logged in as {SUBJECT}").wait_for()
        assert tab.get_by_text("Your name (asked once per session").count() == 0
        for question, answer in (("Agree with the label", "Yes"),
                                 ("Agree with the prediction", "No"),
                                 ("Where does the heatmap fall?", "on markers, text or devices")):
            group = tab.locator('[data-testid="stRadio"]').filter(has_text=question)
            group.get_by_text(answer, exact=True).click()
        tab.get_by_role("button", name="Save review").click()
        tab.get_by_text(f"Review saved ({SUBJECT}, ").wait_for()
        assert tab.locator('[data-testid="stException"]').count() == 0
    monkeypatch.setenv("CXR_WORKSPACE", str(workspace))
    stored = ReviewStore().reviews()
    assert stored[["reviewer", "issuer", "subject"]].values.tolist() == [[SUBJECT, issuer, SUBJECT]]
    assert issuer == provider  # the provider's own issuer, not a name anyone typed
