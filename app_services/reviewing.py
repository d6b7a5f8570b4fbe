"""Review services: the review store, the reviewer's name and the review form.

Reviews are never cached: every read goes to the database, so a review saved in another tab
shows at the next rerun. (Only the statistics are cached, in :mod:`.review_stats`, keyed on the
run and the number and last id of its reviews: a new review is a new key.) The queue and the
film picker are in :mod:`.review_queue`.
"""
from __future__ import annotations

import hashlib
import uuid
from typing import Any

import streamlit as st

from cxrlib import reviews as rv
from cxrlib.reviews.records import MAX_COMMENT

from . import identity
from .address import from_address, to_address
from .core import md_literal, notify
from .runs import get_run


REVIEWER = "reviewer"
"""Session key of the reviewer's name (asked once per session)."""
REVIEWER_LOGIN = "reviewer_login"
"""Session key of the logged-in :class:`.identity.Reviewer` (with a login configured)."""
REVIEW_PAGE = "views/review.py"
ANSWERS = {True: "Yes", False: "No"}


@st.cache_resource(show_spinner=False)
def _store(path: str) -> rv.ReviewStore:
    return rv.ReviewStore(path)


def review_store() -> rv.ReviewStore:
    """The workspace's review database (one connection per app process and workspace)."""
    return _store(str(rv.default_path()))


def run_reviews(run, rel_path: str | None = None):
    """Every review of a run (or of one of its films), oldest first, straight from the store."""
    return review_store().reviews(run.id, rel_path=rel_path)


def _forget_reviewer() -> None:
    st.session_state.pop(REVIEWER, None)
    to_address("reviewer", None)


def reviewer_ui(key: str) -> str | None:
    """The session's reviewer name; asks for it (once per session) when it is not known yet.

    With a login configured (:func:`.identity.login_configured`) it is the logged-in user's,
    never a typed one; before the login it offers the login and returns None. Otherwise the
    name is kept in the address (``?reviewer=``): a reload or a second tab keeps it.
    """
    if identity.login_configured():
        return _login_ui(key)
    from_address("reviewer", REVIEWER, cast=rv.clean_reviewer)
    name = st.session_state.get(REVIEWER)
    to_address("reviewer", name)
    if name:
        with st.container(horizontal=True, vertical_alignment="center"):
            st.caption(f"Reviewing as **{md_literal(name)}**", width="content")
            st.button("Not you?", key=f"{key}_change_reviewer", on_click=_forget_reviewer,
                      type="tertiary")
        return name
    with st.form(f"{key}_reviewer_form"):
        typed = st.text_input("Your name (asked once per session; it goes with every review)",
                              key=f"{key}_reviewer_name")
        if st.form_submit_button("Start reviewing", icon=":material/person:"):
            try:
                st.session_state[REVIEWER] = rv.clean_reviewer(typed)
            except ValueError as exc:
                st.error(str(exc))
            else:
                st.rerun()
    return None


def _login_ui(key: str) -> str | None:
    who = identity.logged_in_reviewer()
    st.session_state[REVIEWER_LOGIN] = who
    st.session_state[REVIEWER] = who.name if who else None
    if who is None:
        st.info("Log in to review: your reviews are saved under your login.",
                icon=":material/login:")
        st.button("Log in", key=f"{key}_login", on_click=st.login, icon=":material/login:")
        return None
    with st.container(horizontal=True, vertical_alignment="center"):
        st.caption(f"Logged in as **{md_literal(who.name)}**" + ("" if who.may_write else " (read only)"),
                   width="content")
        st.button("Log out", key=f"{key}_logout", on_click=st.logout, type="tertiary")
    return who.name


def _write_refusal() -> str | None:
    """Why this session may not save reviews (a login not on ``CXR_REVIEWERS``), or None."""
    who = st.session_state.get(REVIEWER_LOGIN)
    if identity.login_configured() and (who is None or not who.may_write):
        return ("You can read the reviews; only the reviewers this server lists in "
                f"{identity.REVIEWERS_ENV} can write them.")
    return None


def has_reviewed(run, rel_path: str, reviewer: str) -> bool:
    """Whether ``reviewer`` has saved a review of this film of ``run``."""
    return len(review_store().reviews(run.id, rel_path=rel_path, reviewer=reviewer)) > 0


def _film_digest(ds, rel_path: str) -> str | None:
    if ds is None or "digest" not in ds.manifest.columns:
        return None
    match = ds.manifest.loc[ds.manifest["rel_path"] == rel_path, "digest"]
    return str(match.iloc[0]) if len(match) and str(match.iloc[0]) else None


