"""Browser tier: the real server (``streamlit run``) driven by headless Chromium through Playwright.

Visits every page, moves the CLAHE slider with the keyboard and checks that the preview changes,
opens Explain and checks that an overlay image loads. Screenshots go to
``test-output/screenshots/`` (look at them). Skipped, saying why, without Chromium or Playwright.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import cv2
import pytest
from app_fixtures import ROOT, app_workspace  # noqa: F401 (fixture: a workspace with a tiny run)

from cxrlib.core.processes import stop_process

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CXR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = ROOT / "test-output" / "screenshots"
PAGES = {"home": ("", "CXR Explorer"), "dataset": ("dataset", "Dataset"),
         "preprocessing": ("preprocessing", "Preprocessing"), "training": ("training", "Training"),
         "evaluation": ("evaluation", "Evaluation"), "explain": ("explain", "Explain"),
         "audit": ("audit", "Audit")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def _require_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"browser tier skipped: {CHROMIUM} not found (install Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="browser tier skipped: playwright missing")


@contextmanager
def _streamlit(data_dir: Path, workspace: Path, log_path: Path, port: int | None = None):
    """``streamlit run`` on 127.0.0.1 at ``port`` (a free one by default); yields its URL once
    it is healthy."""
    port = port or _free_port()
    env = dict(os.environ, CXR_DATA_DIR=str(data_dir), CXR_WORKSPACE=str(workspace),
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
             "--server.headless", "true", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not _healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not become healthy; see {log_path}")
                time.sleep(0.25)
            yield url
        finally:
            stop_process(proc)


@pytest.fixture(scope="module")
def driver():
    """One Playwright driver for the module (the sync API allows one at a time)."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@contextmanager
def _chromium(pw, timeout_s: float = 90):
    """Headless Debian Chromium with a tall viewport (Streamlit scrolls an inner container)."""
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    tab = browser.new_page(viewport={"width": 1440, "height": 3000})
    tab.set_default_timeout(timeout_s * 1000)
    try:
        yield tab
    finally:
        browser.close()


@pytest.fixture(scope="module")
def server(app_workspace, synthetic_dataset, tmp_path_factory):
    """The app on the synthetic dataset, with the tiny run in its workspace."""
    _require_browser()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    with _streamlit(synthetic_dataset, app_workspace, log) as url:
        yield url


@pytest.fixture(scope="module")
def page(server, driver):
    with _chromium(driver) as tab:
        yield tab


def _settle(tab, timeout_s: float = 90) -> None:
    """Wait until the app's script run has finished (and stays finished for half a second)."""
    idle = """() => document.querySelector('[data-testid="stApp"]')
                       ?.getAttribute('data-test-script-state') === 'notRunning'"""
    for _ in range(2):
        tab.wait_for_function(idle, timeout=timeout_s * 1000)
        time.sleep(0.5)
    tab.locator('[data-testid="stSkeleton"]').first.wait_for(state="detached")


def _visit(tab, server: str, name: str) -> None:
    path, title = PAGES[name]
    tab.goto(f"{server}/{path}")
    tab.get_by_role("heading", name=title, exact=True).first.wait_for()
    _settle(tab)
    assert tab.locator('[data-testid="stException"]').count() == 0, f"traceback on {name}"


