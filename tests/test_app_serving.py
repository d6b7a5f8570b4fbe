"""A server people share (issue 22): what runs after every script run, and the byte-bounded cache."""
from __future__ import annotations

import gc

import pytest
from streamlit.testing.v1 import AppTest

from app_services import serving
from app_fixtures import app, app_workspace, trained_run  # noqa: F401

SCRIPT = """
import keras
import streamlit as st
from app_services import serving
from app_fixtures import app, app_workspace, trained_run  # noqa: F401
if st.session_state.get("keep"):
    serving.keep_keras_state()
st.write("ran")
"""


@pytest.fixture
def clear_calls(monkeypatch):
    """Counts Keras clear_session calls (Streamlit's hook calls keras.backend.clear_session)."""
    import keras

    calls = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: calls.append(1))
    yield calls
    serving.restore()


def _run(keep: bool) -> None:
    at = AppTest.from_string(SCRIPT, default_timeout=60)
    at.session_state["keep"] = keep
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def test_streamlit_clears_the_keras_session_after_every_run_unless_kept(clear_calls):
    serving.restore()
    _run(keep=False)  # the installed Streamlit's own hook: the behaviour this module removes
    assert len(clear_calls) == 1
    _run(keep=True)
    assert len(clear_calls) == 1  # the run that kept the state cleared nothing
    _run(keep=False)  # once kept, for the whole process
    assert len(clear_calls) == 1


def test_after_a_run_full_collections_are_rate_limited(monkeypatch):
    generations = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: generations.append(generation) or 0)
    now = [1000.0]
    monkeypatch.setattr(serving, "_last_full", [now[0]])
    period = serving.FULL_GC_PERIOD_S
    for step in (1.0, 10.0, period - 5.0, 1.0, period + 1.0, 1.0):
        now[0] += step
        serving.after_script_run(clock=lambda: now[0])
    # seconds since the last full collection: 1, 11, period + 6 (full), 1, period + 2 (full), 1
    assert generations == [1, 1, 2, 1, 2, 1]


def test_a_byte_cache_evicts_the_least_recently_used_by_bytes_not_entries():
    import numpy as np

    from app_services.bytecache import ByteCache, size_of

    mb = 2**20
    cache = ByteCache(3 * mb + 4096)
    films = {k: np.zeros(mb, np.uint8) for k in "abcd"}  # 1 MB each
    for k in "abc":
        cache.put(k, films[k])
    assert len(cache) == 3 and cache.nbytes == 3 * mb
    cache.get("a")  # "a" is now the most recently used: "b" goes first
    cache.put("d", films["d"])
    assert [k for k in "abcd" if k in cache] == ["a", "c", "d"]
    cache.put("big", np.zeros(2 * mb, np.uint8))  # two entries must go to make room for one
    assert [k for k in ("a", "c", "d", "big") if k in cache] == ["d", "big"]
    assert cache.nbytes == 3 * mb
    many = ByteCache(3 * mb + 4096)
    for i in range(500):  # small values: far more entries than an entry bound of 48 would keep
        many.put(i, np.zeros(1024, np.uint8))
    assert len(many) == 500
    cache.put("huge", np.zeros(4 * mb, np.uint8))  # larger than the budget: not kept
    assert "huge" not in cache and cache.nbytes <= cache.max_bytes
    # sizes of what the app keeps: a film-like dataclass and a viewer PNG data URI
    from cxrlib.lungs import LungSegmentation

    seg = LungSegmentation(mask=np.zeros((100, 200), bool), quality=1.0, flagged=False,
                           source="dataset")
    assert 20_000 <= size_of(seg) < 20_000 + 2048
    assert 10**6 <= size_of("x" * 10**6) < 10**6 + 100


