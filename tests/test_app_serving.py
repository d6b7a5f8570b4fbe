"""A server people share (issue 22): what runs after every script run, and the byte-bounded cache."""
from __future__ import annotations

import gc

import pytest
from streamlit.testing.v1 import AppTest

from app_services import serving

SCRIPT = """
import keras
import streamlit as st
from app_services import serving
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