def _shoot(tab, name: str, folder: Path = SHOTS) -> Path:
    """Screenshot of the whole page: the viewport is fitted to the content's height first,
    because Streamlit scrolls an inner container and ``full_page`` stops at the viewport.

    Checks the file it writes (an old one is removed first): a PNG of the viewport's size that
    is not one flat colour (a blank or not-yet-painted page)."""
    height = tab.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMainBlockContainer"]');
        return main ? main.scrollHeight + 120 : 1600; }""")
    size = (max(900, min(int(height), 6000)), 1440)
    tab.set_viewport_size({"width": size[1], "height": size[0]})
    time.sleep(0.5)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    path.unlink(missing_ok=True)
    tab.screenshot(path=str(path))
    tab.set_viewport_size({"width": 1440, "height": 3000})
    shot = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert shot is not None, f"{path} is not a readable PNG"
    assert shot.shape == size, (path, shot.shape, size)
    assert shot.std() > 5, f"{path} is a blank page"
    return path


def _ready(tab, name: str) -> None:
    """Wait for what a page shows last: figures, or the Explain overlay."""
    if name in ("dataset", "evaluation"):
        tab.locator(".js-plotly-plot").first.wait_for()
    if name in ("review", "explain"):  # the film viewer: the film and its heatmap
        _viewer_ready(tab)
    _settle(tab)


VIEWER = ".cxv-port img.cxv-film"  # the film viewer's film (app_services/film_viewer.js)


def _viewer_ready(tab) -> None:
    """Wait until the film viewer has drawn the film and its layers (every image decoded)."""
    tab.locator(VIEWER).first.wait_for()
    for _ in range(600):
        if tab.locator(".cxv img").evaluate_all(
                "imgs => imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)"):
            return
        time.sleep(0.1)
    raise AssertionError("the film viewer's images never loaded")


def _panel_box(tab, index: int = 0) -> dict:
    """The page box of one viewer panel (0: the first, the original)."""
    return tab.locator(".cxv-port").nth(index).bounding_box()


def _view(tab) -> list[float]:
    """The film pixels the first panel shows: ``[x0, y0, x1, y1]`` (the viewer's data-view)."""
    return [float(v) for v in tab.locator(".cxv").first.get_attribute("data-view").split(",")]


def _image_src(tab, caption_start: str) -> str:
    figure = tab.locator('[data-testid="stImage"]').filter(has_text=caption_start).first
    figure.wait_for()
    return figure.locator("img").first.get_attribute("src")


def test_every_page_renders_without_a_traceback(page, server):
    for name in PAGES:
        _visit(page, server, name)
        _ready(page, name)
        _shoot(page, name)


def test_clahe_slider_changes_the_preview(page, server):
    _visit(page, server, "preprocessing")
    page.get_by_role("button", name="CLAHE → small CNN").click()
    _settle(page)
    before = _image_src(page, "Preprocessed: CLAHE 2 / 8×8")
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="CLAHE clip limit")
    thumb = slider.get_by_role("slider")
    thumb.focus()
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stImage"]')]
                .some(e => e.innerText.includes('CLAHE 5 / 8×8'))""")
    _settle(page)
    after = _image_src(page, "Preprocessed: CLAHE 5 / 8×8")
    assert after != before
    _shoot(page, "preprocessing-clahe")


def test_explain_shows_an_overlay(page, server):
    _visit(page, server, "explain")
    _viewer_ready(page)
    assert page.get_by_text("share of the maximum class evidence").count() >= 1  # colour bar
    _shoot(page, "explain")


def test_audit_report(page, server):
    _visit(page, server, "audit")
    page.get_by_role("button", name="Run the audit").click()
    page.get_by_text("Metadata-only accuracy").first.wait_for()
    _settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    _shoot(page, "audit-report")


@pytest.mark.realdata
def test_readme_screenshots(cxr3, tmp_path, request):
    """Refreshes ``docs/screenshots/`` on the real dataset. Opt-in: set ``CXR_README_WORKSPACE``
    to a workspace holding a finished run on it (e.g. ``python -m cxrlib train --data
    ../shared/datasets/cxr3 --model mobilenetv2 --mode head`` with ``CXR_WORKSPACE`` set)."""
    workspace = os.environ.get("CXR_README_WORKSPACE")
    if not workspace:
        pytest.skip("README screenshots are refreshed only when CXR_README_WORKSPACE is set")
    pw = request.getfixturevalue("driver")
    folder = ROOT / "docs" / "screenshots"
    log = tmp_path / "streamlit.log"
    with _streamlit(cxr3, Path(workspace), log) as url, _chromium(pw, 600) as tab:
        for name in ("home", "dataset", "preprocessing", "training", "evaluation", "explain"):
            _visit(tab, url, name)
            _ready(tab, name)
            _shoot(tab, name, folder)
        _visit(tab, url, "audit")
        tab.get_by_role("button", name="Run the audit").click()
        tab.get_by_text("Metadata-only accuracy").first.wait_for(timeout=600_000)
        _settle(tab, 600)
        _shoot(tab, "audit", folder)
    assert all((folder / f"{n}.png").stat().st_size > 10_000 for n in PAGES)


def test_explain_survives_hostile_uploads(page, server, tmp_path):
    """A bad file, a 20000 x 1 px strip, a 40 x 20000 px film and a MONOCHROME1 DICOM uploaded on
    Explain (issue 12): a clear message or the film, never an exception box."""
    import bad_files as bf

    _visit(page, server, "explain")
    page.get_by_text("Upload (PNG / JPEG / DICOM)").click()
    _settle(page)
    uploads = [
        ("bad", "broken.png", "image/png", b"\x89PNG\r\n\x1a\nrubbish", "Could not read this film"),
        ("strip", "strip.png", "image/png", bf.strip_png(),
         "Cannot explain this film: too small to classify: 20000 x 1 px"),
        ("long", "long.png", "image/png", bf.tall_strip_png(), "Original · long.png · 40×20000 px"),
        ("mono1", "mono1.dcm", "application/dicom", bf.dicom(tmp_path, "MONOCHROME1"),
         "Original · mono1.dcm · 64×64 px"),
    ]
    for shot, name, mime, data, expected in uploads:
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            files=[{"name": name, "mimeType": mime, "buffer": data}])
        page.get_by_text(expected).first.wait_for()
        _settle(page)
        assert page.locator('[data-testid="stException"]').count() == 0, f"traceback for {name}"
        if shot in ("long", "mono1"):
            _ready(page, "explain")
        _shoot(page, f"explain-upload-{shot}")
        if shot in ("long", "mono1"):  # the Explain class box names its choice after an upload
            box = page.get_by_role("combobox", name="Explain class")
            assert box.input_value() == "the predicted class"  # not the "Choose an option" placeholder


def test_review_is_saved_and_seen_again_after_a_reload(page, server):
    """The Review page in a real browser: give a name, save a (blinded) review, reload the page
    (a new session): the same run, film, reviewer and count come back from the address and the
    database, without asking the name again (issue 26); then a shared link in a fresh browser
    context opens the same view."""
    page.goto(f"{server}/review")
    page.get_by_role("heading", name="Review", exact=True).first.wait_for()
    _settle(page)
    name = "Your name (asked once per session; it goes with every review)"
    page.get_by_label(name).fill("Dr Browser")
    page.get_by_role("button", name="Start reviewing").click()
    page.get_by_role("button", name="Save review").wait_for()
    _settle(page)
    _ready(page, "review")
    _shoot(page, "review")
    address = page.evaluate("() => Object.fromEntries(new URL(location.href).searchParams)")
    film = address.get("film")
    assert film and address.get("run") and address.get("reviewer") == "Dr Browser"
    assert page.get_by_text("Labelled").count() == 0  # blinded until saved
    radios = page.locator('[data-testid="stRadio"]')
    radios.filter(has_text="Your reading of this film").get_by_text("Normal", exact=True).click()
    page.get_by_text("on markers, text or devices").click()
    page.get_by_label("Comment").fill("marker R, browser test")
    page.get_by_role("button", name="Save review").click()
    assert film.startswith("film ")  # blinded: the address names a code, not the path
    page.get_by_text("Review saved (Dr Browser, ").wait_for()
    _settle(page)
    assert page.get_by_text("You have reviewed 1 of").count() == 1
    _shoot(page, "review-saved")
    run_label = page.get_by_label("Current run").first.input_value()

    page.reload()  # a new session: nothing typed again
    page.get_by_text("You reviewed this film at").first.wait_for()
    _settle(page)
    again = page.evaluate("() => Object.fromEntries(new URL(location.href).searchParams)")
    assert (again["run"], again["film"], again["reviewer"]) == (address["run"], film, "Dr Browser")
    assert page.get_by_label("Current run").first.input_value() == run_label
    assert page.get_by_text("Reviewing as").count() == 1
    assert "marker R, browser test" in page.get_by_label("Comment").input_value()
    assert page.get_by_text("You have reviewed 1 of").count() == 1
    assert page.locator('[data-testid="stException"]').count() == 0
    _shoot(page, "review-reloaded")

    link = page.url
    context = page.context.browser.new_context(viewport={"width": 1440, "height": 3000})
    try:
        other = context.new_page()  # a colleague opening the shared link
        other.set_default_timeout(90_000)
        other.goto(link)
        other.get_by_text("You reviewed this film at").first.wait_for()
        _settle(other)
        assert other.get_by_label("Current run").first.input_value() == run_label
        assert other.get_by_text("You have reviewed 1 of").count() == 1
        assert other.evaluate("() => new URL(location.href).searchParams.get('film')") == film
    finally:
        context.close()


def test_zoom_resolves_a_one_pixel_line_of_a_3000_px_film(page, server):
    """Issue 26: the viewer shows the film at its native resolution. A synthetic 3000 x 3000
    film with a one-pixel-wide bright line is uploaded on Explain; zoomed in (the viewer's own
    zoom), the line is a bright band several screen pixels wide on the Original panel. Reports
    how long the film took to appear."""
    import json

    import numpy as np

    film = np.tile(np.linspace(40, 120, 3000).astype(np.uint8)[:, None], (1, 3000))
    film[:, 1500] = 250  # the planted line, one pixel wide
    data = cv2.imencode(".png", film)[1].tobytes()
    _visit(page, server, "explain")
    page.get_by_text("Upload (PNG / JPEG / DICOM)").click()
    _settle(page)
    start = time.monotonic()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "line3000.png", "mimeType": "image/png", "buffer": data}])
    page.get_by_text("Original · line3000.png · 3000×3000 px").first.wait_for()
    _viewer_ready(page)
    seconds = time.monotonic() - start
    _settle(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "viewer-3000px.json").write_text(json.dumps({"film_px": 3000, "seconds_to_appear":
                                                          round(seconds, 2)}))
    box = _panel_box(page)
    whole = cv2.imdecode(np.frombuffer(page.screenshot(clip=box), np.uint8), cv2.IMREAD_GRAYSCALE)
    # zoom with the mouse wheel over the line, as a reader does, to under 80 film pixels
    x_line = box["x"] + (1500.5 / 3000) * box["width"]
    page.mouse.move(x_line, box["y"] + box["height"] / 2)
    span = lambda: _view(page)[0::2]  # noqa: E731 - x0, x1
    for _ in range(60):
        r0, r1 = span()
        if r1 - r0 < 80:
            break
        x_line = box["x"] + (1500.5 - r0) / (r1 - r0) * box["width"]
        page.mouse.move(x_line, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -300)
        time.sleep(0.15)
    time.sleep(1.0)
    r0, r1 = span()
    assert r1 - r0 < 80, (r0, r1)  # the wheel zoomed in
    box = _panel_box(page)
    zoomed = cv2.imdecode(np.frombuffer(page.screenshot(clip=box), np.uint8), cv2.IMREAD_GRAYSCALE)
    columns = zoomed[zoomed.shape[0] // 4: 3 * zoomed.shape[0] // 4].mean(axis=0)
    bright = columns > 200
    expected = (1500.5 - r0) / (r1 - r0) * zoomed.shape[1]
    assert bright.any(), (columns.max(), seconds)
    assert abs(np.flatnonzero(bright).mean() - expected) < 0.02 * zoomed.shape[1]  # where it is
    assert 4 <= bright.sum() <= 0.1 * len(columns)  # one film pixel: a few screen pixels wide
    assert np.median(columns) < 130  # the rest is the film's dark gradient
    assert whole.shape[1] < 3000 * 0.5  # the whole film was shrunk on screen before the zoom
    stages = page.locator(".cxv-stage").evaluate_all("s => s.map(e => e.style.transform)")
    assert len(stages) == 2 and stages[0] == stages[1]  # the heatmap panel zoomed with it
    page.locator(".cxv-port").first.dblclick()
    assert span()[1] - span()[0] > 2900  # double click: the whole film again
    # the readout names the film pixel under the pointer (it was 5-6 px off: the panel's border)
    x0, y0, x1, y1 = _view(page)
    port = page.locator(".cxv-port").first
    left, top, width, height = port.evaluate(
        "p => [p.clientLeft, p.clientTop, p.clientWidth, p.clientHeight]")
    box = port.bounding_box()
    page.mouse.move(box["x"] + left + (1200.5 - x0) / (x1 - x0) * width,
                    box["y"] + top + (1700.5 - y0) / (y1 - y0) * height)
    said = page.locator(".cxv-readout").first.text_content()
    x, y = (int(v) for v in said.split(" ·")[0].replace("x ", "").replace("y ", "").split(", "))
    assert abs(x - 1200) <= 1 and abs(y - 1700) <= 1, said
    _shoot(page, "explain-zoomed-3000")


def test_a_deep_link_on_a_fresh_server_runs_the_router(driver, app_workspace, synthetic_dataset,
                                                       tmp_path):
    """A bookmarked page opened first after a restart: the sidebar and the page, not Streamlit's
    legacy pages-folder mode (which a ``pages/`` folder beside the entry file used to trigger)."""
    with _streamlit(synthetic_dataset, app_workspace, tmp_path / "streamlit.log") as url, \
            _chromium(driver) as tab:
        _visit(tab, url, "preprocessing")
        assert tab.get_by_label("Dataset folder", exact=True).count() >= 1  # the router's sidebar ran
        assert tab.get_by_text("No dataset is open").count() == 0


def _small_shot(tab, name: str, folder: Path, max_bytes: int = 300_000) -> Path:
    """A screenshot for the docs: the page shrunk to 960 px wide and cut until under 300 KB."""
    path = _shoot(tab, name, SHOTS)
    image = cv2.imread(str(path))
    image = cv2.resize(image, (960, round(image.shape[0] * 960 / image.shape[1])),
                       interpolation=cv2.INTER_AREA)
    out = folder / f"{name}.png"
    for height in (image.shape[0], 2400, 1800, 1400, 1000):
        cv2.imwrite(str(out), image[:height], [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if out.stat().st_size < max_bytes:
            break
    return out


def test_issue26_screenshots(driver, server, app_workspace, synthetic_dataset, monkeypatch):
    """Refreshes ``docs/screenshots/issue26-*.png`` (the pages issue 26 changed). Opt-in: set
    ``CXR_ISSUE26_SHOTS=1``."""
    if not os.environ.get("CXR_ISSUE26_SHOTS"):
        pytest.skip("issue 26 screenshots are refreshed only when CXR_ISSUE26_SHOTS is set")
    from app_fixtures import tiny_config

    from cxrlib.runs import runner

    monkeypatch.setenv("CXR_WORKSPACE", str(app_workspace))
    first = runner.train_foreground(tiny_config(synthetic_dataset))
    second = runner.train_foreground(tiny_config(synthetic_dataset, epochs=3))
    folder = ROOT / "docs" / "screenshots"
    with _chromium(driver) as tab:
        tab.goto(f"{server}/evaluation?run={first.id}&compare={second.id}")
        tab.get_by_text("Is the difference real?").first.wait_for()
        tab.locator(".js-plotly-plot").first.wait_for()
        _settle(tab)
        _small_shot(tab, "issue26-evaluation-compare", folder)
        tab.goto(f"{server}/explain?run={first.id}")
        _viewer_ready(tab)
        _settle(tab)
        tab.get_by_role("combobox", name="Compare methods (2-4, side by side, synchronised)").click()
        for method in ("Grad-CAM", "Grad-CAM++", "EigenCAM"):
            tab.get_by_role("option", name=method, exact=True).click()
        tab.keyboard.press("Escape")
        tab.locator(".cxv-title", has_text="EigenCAM").first.wait_for()
        _settle(tab)
        _small_shot(tab, "issue26-explain-compare", folder)
        tab.goto(f"{server}/review?run={first.id}&reviewer=Dr%20Shot")
        _viewer_ready(tab)
        _settle(tab)
        _small_shot(tab, "issue26-review-blinded", folder)
        tab.goto(f"{server}/training")
        tab.get_by_label("Epochs (maximum, at most 200)").first.fill("300")
        tab.keyboard.press("Enter")
        tab.get_by_text("At most 200 epochs").first.wait_for()
        _settle(tab)
        _small_shot(tab, "issue26-training-epochs", folder)
        tab.goto(f"{server}/preprocessing")
        tab.get_by_text("Greyed sliders belong").first.wait_for()
        _settle(tab)
        _small_shot(tab, "issue26-preprocessing", folder)
    assert all(p.stat().st_size < 300_000 for p in folder.glob("issue26-*.png"))