def _defaults(run, rel_path: str, reviewer: str) -> dict[str, Any]:
    """The reviewer's latest answers on this film (a refresh shows them again), else neutral."""
    mine = review_store().reviews(run.id, rel_path=rel_path, reviewer=reviewer)
    if not len(mine):  # nothing pre-selected: every verdict is the reviewer's own choice
        return {"agrees_with_label": None, "agrees_with_prediction": None,
                "heatmap_location": None, "confidence": 3, "comment": "", "when": None}
    last = mine.iloc[-1]
    return {**{k: last[k] for k in ("agrees_with_label", "agrees_with_prediction",
                                    "heatmap_location", "comment")},
            "confidence": int(last["confidence"]), "when": last["created"]}


BLINDED_NOTE = "[blinded reading: {}]"
"""How a blinded review records the reviewer's own reading in its comment."""


def review_form(run, rel_path: str, *, label: str | None, prediction: str | None, ds=None,
                key: str, ask_name: bool = True, blinded: bool = False) -> None:
    """The review form of one film of ``run`` (the reviewer's name is asked first if needed).

    A save is one transaction; the form keeps its values when a save fails. Saving the same
    answers again in this session stores nothing new (a double click or a rerun); changed
    answers are a new review, and the earlier one stays in the history. ``ask_name=False``:
    the page asked for the name already (:func:`reviewer_ui`).

    ``blinded`` (until this reviewer has saved a review of the film): neither the label nor
    the prediction is shown; the reviewer gives their own reading (one of the run's classes),
    and the agreement with the label and with the prediction is derived from it when saved.
    """
    name = reviewer_ui(key) if ask_name else st.session_state.get(REVIEWER)
    if not name:
        return
    refusal = _write_refusal()
    if refusal:
        st.info(refusal, icon=":material/visibility:")
        return
    prior = _defaults(run, rel_path, name)
    if prior["when"]:
        st.caption(f"You reviewed this film at {prior['when'][:19].replace('T', ' ')} UTC; "
                   "saving again adds a new review (the earlier one is kept).")
    form_key = f"{key}_{hashlib.sha1(f'{run.id}/{rel_path}'.encode()).hexdigest()[:12]}"
    flash = st.session_state.pop(f"{form_key}_flash", None)  # what the save said, if any
    if flash:
        level, message = flash
        getattr(st, level)(message, icon=FLASH_ICONS[level])
    locations = list(rv.HEATMAP_LOCATIONS)
    blind = blinded and not prior["when"]
    with st.form(form_key, clear_on_submit=False, border=True):
        if blind:
            st.radio("Your reading of this film (the label and the prediction show once you "
                     "have saved)", list(run.classes), index=None, horizontal=True,
                     key=f"{form_key}_reading")
        else:
            a1, a2 = st.columns(2)
            a1.radio(f"Agree with the label ({label or 'unknown'})?", [True, False],
                     index=_index([True, False], prior["agrees_with_label"]), horizontal=True,
                     format_func=ANSWERS.get, key=f"{form_key}_label")
            a2.radio(f"Agree with the prediction ({prediction or 'unknown'})?", [True, False],
                     index=_index([True, False], prior["agrees_with_prediction"]),
                     horizontal=True, format_func=ANSWERS.get, key=f"{form_key}_pred")
        st.radio("Where does the heatmap fall?", locations,
                 index=_index(locations, prior["heatmap_location"]),
                 format_func=rv.HEATMAP_LOCATIONS.get, key=f"{form_key}_where")
        st.select_slider("Your confidence (1 unsure – 5 certain)", list(rv.CONFIDENCE_LEVELS),
                         prior["confidence"], key=f"{form_key}_conf")
        st.text_area("Comment", prior["comment"], key=f"{form_key}_comment",
                     max_chars=MAX_COMMENT)
        # Saved in the button's callback, before the page runs: that one run counts the review
        # everywhere above the form (a rerun after the save would run the page twice).
        st.form_submit_button("Save review", type="primary", icon=":material/save:",
                              on_click=_submit, args=(run, rel_path, name, form_key),
                              kwargs=dict(label=label, prediction=prediction, ds=ds, blind=blind))


FLASH_ICONS = {"success": ":material/check_circle:", "info": ":material/check:",
               "error": ":material/error:"}
"""The icon of each kind of message a save leaves above its form."""


def _index(options: list, value) -> int | None:
    """The radio index of a prior answer; ``None`` (nothing selected) without one."""
    return None if value is None else options.index(value)


