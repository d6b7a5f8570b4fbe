"""Benchmark: concurrent users on the real server (issue 22, section 4).

    .venv/bin/python bench/serve.py [--sessions 8] [--rounds 4] [--quick] [--data DIR] [--no-profile]

Starts ``streamlit run`` on 127.0.0.1 over a fresh workspace holding one finished run (the quick
MobileNetV2 head run of the Home page, trained first in this process), then drives headless
Chromium (``/usr/bin/chromium``) through Playwright: one browser, one context (its own cookies,
so its own Streamlit session) per user. Each user, each round, through the sidebar as a person
would: opens Explain (``explain_open``), picks another film (``explain_film``) and another CAM
method (``explain_method``; users start on different films and methods), opens Evaluation
(``evaluation_open``), opens Review (``review_open``; the first time it types the reviewer's name)
and saves a review (``review_save``). An action's time runs from the click until the app's script
run has ended (seen through ``data-test-script-state``) and every image on the page has loaded.

First one user alone does two rounds (the first warms the caches): ``single_user_s`` is the median
of its second round's actions, and ``alone_cost`` says what each of those actions cost: the CPU
seconds of the Chromium processes and of the server, and the kilobytes the server sent over the
app's websocket (medians per action; with one user, every CPU second is that user's). Then ``--sessions`` users run ``--rounds`` rounds at once; the
server's resident memory (``VmRSS`` of its process) is read after each round. ``exceptions``:
exception boxes the app showed plus actions that failed or timed out. ``rss_growth``: memory after
round 4 over round 2, minus 1 (with fewer rounds, the last over the second; null with one round).
``warm_p95_s``: the p95 of rounds 2 and later only, once every tab has drawn each page (a tab's
first visit loads the page's JavaScript, plotly's among it, on the cores the server shares here).
``cpu_s``: the CPU seconds the server, the Chromium processes, the training process and the
audit's process (while it runs) used while the users clicked, and the wall seconds that took
(``crowd_wall_s``): in this bench the browsers share the server's cores, which a department's
users' own machines would not.

``--no-profile`` skips the profile of one Explain action: in this process, on the run's model and
the largest film of ``--profile-data`` (default ``../shared/datasets/cxr3-fullres``), the seconds of each step the Explain page's services take, warm
(film decode, preprocessing, CAM, native-size overlay, JPEG encoding as ``st.image`` does, lung
segmentation, the deletion test).

Data: ``--data``, else ``../shared/datasets/cxr3`` (``--quick``: the bundled 120-film sample).
``--with-training`` starts a full fine-tune in the background (through the queue) as the users
begin, so the per-action times say whether one user's training freezes the others' pages.
``--with-audit``: one more user opens Audit and runs the audit as the others begin (the audit runs
in a process of its own); ``audit.run_s`` is how long it took, and whether it ended while the others
clicked. ``--viewport WxH``: each browser's page size (default 1440x2400, the bench's first
setting, taller than most screens: more page to lay out and paint in software, as headless
Chromium does here). ``--quick`` means 2 users x 1 round. The full default (8 x 4) takes long on a 2-core CPU; run it on
a quiet machine. Last line: JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _common import ROOT, SHARED, isolated_env

CHROMIUM = Path(os.environ.get("CXR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ACTIONS = ("explain_open", "explain_film", "explain_method", "evaluation_open", "review_open",
           "review_sign_in", "review_save")
CANDIDATE_METHODS = ("gradcam++", "hirescam", "xgradcam", "gradcam", "layercam", "eigencam")


@functools.lru_cache(maxsize=1)
def _methods() -> tuple[str, ...]:
    """The readable names of the methods users switch to: never the Explain page's default
    (``ExplainConfig().method``), so every pick is a change and causes a rerun."""
    from cxrlib import explain
    from cxrlib.core.config import ExplainConfig

    default = ExplainConfig().method
    return tuple(explain.method_label(m) for m in CANDIDATE_METHODS if m != default)


ACTION_TIMEOUT_S = 300
AUDIT_TIMEOUT_S = 1800

# The app's script state: a MutationObserver notes that a run began, so a quick run is not missed
# (the old values of the records: a run that began and ended before the callback still shows).
_ARM = """() => { const app = document.querySelector('[data-testid="stApp"]');
  const key = 'data-test-script-state';
  window.__cxrRan = false; if (window.__cxrObs) window.__cxrObs.disconnect();
  window.__cxrObs = new MutationObserver(records => {
    if (app.getAttribute(key) === 'running' || records.some(r => r.oldValue === 'running'))
      window.__cxrRan = true; });
  window.__cxrObs.observe(app, {attributes: true, attributeOldValue: true,
                                attributeFilter: [key]}); }"""
_IDLE = """() => document.querySelector('[data-testid="stApp"]')
  ?.getAttribute('data-test-script-state') === 'notRunning'"""
_RAN_AND_IDLE = f"() => window.__cxrRan === true && ({_IDLE})()"
VIEWER = '.cxv-port img.cxv-film'
"""The film viewer of Explain and Review, drawn (``app_services/film_viewer.js``; its images are
among those ``_IMAGES`` waits for)."""
REVIEW_FORM = '[data-testid="stRadio"]:has-text("Where does the heatmap fall?")'
"""The review form's last question: the form is drawn (the name form before it is a form too)."""
_IMAGES = """() => [...document.querySelectorAll('[data-testid="stImage"] img, .cxv img')]
  .every(img => img.complete && img.naturalWidth > 0)"""


