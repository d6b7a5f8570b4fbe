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
method = c3.selectbox("CAM method", ["gradcam", "gradcam++"], key="au_method")
max_films = None if max_films == "all" else int(max_films)

report = svc.cached_audit(run, external, max_films, method)
if report is None:
    slot = st.empty()
    if not slot.button("Run the audit", type="primary", icon=":material/policy:"):
        st.info("The audit reads every film once and explains the test films: a minute or more "
                "on a CPU for a real dataset. Its result is kept for this run.")
        st.stop()
    slot.empty()
    try:
        report = svc.run_audit(run, ds, external, max_films, method)
    except Exception as exc:  # noqa: BLE001 - e.g. a bad external folder: say it plainly
        st.error(f"The audit could not finish: {exc}")
        st.stop()

summary = report.summary()
m = st.columns(5)
m[0].metric("CNN test accuracy", svc.fmt(summary["cnn_accuracy"]))
m[1].metric("Metadata-only accuracy", svc.fmt(summary["metadata_accuracy"]),
            help=f"Chance: {svc.fmt(report.metadata.chance) if report.metadata else '—'}")
m[2].metric("CAM mass inside the lungs", svc.fmt(summary["cam_in_lung_share"].get("all"), ".0%"))
m[3].metric("Accuracy, lungs blanked", svc.fmt(summary["lungs_blanked_accuracy"]))
m[4].metric("Duplicate clusters", summary["duplicate_clusters"])
for verdict in report.verdicts:
    alarming = any(w in verdict for w in ("confounded", "Leakage", "shortcuts", "falls from"))
    (st.warning if alarming else st.info)(verdict)

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
                   sort="-importance", x_label="importance in the forest", y_label="")
    right.dataframe(svc.plain_table(report.metadata.confusion))

st.subheader("Where the model looks")
st.dataframe(report.attention_summary, hide_index=True)
st.markdown("Films with the most CAM mass outside the lungs (left: lung mask, right: CAM)")
for row in report.gallery.head(4).itertuples():
    outline, cam, how = svc.mask_and_cam(run, svc.path_of(ds, row.rel_path), method)
    a, b, c = st.columns([2, 2, 3])
    a.image(outline)
    b.image(cam)
    c.markdown(f"**{row.rel_path}**  \n{row.label} → {row.pred}  \n"
               f"{row.in_lung_share:.0%} of the CAM inside the lungs (mask: {how})")

st.subheader("Masked evaluation")
st.dataframe(report.masked, hide_index=True)
st.subheader("Per source")
st.dataframe(report.per_source, hide_index=True)
if report.external:
    st.subheader("External set")
    st.json({k: v for k, v in report.external.items() if k != "verdict"})
