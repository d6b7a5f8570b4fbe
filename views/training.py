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

state, refusal = svc.run_state_ui(ds, cfg, svc.find_run(cfg, ds.fingerprint))
svc.start_button(ds, cfg, state, refusal)
svc.live_progress_ui(ds, cfg.data.task)
svc.runs_list_ui(ds, cfg.data.task)
svc.damaged_runs_ui()
svc.sweeps_ui(cfg)  # issue 23: search the remedies, choose by leave-one-source-out
