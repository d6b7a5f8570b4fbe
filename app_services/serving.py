"""What Streamlit does after every script run, made fit for a TensorFlow app that people share.

After each script run Streamlit calls ``keras.backend.clear_session()`` whenever Keras is
imported (``streamlit.runtime.scriptrunner.script_runner._clean_problem_modules``). Here that
is wrong three times over (measured, issue 22; ``docs/benchmarks.md``):

- it clears TensorFlow's kernel cache, so the next heatmap or lung mask of *any* session
  re-instantiates its kernels: 0.65-0.87 s instead of 0.03-0.14 s on the 2-core CPU;
- it runs a full garbage collection (0.3-0.5 s with TensorFlow loaded) while holding the GIL,
  so every click of one user froze every other user's page for that long;
- it resets Keras' global state while another session's thread may be using it.

The app keeps its models in ``st.cache_resource`` and builds none per rerun, so it needs none
of that. :func:`keep_keras_state` replaces the hook with :func:`after_script_run`, which keeps
what the hook does for matplotlib and collects garbage the cheap way: the young generations
after every run, a full collection at most every :data:`FULL_GC_PERIOD_S` seconds (so cyclic
garbage of a rerun, e.g. a stopped script's frames holding a film, is still freed and the
server's memory stays flat). ``.streamlit/config.toml`` turns Streamlit's own full collection
after every run (``runner.postScriptGC``) off for the same reason.
"""
from __future__ import annotations

import gc
import sys
import threading
import time

from streamlit.runtime.scriptrunner import script_runner

STREAMLIT_CLEANUP = getattr(script_runner, "_clean_problem_modules", None)
"""Streamlit's own after-run hook (kept for tests and for :func:`restore`)."""
FULL_GC_PERIOD_S = 60.0
"""The least time between two full garbage collections after script runs."""
_last_full = [time.monotonic()]
_lock = threading.Lock()


def after_script_run(clock=time.monotonic) -> None:
    """Close pyplot's figures (as Streamlit's hook does), collect the young generations, and
    collect fully when the last full collection is :data:`FULL_GC_PERIOD_S` old."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")
    with _lock:
        full = clock() - _last_full[0] >= FULL_GC_PERIOD_S
        if full:
            _last_full[0] = clock()
    gc.collect(2 if full else 1)


def keep_keras_state() -> bool:
    """Make :func:`after_script_run` Streamlit's after-run hook (idempotent; once per process
    is enough). Returns False, changing nothing, when this Streamlit has no such hook."""
    if STREAMLIT_CLEANUP is None:
        return False
    script_runner._clean_problem_modules = after_script_run  # noqa: SLF001
    return True


def restore() -> None:
    """Put Streamlit's own hook back (tests)."""
    if STREAMLIT_CLEANUP is not None:
        script_runner._clean_problem_modules = STREAMLIT_CLEANUP  # noqa: SLF001
