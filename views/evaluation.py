"""Evaluation: the sidebar's current run, or it and another side by side, on their test splits.
Below the headline, one tab at a time is drawn (the whole page was 8 charts, 4 tables and 12
films: its browser work was the heaviest of any page)."""
import streamlit as st

import app_services as svc

st.title("Evaluation")
ds = svc.require_dataset()
runs = svc.runs_shown(ds, svc.require_run())
threshold = None
if ds.task == "binary":
    threshold = st.slider("Decision threshold on P(COVID-19)", 0.0, 1.0, 0.5, 0.01, key="ev_thr",
                          persist_state="session")

for col, run in zip(st.columns(len(runs)), runs):
    with col:
        svc.headline(runs, run, threshold)

performance, fails, values, samples = svc.kept_tabs(
    ["Performance", "Where it fails", "Predictive values", "Sample predictions"], key="ev_tab",
    param="tab")
with performance:
    if performance.open:
        normalised = st.toggle("Normalise the confusion matrix by true class", key="ev_norm",
                               persist_state="session")
        svc.figure_rows(runs, threshold, normalised)
        if len(runs) == 2:
            svc.comparison_ui(runs[0], runs[1], threshold)
with fails:
    if fails.open:
        svc.subgroups_ui(runs, ds)
with values:
    if values.open:
        svc.predictive_values_ui(runs, threshold)
with samples:
    if samples.open:
        st.subheader("Sample predictions, most confident errors first")
        st.caption("The score is the model's probability of the class it predicts; it is not a "
                   "calibrated chance of being right (see the reliability diagram).")
        for run in runs:
            svc.sample_grid(runs, run, threshold)
