"""Evaluation: the sidebar's current run, or it and another side by side, on their test splits."""
import streamlit as st

import app_services as svc

st.title("Evaluation")
ds = svc.require_dataset()
runs = svc.runs_shown(ds, svc.require_run())
threshold = None
if ds.task == "binary":
    threshold = st.slider("Decision threshold on P(COVID-19)", 0.0, 1.0, 0.5, 0.01, key="ev_thr",
                          persist_state="session")
normalised = st.toggle("Normalise the confusion matrix by true class", key="ev_norm",
                       persist_state="session")

for col, run in zip(st.columns(len(runs)), runs):
    with col:
        svc.headline(runs, run, threshold)
svc.figure_rows(runs, threshold, normalised)

if len(runs) == 2:
    svc.comparison_ui(runs[0], runs[1], threshold)

svc.subgroups_ui(runs, ds)
svc.predictive_values_ui(runs, threshold)

st.subheader("Sample predictions, most confident errors first")
st.caption("The score is the model's probability of the class it predicts; it is not a "
           "calibrated chance of being right (see the reliability diagram).")
for run in runs:
    svc.sample_grid(runs, run, threshold)
