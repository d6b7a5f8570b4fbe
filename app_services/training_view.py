"""Components of the Training page: what is known of the configured run (refused, damaged,
cached, queued, running), the start button, the live progress of active runs, the list of runs
and the damaged ones. The run registry and the queue are :mod:`.runs`'."""
from __future__ import annotations

import streamlit as st

from .core import table
from .runs import (active_runs, cancel_run, damaged_runs, delete_run, leakage_warning,
                   progress_text, run_status, run_title, runs_table, runs_to_list, start_run)
from .training_form import left_out_of_training, trainable_error


def run_state_ui(ds, cfg, existing) -> tuple[str | None, str | None]:
    """Say what is known of ``cfg``'s run (``existing``: the registry's run of it, or None):
    ``(state, refusal)``, state being None for a configuration never trained."""
    damage = existing.damage() if existing else None
    state = "broken" if damage else (existing.status().get("state") if existing else None)
    refusal = trainable_error(ds, cfg)
    if refusal:
        st.error(f"Training refused: {refusal}", icon=":material/block:")
    if state == "broken":
        st.error(f"Run `{existing.id}` of this configuration is damaged ({damage.file}: "
                 f"{damage.reason}). Delete it below to train this configuration again.",
                 icon=":material/broken_image:")
    elif state == "done":
        st.success(f"Already trained: this exact configuration is cached as run `{existing.id}`. "
                   "Starting it again returns the stored result at once.", icon=":material/bolt:")
        left_out = left_out_of_training(ds, cfg)
        if left_out:
            st.warning(f"{len(left_out)} films could not be decoded and were left out of this "
                       "run.", icon=":material/broken_image:")
            st.dataframe(left_out, hide_index=True)
    elif state in ("queued", "running"):
        where = run_status(existing).get("queue")
        st.info(f"This configuration waits for a free slot (run `{existing.id}`, {where})."
                if where else f"This configuration is training now (run `{existing.id}`).",
                icon=":material/sync:")
    else:
        st.caption("Not trained yet on this dataset." if existing is None else
                   f"Run `{existing.id}` of this configuration ended {state}; starting restarts it.")
    return state, refusal


def start_button(ds, cfg, state: str | None, refusal: str | None) -> None:
    """Start (or queue) ``cfg``'s run in the background and follow it; an error said plainly.
    Greyed while its run is queued, running or damaged, or training is refused
    (:func:`run_state_ui`'s ``state`` and ``refusal``)."""
    if st.button("Start training", type="primary", icon=":material/play_arrow:",
                 disabled=state in ("queued", "running", "broken") or bool(refusal)):
        try:
            run = start_run(cfg, ds.fingerprint)
            st.session_state["watch_run"] = run.id
            st.rerun()
        except Exception as exc:  # noqa: BLE001 - e.g. an unwritable workspace
            st.error(f"Could not start the run: {exc}")


def live_progress_ui(ds, task: str) -> None:
    """The queued and running runs, polled every 2 s while there are any; survives a refresh
    (their state lives on disk)."""

    @st.fragment(run_every=2 if active_runs(ds, task) else None)
    def live_progress():
        active = active_runs(ds, task)
        if not active:
            if st.session_state.pop("had_active", False):
                st.rerun()  # a run just ended: refresh the table and the sidebar's run picker
            return
        st.session_state["had_active"] = True
        st.subheader("Running")
        for run in active:
            frac, text = progress_text(run_status(run))
            st.progress(frac, text=f"{run_title(run)} — {text}")
            if st.button("Cancel", key=f"cancel_{run.id}", icon=":material/stop:"):
                cancel_run(run)
                st.rerun()

    live_progress()


def runs_list_ui(ds, task: str) -> None:
    """Every run on this dataset, with each failure's error and each leakage warning."""
    st.subheader("All runs on this dataset")
    runs = runs_to_list(ds, task)
    if not runs:
        st.caption("No runs yet.")
        return
    table(runs_table(runs))
    for run in runs:
        status = run.status()
        if status.get("state") == "failed" and status.get("error"):
            st.error(f"Run `{run.id[:8]}` failed: {status['error']}")
        if warning := leakage_warning(run):
            st.warning(warning, icon=":material/warning:")


def damaged_runs_ui() -> None:
    """The workspace's damaged runs, each with a Delete button, and what the last delete did."""
    if note := st.session_state.pop("delete_note", None):
        st.info(note, icon=":material/link_off:")
    damaged = damaged_runs()
    if not damaged:
        return
    st.subheader("Damaged runs")
    if st.session_state.get("delete_error"):
        st.error(f"Could not delete: {st.session_state['delete_error']}")
    for run, damage in damaged:
        text, button = st.columns([6, 1], vertical_alignment="center")
        text.error(f"Run `{run.id}`: **{damage.file}** is damaged ({damage.reason}). Its results "
                   "cannot be used; the other runs are not affected.",
                   icon=":material/broken_image:")
        button.button("Delete", key=f"delete_{run.id}", icon=":material/delete:",
                      on_click=delete_run, args=(run.id,))
