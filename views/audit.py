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
c1, c2, c3 = st.columns([2, 1, 1])
external = c1.text_input("External labelled folder (optional): the drop from the run's own test "
                         "split", key="au_external", persist_state="session").strip()
max_films = c2.select_slider("Test films for CAM and masking", [50, 100, 200, 500, "all"], 200,
                             key="au_max", persist_state="session")
method = c3.selectbox("CAM method", svc.cam_methods(), key="au_method",
                      format_func=svc.method_label,
                      help="Each at its own default layer. Score-CAM and Ablation-CAM run the "
                           "model once per channel: slow over many films on a CPU.")
max_films = None if max_films == "all" else int(max_films)
adversarial = svc.ADVERSARIAL_WEIGHT if st.toggle(
    "Also measure a source-adversarial head on leave-one-source-out (about doubles that step)",
    key="au_adv") else 0.0
masks = st.text_input("Lung masks folder (optional): human masks of this dataset's films "
                      "(cxr3-lungs or Radiography DB layout) win over predicted ones",
                      key="au_masks", persist_state="session").strip()

report = svc.cached_audit(run, external, max_films, method, adversarial, masks)
if report is None:
    slot = st.empty()
    if not slot.button("Run the audit", type="primary", icon=":material/policy:"):
        st.info("The audit reads every film once and explains the test films: a minute or more "
                "on a CPU for a real dataset. Its result is kept for this run.")
        st.stop()
    slot.empty()
    try:
        report = svc.run_audit(run, ds, external, max_films, method, adversarial, masks)
    except Exception as exc:  # noqa: BLE001 - e.g. a bad external folder: say it plainly
        st.error(f"The audit could not finish: {exc}")
        st.stop()

summary = report.summary()
m = st.columns(5)
m[0].metric("CNN test accuracy", svc.fmt(summary["cnn_accuracy"]))
m[1].metric("Metadata-only accuracy", svc.fmt(summary["metadata_accuracy"]),
            help=(f"Chance: {svc.fmt(report.metadata.majority_rate)} (the majority class). Balanced "
                  f"accuracy {svc.fmt(report.metadata.balanced_accuracy)} (chance "
                  f"{svc.fmt(1 / len(run.classes))})") if report.metadata else "—")
m[2].metric("CAM mass inside the lungs", svc.fmt(summary["cam_in_lung_share"].get("all"), ".0%"))
m[3].metric("Accuracy, lungs blanked", svc.fmt(summary["lungs_blanked_accuracy"]),
            help=svc.blanked_interval_text(report))
m[4].metric("Duplicate clusters", summary["duplicate_clusters"])
for verdict in report.verdicts:
    (st.warning if svc.verdict_is_alarming(verdict) else st.info)(verdict)
if report.skipped:  # films that could not be decoded: left out, the audit went on
    st.warning(f"{len(report.skipped)} films could not be read and were left out of the audit "
               "steps named below.", icon=":material/broken_image:")
    st.dataframe(report.skipped, hide_index=True)

st.subheader("Leakage: patients and near-duplicates on more than one side")
leaks = [t for t in (report.leakage.get("clusters"), report.leakage.get("patients"))
         if t is not None and len(t)]
for table in leaks:
    st.dataframe(table, hide_index=True)
if not leaks:
    st.success("No patient and no near-duplicate cluster has films on two sides of this split.")
if len(report.duplicate_clusters):
    ids = sorted(report.duplicate_clusters["cluster_id"].unique())
    cid = st.selectbox("Browse a duplicate cluster", ids, key="au_cluster",
                       format_func=lambda i: f"cluster {i}")
    films = report.duplicate_clusters[report.duplicate_clusters["cluster_id"] == cid].head(12)
    svc.image_grid(films, [f"{r.label} · {r.rel_path}" for r in films.itertuples()])

