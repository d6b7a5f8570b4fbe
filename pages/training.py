"""Training: configure a run, start it in the background, follow it live, list every run."""
import streamlit as st

import app_services as svc
from cxrlib.runs import runner

from cxrlib.runs import registry

st.title("Training")
ds = svc.require_dataset()

pre = st.session_state.get(svc.TRAIN_PREPROCESS)
if pre is not None:
    st.info(f"Preprocessing from the Preprocessing page: **{svc.describe_preprocess(pre)}**.",
            icon=":material/tune:")
cfg = svc.training_ui(svc.data_config(), pre)
if cfg is None:
    st.stop()
if pre is None:
    st.caption(f"Preprocessing: {svc.describe_preprocess(cfg.preprocess)} (the published one for "
               "this model; change it on the Preprocessing page).")

existing = registry.find_run(cfg, ds.fingerprint)
state = (existing.status().get("state") if existing else None)
if state == "done":
    st.success(f"Already trained: this exact configuration is cached as run `{existing.id}`. "
               "Starting it again returns the stored result at once.", icon=":material/bolt:")
elif state in ("queued", "running"):
    st.info(f"This configuration is training now (run `{existing.id}`).", icon=":material/sync:")
else:
    st.caption("Not trained yet on this dataset." if existing is None else
               f"Run `{existing.id}` of this configuration ended {state}; starting restarts it.")

if st.button("Start training", type="primary", icon=":material/play_arrow:",
             disabled=state in ("queued", "running")):
    try:
        run = runner.start(cfg, fingerprint=ds.fingerprint)
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
        frac, text = svc.progress_text(run.status())
        st.progress(frac, text=f"{svc.run_title(run)} — {text}")
        if st.button("Cancel", key=f"cancel_{run.id}", icon=":material/stop:"):
            runner.cancel(run.id, grace_s=5)
            st.rerun()


live_progress()

st.subheader("All runs on this dataset")
runs = svc.dataset_runs(ds, cfg.data.task)
if not runs:
    st.caption("No runs yet.")
else:
    st.dataframe(svc.runs_table(runs), hide_index=True,
                 column_config={"accuracy": st.column_config.NumberColumn(format="%.3f"),
                                "macro_auc": st.column_config.NumberColumn(format="%.3f")})
    for run in runs:
        status = run.status()
        if status.get("state") == "failed" and status.get("error"):
            st.error(f"Run `{run.id[:8]}` failed: {status['error']}")
        leak = svc.leakage(run)
        if leak.get("patients_on_several_sides") or leak.get("groups_on_several_sides"):
            st.warning(svc.leakage_text(run, leak), icon=":material/warning:")