def _until(predicate: str) -> str:
    """JavaScript that resolves once ``predicate`` (a JS function) holds, tested on each change
    of the page (a DOM mutation, an image loaded) and never in between, or fails after the
    milliseconds it is given. Playwright's ``wait_for_function`` tests on every animation frame:
    in a bench run that made 8 waiting tabs draw frames all the time (about 0.03 CPU s per
    second of waiting per tab, measured), on the cores the server shares."""
    return f"""limit => new Promise((resolve, reject) => {{
  const met = {predicate};
  const observer = new MutationObserver(() => check());
  const timer = setTimeout(() => {{ stop(); reject(new Error(`not met in ${{limit}} ms`)); }}, limit);
  function stop() {{ observer.disconnect(); document.removeEventListener('load', check, true);
    clearTimeout(timer); }}
  function check() {{ if (met()) {{ stop(); resolve(true); }} }}
  observer.observe(document, {{subtree: true, childList: true, attributes: true,
                               characterData: true}});
  document.addEventListener('load', check, true);
  check();
}})"""


# -- set-up -----------------------------------------------------------------------------------
def _prepare(data: Path) -> str:
    """Train (or find) the quick MobileNetV2 head run on ``data`` in the bench's workspace."""
    from app_services.firstrun import quick_run_config
    from cxrlib.data.datasets import scan_dataset
    from cxrlib.runs import runner

    ds = scan_dataset(data).for_task("3class")
    run = runner.train_foreground(quick_run_config(ds, "3class"), fingerprint=ds.fingerprint)
    status = run.status()
    if status.get("state") != "done":
        raise SystemExit(f"the bench's run did not finish: {status.get('error') or status}")
    return run.id


def _fresh_reviews(workspace: Path) -> None:
    """Every run starts with no reviews: a kept workspace's earlier ones made its Review page
    heavier from run to run (468 reviews after a few runs). They are moved aside, not deleted."""
    from cxrlib.reviews.store import FILE_NAME

    found = sorted(workspace.glob(f"{FILE_NAME}*"))  # the database, its WAL and shared memory
    if not found:
        return
    aside = workspace / "bench-reviews" / time.strftime("%Y%m%dT%H%M%S")
    aside.mkdir(parents=True, exist_ok=True)
    for path in found:
        path.rename(aside / path.name)


