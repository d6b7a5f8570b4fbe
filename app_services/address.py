"""The page's address: the run, the film, the reviewer and each page's key choices live in the
URL's query parameters (``st.query_params``), so a reload, a shared link or a second tab opens
exactly the same view (issue 26).

The rule is one line: the address seeds the session once, then the session writes the address.
A new session (a reload, a new tab, a link opened elsewhere) has no value yet, so the address
gives it; within a session, the widgets own the value and every rerun writes it back, so the
address always names what is shown.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import streamlit as st

_SEEDED = "_address_seeded"


def from_address(param: str, key: str, valid: Iterable | None = None,
                 cast: Callable[[str], Any] = str) -> None:
    """Once per session and parameter: ``st.session_state[key]`` from ``?param=``, when the
    session has no value for it yet and the address's value is valid (``cast`` may raise
    ``ValueError`` to refuse one; ``valid`` lists the accepted values)."""
    seeded = st.session_state.setdefault(_SEEDED, set())
    if param in seeded:
        return
    seeded.add(param)
    raw = st.query_params.get(param)
    if raw is None or st.session_state.get(key) is not None:
        return
    try:
        value = cast(raw)
    except (ValueError, TypeError):
        return
    if valid is None or value in list(valid):
        st.session_state[key] = value


def to_address(param: str, value: Any) -> None:
    """``?param=value`` (removed for ``None``); the address is only written when it changes."""
    if value is None:
        if param in st.query_params:
            del st.query_params[param]
    elif st.query_params.get(param) != str(value):
        st.query_params[param] = str(value)

