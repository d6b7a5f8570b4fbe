"""Dataset: what is in the folder, per class, and any film large with its metadata."""
import streamlit as st

import app_services as svc

st.title("Dataset")
ds = svc.require_dataset(full=True)
if svc.is_demo(ds):
    st.warning("Synthetic demo data: drawings, not chest X-rays.", icon=":material/science:")
for note in ds.warnings:
    st.warning(note, icon=":material/info:")

stats = svc.dataset_stats(ds)
cols = st.columns(4)
cols[0].metric("Images", f"{len(ds.manifest):,}")
cols[1].metric("Classes", len(stats))
cols[2].metric("Patients (known ids)", f"{int(stats['patients'].sum()):,}")
cols[3].metric("Unreadable files", f"{len(ds.problems):,}")

left, right = st.columns(2)
with left:
    svc.chart(svc.dataset_figures.class_counts_figure(stats))
with right:
    svc.chart(svc.dataset_figures.size_scatter_figure(ds.manifest))

st.subheader("Per class: images, patients and sizes")
st.caption("Width and height in pixels as stored, before any resizing (the published table).")
size_cols = ["label", "images", "patients", "width_min", "width_max", "height_min", "height_max",
             "aspect_min", "aspect_max"]
svc.table(stats[[c for c in size_cols if c in stats.columns]],
          column_config={"aspect min": st.column_config.NumberColumn(format="%.2f"),
                         "aspect max": st.column_config.NumberColumn(format="%.2f")})

st.subheader("Sources and formats")
src, fmt = st.columns([3, 2])
src.dataframe(svc.crosstab(ds, "source"))
fmt.dataframe(svc.crosstab(ds, "format"))

st.subheader("Unreadable files")
if len(ds.problems):
    st.error(f"{len(ds.problems)} file(s) could not be read and are left out.")
    st.dataframe(ds.problems[["rel_path", "reason"]], hide_index=True)
else:
    st.success("Every image file could be read.", icon=":material/check_circle:")

st.subheader("Samples per class")
if st.button("Reshuffle", icon=":material/shuffle:"):
    st.session_state["sample_seed"] = st.session_state.get("sample_seed", 0) + 1
seed = st.session_state.get("sample_seed", 0)
for label in ds.classes():
    st.markdown(f"**{label}**")
    rows = svc.sample_rows(ds, label, 6, seed)
    svc.image_grid(rows, [svc.md_literal(f"{r.rel_path.split('/')[-1]} · {r.width}×{r.height}")
                          for r in rows.itertuples()])

st.subheader("Any film, large")
choice = st.selectbox("Film", ds.manifest["rel_path"].tolist(), key="dataset_film",
                      persist_state="session")
row = ds.manifest.set_index("rel_path").loc[choice].to_dict() | {"rel_path": choice}
big, meta = st.columns([3, 1])
try:
    big.image(svc.display_pixels(row["path"]))
    big.caption(svc.md_literal(choice))
    with meta:
        patient = svc.patient_data_toggle("dataset_patient_data")
    meta.dataframe(svc.film_meta_table(row["path"], row, patient=patient), hide_index=True)
except Exception as exc:  # noqa: BLE001 - say which file and why instead of a traceback
    big.error(f"Could not open {svc.md_literal(choice)}: {getattr(exc, 'reason', exc)}")
