"""Basics of the app's service layer: session keys and small helpers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

# Session-state keys shared by the router and the pages.
DATA_DIR, TASK, RUN_ID, TRAIN_PREPROCESS = "data_dir", "task", "run_id", "train_preprocess"
TASK_LABELS = {"3class": "3 classes: COVID-19 / Normal / Viral Pneumonia",
               "binary": "Binary: COVID-19 vs Normal"}
DISPLAY_MAX_SIDE = 768  # films are shown (and previewed) at most this large


def safe(fn, default=None):
    """``fn()``, or ``default`` when it raises (a half-written run folder must not break a page)."""
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return default


def file_stamp(path: str | Path) -> str:
    """Identity of a file's current content for cache keys: path, mtime and size."""
    st_ = Path(path).stat()
    return f"{path}:{st_.st_mtime_ns}:{st_.st_size}"


def shrink(pixels, side: int):
    """Display-only downscale so the longer side is at most ``side`` (films are never enlarged)."""
    import cv2

    h, w = pixels.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return pixels
    return cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def chart(fig, *, key: str | None = None) -> None:
    """Draw a ``cxrlib.viz.figures`` figure as it was designed (its own light template, readable on
    the dark theme as a card), full column width."""
    st.plotly_chart(fig, theme=None, key=key, config={"displaylogo": False})


def fmt(value: Any, spec: str = ".3f") -> str:
    """A metric for display; ``—`` when undefined."""
    return "—" if value is None else format(value, spec)


def plain_table(frame):
    """``frame`` with categorical index, columns and values as plain strings (for display)."""
    out = frame.copy()
    out.index = out.index.astype(str)
    out.columns = out.columns.astype(str)
    for col in out.columns:
        if str(out[col].dtype) == "category":
            out[col] = out[col].astype(str)
    return out
