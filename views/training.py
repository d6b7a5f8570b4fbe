"""Training: configure a run, start it in the background, follow it live, list every run."""
import streamlit as st

import app_services as svc

st.title("Training")
ds = svc.require_dataset()

pre = st.session_state.get(svc.TRAIN_PREPROCESS)
if pre is not None:
    st.info(f"Preprocessing from the Preprocessing page: **{svc.describe_preprocess(pre)}**.",
            icon=":material/tune:")
cfg = svc.training_ui(svc.data_config(), pre)
if cfg is not None:
    cfg = svc.lung_crop_ui(cfg)
if cfg is None:  # the widgets said why; a greyed button shows nothing will start
    st.button("Start training", type="primary", icon=":material/play_arrow:", disabled=True)
    st.stop()
if pre is None:
    st.caption(f"Preprocessing: {svc.describe_preprocess(cfg.preprocess)} (the published steps "
               "for this model, with the lung crop when it is switched on above; change them on "
               "the Preprocessing page).")

existing = svc.find_run(cfg, ds.fingerprint)
damage = existing.damage() if existing else None
state = "broken" if damage else (existing.status().get("state") if existing else None)
refusal = svc.trainable_error(ds, cfg)
if refusal:
    st.error(f"Training refused: {refusal}", icon=":material/block:")
if state == "broken":
    st.error(f"Run `{existing.id}` of this configuration is damaged ({damage.file}: "
             f"{damage.reason}). Delete it below to train this configuration again.",
             icon=":material/broken_image:")
elif state == "done":
    st.success(f"Already trained: this exact configuration is cached as run `{existing.id}`. "
               "Starting it again returns the stored result at once.", icon=":material/bolt:")
    left_out = svc.left_out_of_training(ds, cfg)
    if left_out:
        st.warning(f"{len(left_out)} films could not be decoded and were left out of this run.",
                   icon=":material/broken_image:")
        st.dataframe(left_out, hide_index=True)
elif state in ("queued", "running"):
    where = svc.run_status(existing).get("queue")
    st.info(f"This configuration waits for a free slot (run `{existing.id}`, {where})." if where
            else f"This configuration is training now (run `{existing.id}`).", icon=":material/sync:")
else:
    st.caption("Not trained yet on this dataset." if existing is None else
               f"Run `{existing.id}` of this configuration ended {state}; starting restarts it.")

if st.button("Start training", type="primary", icon=":material/play_arrow:",
             disabled=state in ("queued", "running", "broken") or bool(refusal)):
    try:
        run = svc.start_run(cfg, ds.fingerprint)
        st.session_state["watch_run"] = run.id
        st.rerun()
    except Exception as exc:  # noqa: BLE001 - e.g. an unwritable workspace
        st.error(f"Could not start the run: {exc}")


@st.fragment(run_every=2 if svc.active_runs(ds, cfg.data.task) else None)
def live_progress():
    """Polls the queued and running runs; survives a refresh (their state lives on disk)."""
    active = svc.active_runs(ds, cfg.data.task)
    if not active:
        if st.session_state.pop("had_active", False):
            st.rerun()  # a run just ended: refresh the table and the sidebar's run picker
        return
    st.session_state["had_active"] = True
    st.subheader("Running")
    for run in active:
        frac, text = svc.progress_text(svc.run_status(run))
        st.progress(frac, text=f"{svc.run_title(run)} — {text}")
        if st.button("Cancel", key=f"cancel_{run.id}", icon=":material/stop:"):
            svc.cancel_run(run)
            st.rerun()


live_progress()

st.subheader("All runs on this dataset")
runs = svc.runs_to_list(ds, cfg.data.task)
if not runs:
    st.caption("No runs yet.")
else:
    svc.table(svc.runs_table(runs))
    for run in runs:
        status = run.status()
        if status.get("state") == "failed" and status.get("error"):
            st.error(f"Run `{run.id[:8]}` failed: {status['error']}")
        if warning := svc.leakage_warning(run):
            st.warning(warning, icon=":material/warning:")

if note := st.session_state.pop("delete_note", None):
    st.info(note, icon=":material/link_off:")
damaged = svc.damaged_runs()
if damaged:
    st.subheader("Damaged runs")
    if st.session_state.get("delete_error"):
        st.error(f"Could not delete: {st.session_state['delete_error']}")
    for run, damage in damaged:
        text, button = st.columns([6, 1], vertical_alignment="center")
        text.error(f"Run `{run.id}`: **{damage.file}** is damaged ({damage.reason}). Its results "
                   "cannot be used; the other runs are not affected.", icon=":material/broken_image:")
        button.button("Delete", key=f"delete_{run.id}", icon=":material/delete:",
                      on_click=svc.delete_run, args=(run.id,))

svc.sweeps_ui(cfg)  # issue 23: search the remedies, choose by leave-one-source-out
