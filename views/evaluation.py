"""Evaluation: one run, or two side by side, on their test splits."""
import streamlit as st

import app_services as svc

st.title("Evaluation")
ds = svc.require_dataset()
run0 = svc.require_run()
done = [r for r in svc.dataset_runs(ds, ds.task) if r.status().get("state") == "done"]
labels = {r.id: svc.run_label(r) for r in done}
chosen = st.multiselect("Runs (one, or two side by side)", list(labels), default=[run0.id],
                        format_func=labels.get, max_selections=2, key="ev_runs")
runs = [svc.get_run(i) for i in chosen] or [run0]
threshold = None
if ds.task == "binary":
    threshold = st.slider("Decision threshold on P(COVID-19)", 0.0, 1.0, 0.5, 0.01, key="ev_thr")
normalised = st.toggle("Normalise the confusion matrix by true class", key="ev_norm")

cols = st.columns(len(runs))
for col, run in zip(cols, runs):
    with col:
        res, ci = svc.evaluation(run, threshold), svc.bootstrap(run, 1000, threshold)
        ev = res["eval"]
        st.subheader(f"Run `{run.id[:8]}`")
        st.caption(svc.run_label(run))
        if run.val_is_test:
            st.warning("The test split doubled as validation (published 80/20): these test "
                       "metrics are optimistic.", icon=":material/warning:")
        if warning := svc.leakage_warning(run):
            st.warning(warning, icon=":material/warning:")
        acc_ci = ci["metrics"]["accuracy"]
        m1, m2, m3 = st.columns(3)
        m1.metric("Test accuracy", svc.fmt(ev["accuracy"]),
                  help=f"95 % CI {svc.fmt(acc_ci['low'])}–{svc.fmt(acc_ci['high'])}")
        m2.metric("Macro AUC", svc.fmt(ev["auc"]["macro"]))
        m3.metric("Test films", f"{ev['n']}", help=f"{ev.get('n_patients') or '?'} patients")
        st.caption(f"95 % CI of accuracy: {svc.fmt(acc_ci['low'])} – {svc.fmt(acc_ci['high'])} "
                   f"({ci['n_boot']} {ci['unit']}-level bootstrap resamples)")
        svc.chart(svc.figures.training_curves_figure(run.history()), key=f"hist_{run.id}")
        # one run: figures two to a row; two runs: one column each, aligned figure by figure
        a, b = st.columns(2) if len(runs) == 1 else (st.container(), st.container())
        with a:
            svc.chart(svc.figures.confusion_heatmap(ev["confusion"], ev["classes"], normalised),
                      key=f"conf_{run.id}")
        b.dataframe(svc.report_table(ev), hide_index=True)
        a, b = st.columns(2) if len(runs) == 1 else (st.container(), st.container())
        with a:
            svc.chart(svc.figures.roc_figure(res["roc"]), key=f"roc_{run.id}")
        with b:
            svc.chart(svc.figures.pr_figure(res["pr"]), key=f"pr_{run.id}")
        a, b = st.columns(2) if len(runs) == 1 else (st.container(), st.container())
        with a:
            svc.chart(svc.figures.reliability_figure(res["calibration"]), key=f"cal_{run.id}")
        with b:
            svc.chart(svc.figures.bootstrap_ci_figure(ci), key=f"ci_{run.id}")
            st.dataframe(svc.ci_table(ci), hide_index=True)

if len(runs) == 2:
    svc.comparison_ui(runs[0], runs[1], threshold)

st.subheader("Where it fails: accuracy by subgroup")
available, default = svc.subgroup_columns(runs[0], ds)
by = st.multiselect("Cut the test split by", available, default=default, key="ev_by",
                    help="Any manifest column, or a derived attribute: binned width, height and "
                         "megapixels, format, JPEG quality, small re-encoded copy. Every subgroup "
                         "has a patient-level bootstrap 95 % CI; red: the whole CI lies below the "
                         "overall accuracy.")
if by:
    cols = st.columns(len(runs))
    for col, run in zip(cols, runs):
        with col:
            sub = svc.subgroups(run, ds, by)
            flagged = sub["table"][sub["table"]["flagged"]]
            st.markdown(f"Run `{run.id[:8]}`: {len(sub['table'])} subgroups, "
                        f"**{len(flagged)} flagged** (overall accuracy "
                        f"{svc.fmt(sub['overall']['accuracy'])})")
            forest, heat = svc.subgroup_figures(sub)
            svc.chart(forest, key=f"sg_forest_{run.id}")
            svc.chart(heat, key=f"sg_heat_{run.id}")
            st.dataframe(svc.subgroup_table(sub["table"], sub["classes"]), hide_index=True)
            st.download_button("Subgroups (CSV)", sub["csv"], f"subgroups-{run.id}.csv", "text/csv",
                               key=f"dl_sg_{run.id}")

st.subheader("Predictive values at the prevalence you expect")
p1, p2 = st.columns([1, 2])
target = p1.selectbox("Positive class", runs[0].classes, key="ev_pos")
prevalence = p2.slider("Prevalence in the population of interest", 0.001, 0.999, 0.05, 0.001,
                       format="%.3f", key="ev_prev")
cols = st.columns(len(runs))
for col, run in zip(cols, runs):
    pv = svc.predictive_values(run, threshold, target, prevalence)
    a, b, c, d = col.columns(4)
    a.metric("Sensitivity", svc.fmt(pv["sensitivity"]))
    b.metric("Specificity", svc.fmt(pv["specificity"]))
    c.metric("PPV", svc.fmt(pv["ppv"]))
    d.metric("NPV", svc.fmt(pv["npv"]))

st.subheader("Sample predictions, most confident errors first")
for run in runs:
    records = svc.sample_records(run, threshold)
    st.markdown(f"Run `{run.id[:8]}`: {int((~records['correct']).sum())} errors of {len(records)}")
    shown = records.head(12)
    svc.image_grid(shown, [(f"✓ {r.true} → {r.predicted} ({r.confidence:.0%})" if r.correct else
                            f":red[**✗ {r.true} → {r.predicted}** ({r.confidence:.0%})]")
                           for r in shown.itertuples()])
    svc.review_link(run, shown, key=f"ev_review_{run.id}")
    d1, d2, d3 = st.columns(3)
    d1.download_button("Predictions (CSV)", svc.download_csv(svc.test_predictions(run)),
                       f"predictions-{run.id}.csv", "text/csv", key=f"dl_p_{run.id}")
    d2.download_button("Classification report (CSV)",
                       svc.download_csv(svc.report_table(svc.evaluation(run, threshold)["eval"])),
                       f"report-{run.id}.csv", "text/csv", key=f"dl_r_{run.id}")
    d3.download_button("Model (best.keras)", svc.model_file(run), f"{run.id}.keras",
                       "application/octet-stream", key=f"dl_m_{run.id}",
                       help="Loads in plain Keras: keras.models.load_model(path). "
                            "`python -m cxrlib export` writes a SavedModel or TFLite file.")