def _no_leftover_audits() -> None:
    """An audit left by an earlier bench run that was stopped mid-audit would be started again
    by this run's server (a restart resumes audits) and load the crowd: its request is
    withdrawn first, and said."""
    from cxrlib.audit import pending

    for request in pending.pending():
        request["file"].unlink(missing_ok=True)
        print(f"withdrew an audit of run {request['run']} left by an earlier bench run",
              flush=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = dict(os.environ, CXR_DATA_DIR=str(data), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
         "--server.headless", "true", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"streamlit did not become healthy; see {log}")
        time.sleep(0.25)


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _cpu_s(server_pid: int, training_pid: int | None) -> dict[str, float]:
    """CPU seconds used so far by the server, by every Chromium process, by the training
    process, and by the server's audit processes (``/proc``; processes that have ended are not
    counted)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"server": 0.0, "browsers": 0.0, "training": 0.0, "audit": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        pid = int(entry.name)
        if pid == server_pid:
            out["server"] += used
        elif pid == training_pid:
            out["training"] += used
        elif int(fields[1]) == server_pid and b"multiprocessing" in cmd:  # cxrlib.audit.background
            out["audit"] += used
        elif CHROMIUM.name.encode() in cmd.split(b"\0", 1)[0]:
            out["browsers"] += used
    return out


# -- one user ---------------------------------------------------------------------------------
class User:
    """One browser context: its own cookies, so its own Streamlit session."""

    def __init__(self, index: int, context, url: str, films: list[str], log: dict) -> None:
        self.index, self.context, self.url, self.films, self.log = index, context, url, films, log
        self.tab = None
        self.named = False
        self.meter = None  # (server pid): measure each action's CPU and websocket bytes
        self.ws_bytes = 0

    async def _act(self, name: str, do, ready: str | None = None, page: str | None = None,
                   timeout_s: float | None = None) -> None:
        """Time ``do``: until the app's script run it caused has ended, ``ready`` is on the
        page, and every image has loaded. ``page``: a page switch, done when that page's title
        is drawn and the app is idle (a fast page's run can start and end between two frames,
        so its 'running' state is never drawn and cannot be waited for)."""
        tab = self.tab
        limit = (timeout_s or ACTION_TIMEOUT_S) * 1000
        started = time.perf_counter()
        cpu_before, ws_before = (_cpu_s(self.meter, None), self.ws_bytes) if self.meter else (
            None, 0)
        try:
            await tab.evaluate(_ARM)
            await do()
            if page is None:
                await tab.evaluate(_until(_RAN_AND_IDLE), limit)
            else:
                await tab.locator(f'[data-testid="stMain"] h1:has-text("{page}")').first.wait_for(
                    timeout=limit)
            if ready:
                await tab.locator(ready).first.wait_for(timeout=limit)
            await tab.evaluate(_until(_IDLE), limit)
            await tab.evaluate(_until(_IMAGES), limit)
            seconds = time.perf_counter() - started
            boxes = await tab.locator('[data-testid="stException"]').count()
            self.log["times"].setdefault(name, []).append(seconds)
            if self.log.get("round", 0) > 0:  # every page drawn once in this tab already
                self.log.setdefault("warm", []).append(seconds)
            self.log["exceptions"] += boxes
            if cpu_before is not None:
                cpu = _cpu_s(self.meter, None)
                self.log.setdefault("cost", {}).setdefault(name, []).append(
                    {"browser_cpu_s": cpu["browsers"] - cpu_before["browsers"],
                     "server_cpu_s": cpu["server"] - cpu_before["server"],
                     "ws_kb": (self.ws_bytes - ws_before) / 1024})
            print(f"user {self.index} {name}: {seconds:.2f} s", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 - a failed action is counted, the others go on
            self.log["exceptions"] += 1
            self.log["failures"].append(f"user {self.index} {name}: {type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0][:160]}")
            print(f"user {self.index} {name}: FAILED {self.log['failures'][-1]}", file=sys.stderr,
                  flush=True)
            shot = Path(os.environ["CXR_WORKSPACE"]) / f"failed-{self.index}-{name}.png"
            with contextlib.suppress(Exception):
                await tab.screenshot(path=str(shot))

    async def open(self) -> None:
        self.tab = await self.context.new_page()
        self.tab.set_default_timeout(ACTION_TIMEOUT_S * 1000)
        if self.meter:
            self.tab.on("websocket", lambda ws: ws.on("framereceived", self._received))
        await self.tab.goto(self.url)
        # A user acts once the first page has drawn (the script state reads "notRunning" before
        # the first run has even started).
        await self.tab.locator('[data-testid="stMain"] h1').first.wait_for()
        await self.tab.evaluate(_until(_IDLE), ACTION_TIMEOUT_S * 1000)

    def _received(self, payload) -> None:
        self.ws_bytes += len(payload)

    async def audit(self) -> None:
        """Opens Audit and runs the audit of the bench's run through the app, as a user would."""
        await self._act("audit_open", lambda: self._nav("Audit"), page="Audit")
        await self._act("audit_run", self.tab.get_by_role("button", name="Run the audit").click,
                        '[data-testid="stMetric"]', timeout_s=AUDIT_TIMEOUT_S)

    async def _nav(self, page: str) -> None:
        await self.tab.locator('[data-testid="stSidebarNav"]').get_by_role(
            "link", name=page, exact=True).click()

    async def _pick(self, label: str, text: str) -> None:
        box = self.tab.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
        await box.locator("input").click()
        await box.locator("input").fill(text)
        # the first option that says it, once the list shows it (under load, an Enter pressed
        # before the list had filtered picked nothing, and the action waited for a run in vain)
        await self.tab.get_by_role("option").filter(has_text=text).first.click()

    async def round(self, r: int) -> None:
        # Never the page's default (the first film, Grad-CAM), never last round's: always a change.
        film = self.films[1 + (3 * self.index + r) % (len(self.films) - 1)]
        methods = _methods()
        method = methods[(self.index + r) % len(methods)]
        await self._act("explain_open", lambda: self._nav("Explain"), VIEWER, page="Explain")
        await self._act("explain_film", lambda: self._pick("Film", film))
        await self._act("explain_method", lambda: self._pick("Method", method))
        await self._act("evaluation_open", lambda: self._nav("Evaluation"), ".js-plotly-plot",
                        page="Evaluation")
        await self._act("review_open", lambda: self._nav("Review"), page="Review")
        if not self.named:
            await self._act("review_sign_in", self._sign_in, REVIEW_FORM)
            self.named = True
        await self._act("review_save", self._save_review, '[data-testid="stAlert"]')

    async def _sign_in(self) -> None:
        await self.tab.get_by_label("Your name").fill(f"Bench user {self.index}")
        await self.tab.get_by_role("button", name="Start reviewing").click()

    async def _save_review(self) -> None:
        tab = self.tab
        radios = tab.locator('[data-testid="stRadio"]')
        await tab.locator(REVIEW_FORM).first.wait_for()  # the review form, not the name form
        if await radios.filter(has_text="Your reading of this film").count():  # blinded, first time
            questions = (("Your reading of this film", "Normal"),)
        else:  # a film this user reviewed before: the label and the prediction show
            questions = (("Agree with the label", "Yes"), ("Agree with the prediction", "No"))
        for question, answer in (*questions,
                                 ("Where does the heatmap fall?", "elsewhere in the lungs")):
            group = tab.locator('[data-testid="stRadio"]').filter(has_text=question)
            await group.get_by_text(answer, exact=True).click()
        await tab.get_by_role("button", name="Save review").click()


async def _drive(url: str, films: list[str], sessions: int, rounds: int, server_pid: int,
                 before_crowd=None, training_pid_of=None, audit: bool = False,
                 viewport: tuple[int, int] = (1440, 2400)) -> dict:
    from playwright.async_api import async_playwright

    alone = {"times": {}, "exceptions": 0, "failures": []}
    crowd = {"times": {}, "exceptions": 0, "failures": []}
    audited = {"times": {}, "exceptions": 0, "failures": []}
    rss = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        viewport = {"width": viewport[0], "height": viewport[1]}
        solo = User(sessions, await browser.new_context(viewport=viewport), url, films, alone)
        solo.meter = server_pid
        await solo.open()
        await solo.round(0)  # warms the server's caches
        alone["times"], alone["cost"] = {}, {}
        await solo.round(1)
        await solo.context.close()
        rss.append(_rss_mb(server_pid))
        if before_crowd is not None:
            before_crowd()
        users = [User(i, await browser.new_context(viewport=viewport), url, films, crowd)
                 for i in range(sessions)]
        auditor = (User(sessions + 1, await browser.new_context(viewport=viewport), url, films,
                        audited) if audit else None)
        await asyncio.gather(*(u.open() for u in users + ([auditor] if auditor else [])))
        training_pid = training_pid_of() if training_pid_of else None
        cpu_before, crowd_started = _cpu_s(server_pid, training_pid), time.perf_counter()
        auditing = asyncio.create_task(auditor.audit()) if auditor else None
        for r in range(rounds):
            crowd["round"] = r
            await asyncio.gather(*(u.round(r) for u in users))
            rss.append(_rss_mb(server_pid))
        cpu_after = _cpu_s(server_pid, training_pid)
        crowd_s = time.perf_counter() - crowd_started
        if auditing is not None:  # its whole time, even when it outlasts the crowd
            audited["ended_during_crowd"] = auditing.done()
            await auditing
        await browser.close()
    # Where the cores went while the users clicked (the browsers share them in this bench).
    cpu = {k: round(cpu_after[k] - cpu_before[k], 1) for k in cpu_after}
    cpu["crowd_wall_s"] = round(crowd_s, 1)
    return {"alone": alone, "crowd": crowd, "rss_after_warmup": rss[0], "rss": rss[1:],
            "cpu_s": cpu, "audit": audited if audit else None}


def _q(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 2)


def _alone_cost(alone: dict) -> dict:
    """The lone user's warm actions: median browser and server CPU seconds and websocket KB."""
    out = {}
    for action, rows in alone.get("cost", {}).items():
        out[action] = {k: _q([row[k] for row in rows], 0.5) for k in rows[0]}
    return out


def _start_training(run_id: str):
    """A full fine-tune of the bench run's configuration, started in the background (its own
    process, through the queue): CPU-heavy work of 'another user' while the crowd clicks."""
    from cxrlib.runs import runner
    from cxrlib.runs.registry import get_run

    run = get_run(run_id)
    cfg = run.config
    heavy = cfg.replace(train=cfg.train.as_finetune(epochs=50, early_stopping=None))
    return runner.start(heavy, fingerprint=run.fingerprint)


# -- profile of one Explain action ----------------------------------------------------------------
def _profile(run_id: str, data: Path) -> dict:
    """Seconds of each step of one Explain action, warm (a second film after a first)."""
    import numpy as np
    from PIL import Image

    from cxrlib import explain, lungs
    from cxrlib import preprocessing as pre
    from cxrlib.data.datasets import scan_dataset
    from cxrlib.data.imageio import read_film
    from cxrlib.runs.registry import get_run

    run = get_run(run_id)
    t0 = time.perf_counter()
    model = run.load_model()
    cam = explain.get_cam("gradcam", model)
    load_s = time.perf_counter() - t0
    manifest = scan_dataset(data).manifest
    big = manifest.assign(px=manifest["width"] * manifest["height"]).sort_values("px")
    paths = [str(p) for p in big["path"].tail(2)]
    steps = {}
    for path in paths:  # the first film warms every compiled function; the second is measured
        steps = {}
        t = time.perf_counter()
        pixels = read_film(path).pixels
        steps["decode"] = time.perf_counter() - t
        t = time.perf_counter()
        x = pre.to_model_input(pre.preprocess_film(pixels, run.config.preprocess)[None])
        steps["preprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        result = cam.explain(x)
        steps["cam"] = time.perf_counter() - t
        t = time.perf_counter()
        drawn = explain.overlay(pixels, result.heatmaps[0], alpha=0.4, colormap="jet")
        steps["overlay_native"] = time.perf_counter() - t
        t = time.perf_counter()
        for image in (pixels, drawn):  # st.image sends RGB / grey arrays as JPEG
            Image.fromarray(np.ascontiguousarray(image)).save(io.BytesIO(), format="JPEG")
        steps["jpeg_encode_two_images"] = time.perf_counter() - t
        t = time.perf_counter()
        seg = lungs.segment_lungs(pixels)
        steps["lung_segmentation"] = time.perf_counter() - t
        t = time.perf_counter()
        explain.deletion_insertion(model, x, result.heatmaps[0], None, steps=20)
        steps["deletion_test"] = time.perf_counter() - t
        size = f"{pixels.shape[1]}x{pixels.shape[0]}"
    del seg
    total = sum(steps.values())
    return {"film": size, "model": run.config.model.label, "first_load_s": round(load_s, 2),
            "steps_s": {k: round(v, 3) for k, v in steps.items()}, "total_s": round(total, 2)}


def main() -> None:
    global ACTION_TIMEOUT_S  # noqa: PLW0603 - one setting for every User
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=None, help="concurrent users (default 8)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per user (default 4)")
    parser.add_argument("--quick", action="store_true", help="2 users x 1 round, the bundled sample")
    parser.add_argument("--data", type=Path, default=None, help="dataset folder")
    parser.add_argument("--no-profile", action="store_true", help="skip the Explain profile")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="a workspace to use and keep (its run is trained once, then reused; "
                             "its reviews are moved to bench-reviews/ first) instead of a fresh "
                             "temporary one")
    parser.add_argument("--profile-data", type=Path, default=None,
                        help="films for the profile (default ../shared/datasets/cxr3-fullres when "
                             "present: native-size films; else the bench's dataset)")
    parser.add_argument("--with-training", action="store_true",
                        help="a full fine-tune trains in the background while the users click "
                             "(does one user's training freeze the others' pages?)")
    parser.add_argument("--with-audit", action="store_true",
                        help="one more user runs the audit on the Audit page as the others begin "
                             "(it runs in the server: does it freeze the others' pages?)")
    parser.add_argument("--viewport", default="1440x2400",
                        help="each browser's page size in CSS pixels, WIDTHxHEIGHT (default "
                             "1440x2400, the bench's first setting; 1920x1080 is a common desktop)")
    parser.add_argument("--action-timeout", type=float, default=ACTION_TIMEOUT_S,
                        help=f"seconds before an action counts as failed (default {ACTION_TIMEOUT_S})")
    args = parser.parse_args()
    # A timeout's SIGTERM ends the bench through its finally blocks: the server stops and the
    # background training is cancelled (it outlived a killed bench once).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    ACTION_TIMEOUT_S = args.action_timeout
    try:
        viewport = tuple(int(v) for v in args.viewport.lower().split("x"))
    except ValueError:
        viewport = ()
    if len(viewport) != 2 or min(viewport) <= 0:
        parser.error(f"--viewport {args.viewport!r}: give WIDTHxHEIGHT, e.g. 1920x1080")
    sessions = args.sessions or (2 if args.quick else 8)
    rounds = args.rounds or (1 if args.quick else 4)
    if not CHROMIUM.exists():
        print(json.dumps({"skipped": f"{CHROMIUM} not found (install Debian's chromium)"}))
        return
    isolated_env("serve", workspace=args.workspace is None)
    if args.workspace is not None:
        args.workspace.mkdir(parents=True, exist_ok=True)
        os.environ["CXR_WORKSPACE"] = str(args.workspace.resolve())
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "no runtime": services used outside the app
    from cxrlib.core import paths

    data = args.data or (paths.SAMPLE_DIR if args.quick or not (SHARED / "datasets" / "cxr3").is_dir()
                         else SHARED / "datasets" / "cxr3")
    started = time.perf_counter()
    run_id = _prepare(data)
    from cxrlib.runs.registry import get_run

    test = get_run(run_id).predictions()
    films = test.loc[test["split"] == "test", "rel_path"].astype(str).tolist()
    _fresh_reviews(Path(os.environ["CXR_WORKSPACE"]))
    _no_leftover_audits()
    log = Path(os.environ["CXR_WORKSPACE"]) / "streamlit.log"
    server, url = _start_server(data, log)
    training = []
    try:
        result = asyncio.run(_drive(url, films, sessions, rounds, server.pid, before_crowd=(
            (lambda: training.append(_start_training(run_id))) if args.with_training else None),
            training_pid_of=lambda: training[0].pid if training else None,
            audit=args.with_audit, viewport=viewport))
    finally:
        from cxrlib.core.processes import stop_process

        stop_process(server)
        if training:
            from cxrlib.runs import runner

            during = training[0].status()
            runner.cancel(training[0].id, grace_s=10)
    crowd, alone = result["crowd"], result["alone"]
    every = [t for ts in crowd["times"].values() for t in ts]
    per_action = {a: {"n": len(crowd["times"].get(a, [])), "p50_s": _q(crowd["times"].get(a, []), 0.5),
                      "p95_s": _q(crowd["times"].get(a, []), 0.95),
                      "alone_s": _q(alone["times"].get(a, []), 0.5)} for a in ACTIONS}
    for action, row in per_action.items():
        print(f"{action:16s} n={row['n']:3d}  p50 {row['p50_s']} s  p95 {row['p95_s']} s  "
              f"alone {row['alone_s']} s")
    for action, cost in _alone_cost(alone).items():
        print(f"{action:16s} alone: browsers {cost['browser_cpu_s']} CPU s, server "
              f"{cost['server_cpu_s']} CPU s, websocket {cost['ws_kb']} KB")
    for failure in crowd["failures"] + alone["failures"]:
        print("failed:", failure)
    rss = result["rss"]
    base = 1 if len(rss) >= 2 else None
    last = 3 if len(rss) >= 4 else len(rss) - 1
    growth = None if base is None or not rss[base] else round(rss[last] / rss[base] - 1, 3)
    alone_all = [t for ts in alone["times"].values() for t in ts]
    summary = {"sessions": sessions, "rounds": rounds, "viewport": args.viewport,
               "data": str(data), "run": run_id,
               "p50_s": _q(every, 0.5), "p95_s": _q(every, 0.95),
               "warm_p95_s": _q(crowd.get("warm", []), 0.95),
               "single_user_s": _q(alone_all, 0.5), "alone_cost": _alone_cost(alone),
               "exceptions": crowd["exceptions"] + alone["exceptions"],
               "rss_mb": rss, "rss_after_warmup_mb": result["rss_after_warmup"],
               "rss_growth": growth, "cpu_s": result["cpu_s"], "per_action": per_action}
    if training:
        summary["training_during"] = {"run": training[0].id, "state": during.get("state"),
                                      "epoch": during.get("epoch"), "error": during.get("error")}
    if result["audit"] is not None:
        audit = result["audit"]
        summary["audit"] = {"run_s": _q(audit["times"].get("audit_run", []), 0.5),
                            "ended_during_crowd": audit.get("ended_during_crowd"),
                            "failures": audit["failures"]}
        summary["exceptions"] += audit["exceptions"]
    if not args.no_profile:
        fullres = SHARED / "datasets" / "cxr3-fullres"
        summary["explain_profile"] = _profile(run_id, args.profile_data or (
            fullres if (fullres / "manifest.csv").exists() else data))
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
