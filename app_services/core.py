"""Basics of the app's service layer: session keys and small helpers."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import streamlit as st

# Session-state keys shared by the router and the pages.
DATA_DIR, TASK, RUN_ID, TRAIN_PREPROCESS = "data_dir", "task", "run_id", "train_preprocess"
TASK_LABELS = {"3class": "3 classes: COVID-19 / Normal / Viral Pneumonia",
               "binary": "Binary: COVID-19 vs Normal"}
DISPLAY_MAX_SIDE = 768  # films are shown (and previewed) at most this large
DISPLAY_MAX_ASPECT = 8  # a film longer than 8:1 is shown padded to that ratio
NOTICES = "_notices"  # one-line messages left for the page the user is on (shown once)
NOTICE_ICONS = {"warning": ":material/warning:", "success": ":material/check_circle:",
                "info": ":material/info:", "error": ":material/error:"}


def safe(fn, default=None):
    """``fn()``, or ``default`` when it raises (a half-written run folder must not break a page)."""
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return default


_MARKDOWN = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def md_literal(text: Any) -> str:
    """``text`` (a file name, a reviewer's name, an address parameter: what users typed) as
    Markdown that shows it as it is: every ASCII punctuation character backslash-escaped, as
    CommonMark allows (no emphasis, link, code, HTML, Streamlit ``:red[...]`` directive or
    ``$`` formula can start), line breaks as spaces."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(text).splitlines()))


def notify(level: str, text: str) -> None:
    """Leave ``text`` (``st.<level>``) for the page the user is on; :func:`show_notices` shows it
    once. For what happened outside the page's own run (a callback, a run deleted meanwhile)."""
    notes = st.session_state.setdefault(NOTICES, [])
    if (level, text) not in notes:
        notes.append((level, text))


def show_notices() -> None:
    """The router, above every page: the messages left by :func:`notify`, once each."""
    for level, text in st.session_state.pop(NOTICES, []):
        getattr(st, level)(text, icon=NOTICE_ICONS[level])


def kept_tabs(labels: list[str], key: str, param: str | None = None):
    """Tabs that draw only the open one (``if tab.open:``), reopened on the user's last tab when
    they come back to the page. Streamlit forgets a widget's state on a run that does not draw
    it (``st.tabs`` has no ``persist_state``), so the open tab is also kept under
    ``<key>_kept`` and given back to the widget before it is drawn again. ``param``: the open
    tab is also ``?param=`` in the address (absent for the first), so a reload or a shared link
    opens it."""
    from .address import from_address, to_address  # noqa: PLC0415

    kept = f"{key}_kept"
    if param is not None:
        from_address(param, kept, valid=labels)
    if key not in st.session_state and st.session_state.get(kept) in labels:
        st.session_state[key] = st.session_state[kept]
    tabs = st.tabs(labels, key=key, on_change="rerun")
    st.session_state[kept] = st.session_state.get(key)
    if param is not None:
        shown = st.session_state[kept]
        to_address(param, None if shown in (None, labels[0]) else shown)
    return tabs


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


def for_display(pixels):
    """``pixels`` ready for ``st.image``, and whether they were padded.

    A film no longer than :data:`DISPLAY_MAX_ASPECT`:1 is returned as it is. A longer one is
    shrunk so its long side is :data:`DISPLAY_MAX_SIDE`, then centred on black to that ratio.
    Streamlit would otherwise scale a 20000 x 40 strip to its page width, 1460 x 2 px (and a
    20000 x 1 one to 1460 x 0, which raises).
    """
    import numpy as np

    h, w = pixels.shape[:2]
    if max(h, w) <= DISPLAY_MAX_ASPECT * min(h, w):
        return pixels, False
    small = shrink(pixels, DISPLAY_MAX_SIDE)
    h, w = small.shape[:2]
    out_h, out_w = max(h, -(-w // DISPLAY_MAX_ASPECT)), max(w, -(-h // DISPLAY_MAX_ASPECT))
    out = np.zeros((out_h, out_w, *small.shape[2:]), small.dtype)
    top, left = (out_h - h) // 2, (out_w - w) // 2
    out[top:top + h, left:left + w] = small
    return out, True


def chart(fig, *, key: str | None = None) -> None:
    """Draw a ``cxrlib.viz.figures`` figure in the app's dark theme (no white boxes on the dark
    surround), full column width."""
    from cxrlib.viz.figures import THEMES, themed  # noqa: PLC0415

    if fig.layout.paper_bgcolor != THEMES["dark"]["paper"]:  # a cached figure is themed once
        themed(fig, "dark")
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


HEADERS = {"n": "films", "ci_low": "95 % CI low", "ci_high": "95 % CI high", "low": "95 % CI low",
           "high": "95 % CI high", "f1": "F1", "auc": "AUC", "macro_auc": "macro AUC",
           "balanced_accuracy": "balanced accuracy", "majority_rate": "majority-class rate",
           "held_out_accuracy": "held-out accuracy", "single_class": "one class only",
           "in_distribution_accuracy": "in-distribution accuracy", "small": "under 5 patients"}
"""Headers people read for the columns the library names in code (the rest: ``_`` -> space)."""
_PREFIXES = (("recall_low_", "recall CI low · "), ("recall_high_", "recall CI high · "),
             ("recall_", "recall · "), ("predicted_", "called · "), ("pred_", "called · "),
             ("support_", "films · "))


def human_header(column) -> str:
    """``ci_low`` -> ``95 % CI low``, ``recall_COVID-19`` -> ``recall · COVID-19``."""
    name = str(column)
    if name in HEADERS:
        return HEADERS[name]
    for prefix, words in _PREFIXES:
        if name.startswith(prefix):
            return words + name[len(prefix):]
    return name.replace("_", " ")


def table(frame, where=None, **kwargs) -> None:
    """``frame`` as a table people read: human headers, "—" for empty text cells, numbers to
    three decimals, the whole width (so the last columns are not cut off)."""
    out = frame.rename(columns=human_header)
    config = {}
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: "—" if v is None or v != v else v)
        elif str(out[col].dtype).startswith("float"):
            config[col] = st.column_config.NumberColumn(format="%.3f")
    (where or st).dataframe(out, hide_index=True, width="stretch",
                            column_config={**config, **kwargs.pop("column_config", {})}, **kwargs)