def _submit(run, rel_path, name, form_key, **form) -> None:
    """The Save button's callback: the form's answers, checked and saved; what happened is left
    in ``{form_key}_flash`` for the run that follows to show above the form. When the run was
    deleted meanwhile the page shows another run, not this form: the page says it instead. A
    review of a deleted run is saved all the same (the store keeps reviews that outlive their
    run, and ``reviews export RUN`` writes them), and the message says where it went."""
    level, text = _checked_save(run, rel_path, name, form_key, **form)
    if get_run(run.id) is not None:
        st.session_state[f"{form_key}_flash"] = (level, text)
    elif level == "success":
        notify(level, f"Review saved for run `{run.id[:8]}`, which was deleted meanwhile: it "
                      f"shows in `python -m cxrlib reviews export {run.id} --out FILE`.")
    else:
        notify(level, f"Run `{run.id[:8]}` was deleted meanwhile; your review of {md_literal(rel_path)}: "
                      f"{text}")


def _checked_save(run, rel_path, name, form_key, *, label, prediction, ds,
                  blind) -> tuple[str, str]:
    """The form's answers, checked and saved: what to say, as ``(level, text)``."""
    state = st.session_state
    if blind:
        reading = state.get(f"{form_key}_reading")
        agree_label = None if reading is None else reading == label
        agree_pred = None if reading is None else reading == prediction
    else:
        agree_label, agree_pred = state.get(f"{form_key}_label"), state.get(f"{form_key}_pred")
    location = state.get(f"{form_key}_where")
    if None in (agree_label, agree_pred, location):
        return ("error", "Give your reading and where the heatmap falls, then save." if blind
                else "Answer the two agreement questions and where the heatmap falls, then save.")
    comment = state.get(f"{form_key}_comment") or ""
    if blind:
        comment = f"{BLINDED_NOTE.format(reading)} {comment}".strip()
    answers = (bool(agree_label), bool(agree_pred), location,
               int(state.get(f"{form_key}_conf", 3)), comment)
    return _save(run, rel_path, name, answers, label=label, prediction=prediction,
                 digest=_film_digest(ds, rel_path), form_key=form_key)


def _save(run, rel_path, name, answers, *, label, prediction, digest,
          form_key) -> tuple[str, str]:
    """Stores one review; returns the message to show, as ``(level, text)``."""
    # Per form and session: the last saved answers and their id. The id of a new save hashes
    # this session's token, the previous id and the answers: a save that repeats one the store
    # already holds (interrupted before this state was written) gets the same id and is
    # ignored by the store.
    state = st.session_state.setdefault(f"{form_key}_saved", {"token": uuid.uuid4().hex,
                                                              "id": "", "answers": None})
    if state["answers"] == (name, *answers):
        return "info", "This review is already saved."
    refusal = _write_refusal()  # checked again at the save: the form may be an old one
    if refusal:
        return "error", refusal
    who = st.session_state.get(REVIEWER_LOGIN) if identity.login_configured() else None
    seed = repr((state["token"], state["id"], name, answers)).encode()
    review_id = hashlib.sha256(seed).hexdigest()[:32]
    try:
        review = rv.Review(reviewer=name, run_id=run.id, rel_path=rel_path,
                           agrees_with_label=answers[0], agrees_with_prediction=answers[1],
                           heatmap_location=answers[2], confidence=answers[3], comment=answers[4],
                           label=label, prediction=prediction, film_digest=digest,
                           review_id=review_id, issuer=who.issuer if who else None,
                           subject=who.subject if who else None)
        review_store().add(review)
    except (ValueError, rv.ReviewStoreError) as exc:
        return "error", (f"The review was NOT saved: {exc}. Your answers are still in the form; "
                         "save again.")
    state.update(id=review_id, answers=(name, *answers))
    return "success", f"Review saved ({md_literal(name)}, {md_literal(rel_path)})."


def film_reviews_table(run, rel_path: str):
    """Every review of one film, newest first, in words."""
    frame = run_reviews(run, rel_path).iloc[::-1]
    return _in_words(frame)[["reviewer", "agrees with label", "agrees with prediction",
                             "heatmap", "confidence", "comment", "created"]]


def _in_words(frame):
    out = frame.copy()
    out["agrees with label"] = out["agrees_with_label"].map(ANSWERS)
    out["agrees with prediction"] = out["agrees_with_prediction"].map(ANSWERS)
    out["heatmap"] = out["heatmap_location"].map(rv.HEATMAP_LOCATIONS)
    out["created"] = out["created"].astype(str).str.slice(0, 19).str.replace("T", " ")
    return out.reset_index(drop=True)
