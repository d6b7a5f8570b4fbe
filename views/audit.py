"""Audit: does the run's model see disease, or the source of the films?"""
import streamlit as st

import app_services as svc

st.title("Audit")
st.caption("Leakage across splits, a classifier that sees only image properties, where the model "
           "looks, and how it does with the lungs blanked: the checks published COVID-19 models "
           "usually skip.")
ds = svc.require_dataset()
run = svc.require_run()
st.markdown(f"Run **{svc.run_label(run)}**")
options = svc.audit_options_ui()
report = svc.audit_report(run, ds, options)

svc.audit_headline(report, run)
svc.leakage_section(report)
svc.metadata_section(report, run)
svc.attention_section(report)
svc.masked_section(report)
svc.generalisation_section(report, run, ds)
svc.external_section(report)
st.subheader("Heatmap trust: which map to believe")
svc.heatmap_trust_section(run, ds, options["max_films"])
