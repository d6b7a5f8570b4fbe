"""Fixtures and helpers shared by the app tests (``tests/test_app_*.py`` import them).

* ``app_workspace``: one workspace for the whole app-test session holding a tiny run trained once
  on the conftest ``synthetic_dataset`` (tiny model, head mode, a few epochs), so every page can be
  shown with a finished run.
* ``app``: a function-scoped factory of :class:`AppTest` objects opened on the synthetic dataset,
  with ``CXR_WORKSPACE`` pointing at ``app_workspace`` for that test only.

The pages live in ``views/``, not ``pages/``: Streamlit treats a ``pages/`` folder beside the
entry file as its legacy multipage app, which skipped the router (no sidebar) for a deep link on
a fresh server and for AppTest's reruns. ``st.navigation`` is the only router.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")
TIMEOUT = 60


def tiny_config(root: Path, **train):
    """The RunConfig of the shared tiny run (head mode, 96 px, grouped split)."""
    from cxrlib.core.config import (DataConfig, ModelConfig, PreprocessConfig, RunConfig, SplitConfig,
                               TrainConfig)

    return RunConfig(data=DataConfig(root=str(root)),
                     preprocess=PreprocessConfig(size=96, steps=()),
                     model=ModelConfig(family="tiny"),
                     split=SplitConfig(),
                     train=TrainConfig(**{"mode": "head", "epochs": 5, "batch_size": 16,
                                          "learning_rate": 1e-2, **train}))


@pytest.fixture(scope="session")
def app_workspace(tmp_path_factory, synthetic_dataset) -> Path:
    """A workspace with one finished tiny run on the synthetic dataset (trained once)."""
    from cxrlib.runs import runner

    folder = tmp_path_factory.mktemp("app-workspace")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_WORKSPACE", str(folder))
        run = runner.train_foreground(tiny_config(synthetic_dataset))
        assert run.status()["state"] == "done", run.status()
    return folder


@pytest.fixture
def trained_run(app_workspace, synthetic_dataset, monkeypatch):
    """The shared tiny run (a :class:`cxrlib.runs.run.Run`), its workspace active."""
    from cxrlib.runs import registry

    from cxrlib.runs import runner

    monkeypatch.setenv("CXR_WORKSPACE", str(app_workspace))
    cfg = tiny_config(synthetic_dataset)
    return registry.find_run(cfg, runner.dataset_fingerprint(cfg))


@pytest.fixture
def app(app_workspace, synthetic_dataset, monkeypatch):
    """``app(page=None, data_dir=synthetic_dataset) -> AppTest`` already run (and switched)."""
    monkeypatch.setenv("CXR_WORKSPACE", str(app_workspace))

    def make(page: str | None = None, data_dir: str | Path | None = None, **state) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.session_state["data_dir"] = str(data_dir if data_dir is not None else synthetic_dataset)
        for key, value in state.items():
            at.session_state[key] = value
        at.run()
        if page is not None:
            at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return make


def shown(markdown: str) -> str:
    """The text a Markdown source shows, rendered by markdown-it (CommonMark: an independent
    renderer), tags removed: what the user reads, whatever was escaped in the source."""
    import html
    import re

    from markdown_it import MarkdownIt

    return html.unescape(re.sub(r"<[^>]+>", "", MarkdownIt().render(markdown))).strip()


def shown_texts(elements) -> list[str]:
    """:func:`shown` of every element's ``value`` (captions, alerts: Markdown)."""
    return [shown(e.value) for e in elements]


def texts(elements) -> list[str]:
    """The ``value`` of every element of a list (markdown, alerts, titles...)."""
    return [e.value for e in elements]


def plotly_titles(at: AppTest) -> list[str]:
    """Titles of the plotly figures on the page."""
    titles = []
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec.get("layout", {}).get("title", {})
        titles.append(title.get("text", "") if isinstance(title, dict) else str(title))
    return titles


def metric(at: AppTest, label: str) -> str:
    """The displayed value of the metric called ``label``."""
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r} among {[m.label for m in at.metric]}"
    return found[0]


def wait_for(predicate, timeout: float = 60.0, poll: float = 0.2) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return bool(predicate())


def fake_trainer(run, *, cancel_check) -> None:
    """Stands in for ``cxrlib.training.engine.execute`` in a background process (via ``CXR_TRAIN_ENTRY``):
    reports epoch 1 of 3 until it is cancelled (at most a minute)."""
    for step in range(1200):
        if cancel_check():
            run.write_status(state="cancelled", message="cancelled by request")
            return
        run.write_status(state="running", epoch=1, epochs=3, step=step % 10, steps=10,
                         metrics={"loss": 1.0, "accuracy": 0.5}, eta_s=65)
        time.sleep(0.05)
    raise RuntimeError("fake trainer was never cancelled")


def viewer(at: AppTest) -> dict | None:
    """The data of the page's film viewer (``cxrlib.viz.viewer.viewer_data``, as the browser
    gets it), or None when the page draws none."""
    for found in at.get("bidi_component"):
        if found.proto.component_name == "cxr_film_viewer":
            return json.loads(found.proto.json)
    return None


def viewer_maps(at: AppTest) -> list[dict]:
    """The film viewer's heatmap panels (those with a layer)."""
    return [p for p in (viewer(at) or {}).get("panels", []) if p.get("layer")]


def png_of(uri: str):
    """A viewer image (PNG data URI) as numpy: grey, RGB or RGBA as encoded."""
    import base64

    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8),
                         cv2.IMREAD_UNCHANGED)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return image


def heat_values(panel: dict):
    """A viewer panel's heatmap as sent for the hover readout: ``(h, w)`` floats, 1 = the
    maximum, to the nearest 1/255."""
    import base64

    import numpy as np

    heat = panel["heat"]
    raw = np.frombuffer(base64.b64decode(heat["values"]), np.uint8)
    return raw.reshape(heat["h"], heat["w"]) / 255.0


def reloaded(page: str, address: dict, data_dir=None) -> AppTest:
    """A new session (a reload, a shared link, a second tab) opened on ``page`` with ``address``
    as its query parameters, on the dataset ``data_dir`` (None: the one the session finds, from
    the address or ``CXR_DATA_DIR``)."""
    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if data_dir is not None:
        fresh.session_state["data_dir"] = str(data_dir)
    fresh.query_params.update(address)
    fresh.run()
    fresh.switch_page(page)
    fresh.query_params.update(address)
    fresh.run()
    assert not fresh.exception, [e.value for e in fresh.exception]
    return fresh
