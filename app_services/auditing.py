"""Audit services: one ``cxrlib.audit.audit_run`` per run and options, kept for every session."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import streamlit as st

from cxrlib.core.config import ExplainConfig

from cxrlib import audit


from cxrlib import explain

from .core import file_stamp, shrink
from .data import film
from .explaining import explanation
from .runs import run_stamp


REPORTS_KEPT = 8  # audit reports hold the test films' tensors: keep a few, newest used first


class _Reports:
    """Finished audit reports by (run stamp, options), shared by every session: a bounded LRU
    behind a lock (sessions run in threads of one server process)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.lock, self.items = limit, threading.Lock(), OrderedDict()

    def get(self, key: tuple):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
            return self.items.get(key)

    def put(self, key: tuple, report: Any) -> None:
        with self.lock:
            self.items[key] = report
            self.items.move_to_end(key)
            while len(self.items) > self.limit:
                self.items.popitem(last=False)


@st.cache_resource
def _reports() -> _Reports:
    return _Reports(REPORTS_KEPT)


def audit_key(run, external: str | None, max_films: int | None, method: str) -> tuple:
    """Cache key of an audit: the run's artefacts and the options that change the result."""
    return (run_stamp(run), external or None, max_films, method)


def cached_audit(run, external: str | None, max_films: int | None, method: str):
    """The stored report of these options, or ``None`` when it was never computed."""
    return _reports().get(audit_key(run, external, max_films, method))


def run_audit(run, ds, external: str | None, max_films: int | None, method: str):
    """Run every audit of ``run`` with a live status box; the report is stored for next time."""
    with st.status("Auditing the run…", expanded=True) as box:
        bar = st.progress(0.0, text="starting")

        def progress(step: str, done: int, total: int) -> None:
            bar.progress(min(done / total, 1.0) if total else 0.0, text=f"{step}: {done}/{total}")

        report = audit.audit_run(run, dataset=ds, external=external or None, cam_method=method,
                                 max_films=max_films, progress=progress)
        box.update(label="Audit finished", state="complete", expanded=False)
    _reports().put(audit_key(run, external, max_films, method), report)
    return report


@st.cache_resource(max_entries=64, show_spinner=False)
def _mask_view(stamp: str, path: str):
    pixels = film(path).pixels
    seg = audit.segment_lungs(pixels)
    outline = explain.overlay(pixels, seg.mask.astype("float32"), alpha=1.0, colormap="turbo",
                              contour=True, levels=(0.5,))
    return outline, seg.method


def mask_and_cam(run, path: str, method: str) -> tuple[Any, Any, str]:
    """A film with its lung-mask outline, and with its CAM overlay (display size)."""
    stamp = file_stamp(path)
    outline, how = _mask_view(stamp, path)
    res = explanation(run, film(path).pixels, stamp, ExplainConfig(method=method), faithful=False)
    return shrink(outline, 384), shrink(res["overlay"], 384), how
