"""Review queue services: the order films are reviewed in, the film picker (kept in the page's
address), the link from the Evaluation grid, and the film with its heatmap."""
from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from cxrlib import reviews as rv

from .core import RUN_ID, file_stamp, md_literal, safe
from .data import film, path_of
from .explaining import VIEWER_LOOK, explanation
from .reviewing import REVIEW_PAGE, review_store
from .runs import predictions


def review_queue(run, threshold: float | None = None, *, blinded: bool = False):
    """The run's test films in review order, and whether CAM in-lung shares ordered it.

    ``blinded``: the films in an order fixed by the run (a shuffle seeded by its id) and no
    ``reason``, so the queue does not announce the model's errors up front.

    Returns:
        ``(queue, uses_cam)``: :func:`cxrlib.reviews.review_queue`'s frame, ordered by the CAM
        in-lung shares the run's audits stored (:meth:`cxrlib.runs.run.Run.audit_attention`,
        whichever process ran them); ``uses_cam`` is False when none did.
    """
    attention = safe(run.audit_attention)
    queue = rv.review_queue(predictions(run), list(run.classes), in_lung_share=attention,
                            threshold=threshold)
    if blinded:
        queue = queue.sample(frac=1.0, random_state=int(hashlib.sha1(run.id.encode()).hexdigest()[:8], 16))
        queue = queue.reset_index(drop=True).assign(position=lambda q: q.index + 1, reason="")
    return queue, attention is not None


def review_progress(queue, reviews, reviewer: str | None) -> dict[str, Any]:
    """Films of the queue reviewed by this reviewer and by anyone."""
    return rv.review_progress(queue, reviews, reviewer)


def _address_name(key: str) -> str:
    """How the address names the film of picker ``key``: its path, or its code when blinded."""
    film = st.session_state[key]
    return (st.session_state.get(f"{key}_codes") or {}).get(film, film)


def _sync_film(key: str) -> None:
    st.query_params["film"] = _address_name(key)  # a refresh reopens the same film


def sync_film(key: str = "rv_film") -> None:
    """Put the film of picker ``key`` in the address (a callback after a move)."""
    _sync_film(key)


def _next_film(run_id: str, films: list[str], reviewer: str, key: str) -> None:
    mine = set(review_store().reviews(run_id, reviewer=reviewer)["rel_path"].astype(str))
    current = st.session_state.get(key)
    start = films.index(current) + 1 if current in films else 0
    todo = [f for f in films[start:] + films[:start] if f not in mine]
    if todo:
        st.session_state[key] = todo[0]
        _sync_film(key)


def film_code(run, rel_path: str) -> str:
    """An opaque name of a film for blinded review: its path often names its class folder."""
    return "film " + hashlib.sha1(f"{run.id}/{rel_path}".encode()).hexdigest()[:8]


def film_picker(run, queue, reviews, reviewer: str, *, key: str = "rv_film",
                blinded: bool = False) -> str | None:
    """Pick a film of the queue (the ``?film=`` query parameter wins, e.g. from Evaluation);
    by default the first the reviewer has not reviewed. Returns its ``rel_path``. Blinded,
    films are named by :func:`film_code` (a path such as ``COVID-19/x.png`` tells the label)."""
    films = queue["rel_path"].astype(str).tolist()
    if not films:
        return None
    mine = set(reviews.loc[reviews["reviewer"] == reviewer, "rel_path"].astype(str))
    anyone = set(reviews["rel_path"].astype(str))
    code_of = {f: film_code(run, f) for f in films}
    codes = code_of if blinded else None
    st.session_state[f"{key}_codes"] = codes  # blinded: the address holds no path either
    asked = st.query_params.get("film")
    # a film's code or its path, whichever mode wrote the address
    wanted = {c: f for f, c in code_of.items()}.get(asked, asked)
    if wanted in films and st.session_state.get(key) != wanted:
        st.session_state[key] = wanted
    if st.session_state.get(key) not in films:
        st.session_state[key] = next((f for f in films if f not in mine), films[0])
    first = f"{key}_shown" not in st.session_state  # the address a session opened with: a link
    st.session_state[f"{key}_shown"] = True  # (later, a film of another run is no link's)
    if first and asked is not None and wanted not in films:  # a stale or mistyped link: said
        st.warning(f"Film {md_literal(asked)} of the address is not among this run's test films; "
                   "showing the queue's film instead.", icon=":material/link_off:")
    reasons = dict(zip(films, queue["reason"]))
    position = {f: i + 1 for i, f in enumerate(films)}

    def label(f: str) -> str:
        mark = "✓ mine · " if f in mine else ("reviewed · " if f in anyone else "")
        name = film_code(run, f) if blinded else f
        return f"{position[f]}. {mark}{name}" + (f" — {reasons[f]}" if reasons[f] else "")

    c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
    c1.selectbox("Film of the queue", films, key=key, format_func=label, on_change=_sync_film,
                 args=(key,))
    if st.query_params.get("film") != _address_name(key):
        _sync_film(key)  # the address names the film shown: a reload comes back to it
    c2.button("Next to review", icon=":material/skip_next:", key=f"{key}_next",
              on_click=_next_film, args=(run.id, films, reviewer, key),
              help="The next film in the queue that you have not reviewed")
    return st.session_state[key]


def _open_review(run_id: str) -> None:
    st.session_state[RUN_ID] = run_id  # in a callback: before the sidebar's picker is drawn


def review_link(run, shown, *, key: str) -> None:
    """Under a sample grid: choose one of its films and open it on the Review page."""
    films = shown["rel_path"].astype(str).tolist() if "rel_path" in shown else []
    if not films:
        return
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    film = c1.selectbox("Review a film of this grid", films, key=f"{key}_film")
    if c2.button("Review it", icon=":material/rate_review:", key=f"{key}_go",
                 on_click=_open_review, args=(run.id,)):
        st.switch_page(REVIEW_PAGE, query_params={"run": run.id, "film": film})


def review_viewer(run, ds, row, window: tuple, *, blinded: bool = False) -> str:
    """A queue row's film and its heatmap (the default method and layer, predicted class) in the
    synchronised viewer; returns the caption naming them (the film by :func:`film_code` when
    blinded)."""
    from .viewer import film_viewer, look  # noqa: PLC0415

    path = safe(lambda: path_of(ds, row.rel_path), row.path)
    pixels = film(path).pixels
    key = file_stamp(path)
    res = explanation(run, pixels, key, VIEWER_LOOK)
    what = f"{look(VIEWER_LOOK, res, run)}, predicted class"
    film_viewer(pixels, key, [{"title": "Original"},
                              {"title": what, "heatmap": None if res["flat"] else res["heatmap"],
                               "box": res["box"]}], VIEWER_LOOK, window, key="rv_viewer")
    h, w = pixels.shape[:2]
    name = film_code(run, row.rel_path) if blinded else row.rel_path
    return f"{md_literal(name)} · {w}×{h} px · {what}" + (" (flat map: not drawn)" if res["flat"] else "")