def test_a_byte_cached_value_is_computed_once_for_concurrent_callers(monkeypatch):
    import threading
    import time

    from app_services.bytecache import byte_cached

    calls = []

    @byte_cached(0.01)
    def slow(key: str, _payload=None):
        calls.append(key)
        time.sleep(0.2)
        return key * 3

    threads = [threading.Thread(target=slow, args=("k", i)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["k"]  # the underscore argument is not part of the key
    assert slow("k", "other") == "kkk" and slow("j") == "jjj" and calls == ["k", "j"]


def test_evaluation_figures_are_built_once_and_a_comparison_changes_copies(trained_run):
    from app_services import evaluation_view as ev
    from cxrlib.viz.figures import THEMES

    first = ev._figures(trained_run, None, False, None)
    again = ev._figures(trained_run, None, False, None)
    assert [f for _, f in first] and all(a is b for (_, a), (_, b) in zip(first, again))
    assert all(f.layout.paper_bgcolor == THEMES["dark"]["paper"] for _, f in first)
    copies = ev._figures(trained_run, None, False, None, copies=True)
    for _, fig in copies:
        fig.update_layout(title_text="changed by a comparison")
    assert not any(f.layout.title.text == "changed by a comparison" for _, f in first)
    assert ev._figures(trained_run, None, True, None)[1][1] is not first[1][1]  # other settings


def test_the_overlay_png_is_made_when_downloaded_not_on_every_rerun(app):
    import numpy as np

    from app_services.explaining import overlay_of
    from cxrlib import explain
    from cxrlib.core.config import ExplainConfig

    at = app("views/explain.py")
    (button,) = at.download_button
    assert button.label == "Download the overlay (PNG)"
    assert button.proto.url == ""  # nothing encoded (nor kept per session) until it is clicked
    # what it will draw: the film's heatmap through cxrlib's overlay with the page's settings
    res = {"flat": False, "film": np.full((40, 30), 90, np.uint8), "box": (0, 0, 30, 40),
           "heatmap": np.linspace(0, 1, 49).reshape(7, 7)}
    cfg = ExplainConfig(alpha=0.5, colormap="inferno", threshold=0.2)
    expected = explain.overlay(res["film"], res["heatmap"], alpha=0.5, colormap="inferno",
                               contour=False, box=(0, 0, 30, 40), threshold=0.2)
    assert np.array_equal(overlay_of(cfg, res), expected)
    assert overlay_of(cfg, {**res, "flat": True}) is res["film"]


def test_the_model_download_is_read_when_clicked_not_on_every_rerun(app):
    at = app("views/evaluation.py", ev_tab="Sample predictions")
    (model,) = [d for d in at.download_button if d.label == "Model (best.keras)"]
    assert model.proto.url == ""  # deferred: no megabytes hashed and kept per session
    (csv,) = [d for d in at.download_button if d.label == "Predictions (CSV)"]
    assert csv.proto.url  # a small CSV is still sent with the page


def test_the_byte_caches_together_stay_within_the_servers_budget():
    """``CXR_CACHE_MB`` is what the large caches hold together: their shares add up to at most
    1 (the PACS films' and the thumbnails' caches, once bounded by entries, took their shares
    from the films')."""
    import importlib
    import pkgutil

    import app_services
    from app_services import bytecache
    from app_services.auditing import new_report_cache

    for info in pkgutil.iter_modules(app_services.__path__):
        importlib.import_module(f"app_services.{info.name}")
    new_report_cache()
    shares = {name: share for name, share in bytecache.SHARES.items()  # not the tests' own
              if name.startswith("app_services.") or name == "audit reports"}
    assert {"audit reports", "app_services.pacs._retrieve", "app_services.data._read_film",
            "app_services.data._thumb", "app_services.viewer._source"} <= set(shares)
    assert all(0 < share < 1 for share in shares.values())
    assert sum(shares.values()) <= 1.0 + 1e-9, shares


def test_films_retrieved_from_the_pacs_are_kept_by_bytes(monkeypatch):
    """A retrieved film was kept in an 8-entry cache: 8 full-size DX films and their objects
    are hundreds of MB. Now its cache counts the pixels and the DICOM object's bytes."""
    import numpy as np

    from app_services import pacs
    from cxrlib.dicom.films import film_to_dicom

    rng = np.random.default_rng(0)
    objects = {uid: film_to_dicom(rng.integers(0, 256, (300, 200), dtype=np.uint8),
                                  patient_id="P1") for uid in ("1.2.3.1", "1.2.3.2")}
    asked = []

    class Pacs:
        def retrieve(self, ref):
            asked.append(ref)
            return objects[ref]

    monkeypatch.setattr(pacs, "client", lambda: Pacs())
    cache = pacs._retrieve.cache
    cache.clear()
    monkeypatch.setattr(cache, "max_bytes", cache.max_bytes)
    try:
        film, ds = pacs._retrieve("http://pacs", "1.2.3.1", "1.2.3.1")
        assert film.pixels.shape[:2] == (300, 200)
        one = cache.nbytes
        assert one >= film.pixels.nbytes + len(ds.PixelData)  # both copies are counted
        pacs._retrieve("http://pacs", "1.2.3.1", "1.2.3.1")
        assert asked == ["1.2.3.1"]  # kept
        cache.max_bytes = int(one * 1.5)  # room for one such film, not two
        pacs._retrieve("http://pacs", "1.2.3.2", "1.2.3.2")
        assert cache.nbytes <= cache.max_bytes
        pacs._retrieve("http://pacs", "1.2.3.1", "1.2.3.1")
        assert asked == ["1.2.3.1", "1.2.3.2", "1.2.3.1"]  # the first was evicted by bytes
    finally:
        cache.clear()