st.subheader("Metadata-only baseline")
if report.metadata is not None:
    left, right = st.columns(2)
    left.bar_chart(report.metadata.importances, x="feature", y="importance", horizontal=True,
                   sort="-importance", x_label="", y_label="importance in the forest")
    right.dataframe(svc.plain_table(report.metadata.confusion))
    st.caption(f"Balanced accuracy {svc.fmt(report.metadata.balanced_accuracy)} (chance "
               f"{svc.fmt(1 / len(run.classes))}); accuracy {svc.fmt(report.metadata.accuracy)} "
               f"(majority class {svc.fmt(report.metadata.majority_rate)}). The forest sees "
               "acquisition properties only, never the inside of the body:")
    st.dataframe(svc.metadata_features(), hide_index=True)

st.subheader("Where the model looks")
st.caption(svc.lung_masks_text(report))
svc.table(report.attention_summary)
st.markdown("Films with the most CAM mass outside the lungs, as the model saw them (left: the "
            "lung mask the share was computed with, right: the CAM with the same outline)")
for view in svc.gallery_views(report):
    a, b, c = st.columns([2, 2, 3])
    a.image(view["outline"])
    b.image(view["cam"])
    c.markdown(f"**{view['rel_path']}**  \n{view['label']} → {view['pred']}  \n"
               f"{view['share']:.0%} of the CAM inside the lungs  \n"
               f"mask: {view['masks']}, model input {view['size']} px")

st.subheader("Masked evaluation")
st.caption("Balanced accuracy is compared with chance (one over the classes); accuracy with the "
           "majority-class rate. 'called · <class>': the share of films the model calls that "
           "class under each masking. Films whose lung mask is flagged are left out (films); "
           "masks: which masks blanked or kept the lungs.")
svc.table(report.masked)
st.subheader("Per source")
svc.table(report.per_source)
gen = report.generalisation
if gen is not None:
    st.subheader("Will it work at another hospital?")
    if gen.loso is not None:
        g = st.columns(3)
        g[0].metric("Test-split accuracy", svc.fmt(gen.loso.test_accuracy))
        g[1].metric("Expected at an unseen source", svc.fmt(gen.loso.expected_accuracy),
                    help=svc.unseen_source_text(gen.loso))
        probe = gen.source_probe or {}
        g[2].metric("Source probe accuracy", svc.fmt(probe.get("accuracy")),
                    help=f"A linear probe naming the source from the backbone features (grouped "
                         f"folds); majority source {svc.fmt(probe.get('majority_rate'))}, within one "
                         f"class balanced {svc.fmt(probe.get('within_class_balanced_accuracy'))}")
        svc.chart(svc.loso_figure(gen), key="au_loso")
        svc.table(svc.loso_table(gen.loso, run.classes))
        for note in gen.loso.notes:
            st.caption(note)
    for note in gen.notes:
        st.info(note)
    svc.search_findings_section(ds)
    if gen.subgroups is not None:
        st.markdown("**Test split by subgroup** (worst first; red: the whole 95 % CI lies below "
                    "the overall accuracy)")
        forest, heat = svc.analysis_figures(gen.subgroups)
        svc.chart(forest, key="au_sg_forest")
        svc.chart(heat, key="au_sg_heat")
if report.external:
    st.subheader("External set")
    st.json({k: v for k, v in report.external.items() if k != "verdict"})
    if report.external_subgroups is not None:
        st.markdown("**Recall by subgroup of the external set**: a class recall that is high in "
                    "one subgroup and near zero in another is the finding, not the average.")
        forest, heat = svc.analysis_figures(report.external_subgroups)
        svc.chart(heat, key="au_ext_heat")
        svc.chart(forest, key="au_ext_forest")
        st.dataframe(svc.subgroup_table(report.external_subgroups.table,
                                        report.external_subgroups.classes), hide_index=True)
st.subheader("Heatmap trust: which map to believe")
svc.heatmap_trust_section(run, ds, max_films)
