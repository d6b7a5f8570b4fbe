"""Home: what CXR Explorer is, which dataset layouts it reads, and the synthetic demo."""
import streamlit as st

import app_services as svc

st.title("CXR Explorer")
st.markdown("Explainable classification of chest X-rays into **COVID-19 / Normal / Viral "
            "Pneumonia** (or COVID-19 vs Normal), with the checks that show when a model learns "
            "the source of a film instead of the disease. Research and teaching only: "
            "**not a diagnostic tool.**")

status = svc.dataset_status()
if status.level == "ok":
    ds = status.dataset
    if svc.is_demo(ds):
        st.warning("You are looking at the **synthetic demo dataset**: drawings, not chest X-rays. "
                   "Accuracy on them says nothing about real films.", icon=":material/science:")
    counts = ds.manifest["label"].value_counts()
    cols = st.columns(len(counts) + 1)
    cols[0].metric("Images", f"{len(ds.manifest):,}")
    for col, (label, n) in zip(cols[1:], counts.items()):
        col.metric(label, f"{n:,}")
    st.markdown("**Next steps**")
    for path, label, icon in [
            ("pages/dataset.py", "Dataset: counts, sizes, sources and a sample grid", "photo_library"),
            ("pages/preprocessing.py", "Preprocessing: white balance, CLAHE, gamma, live", "tune"),
            ("pages/training.py", "Training: start a run in the background", "model_training"),
            ("pages/evaluation.py", "Evaluation: ROC, confusion, PPV / NPV, CIs", "analytics"),
            ("pages/explain.py", "Explain: Grad-CAM and friends on any film", "visibility"),
            ("pages/audit.py", "Audit: leakage, shortcuts, where the model looks", "policy")]:
        st.page_link(path, label=label, icon=f":material/{icon}:")
else:
    if status.level == "empty":
        st.info(f"{status.message} Point the sidebar at a dataset folder, or try every page "
                "at once on a small synthetic demo.", icon=":material/folder_open:")
    elif status.level == "error":
        st.error(status.message, icon=":material/folder_off:")
    st.button("Build the synthetic demo dataset", type="primary", icon=":material/science:",
              on_click=svc.build_demo_dataset,
              help="120 drawn 256×256 films (40 a class) in data/synthetic-demo. Clearly labelled "
                   "as synthetic; never written over your own files.")

if st.session_state.get("demo_built") and status.level == "ok":
    st.success(f"Demo dataset ready in `{st.session_state['demo_built']}` and opened.",
               icon=":material/check_circle:")

with st.expander("Accepted dataset layouts", expanded=status.level != "ok"):
    st.markdown("""
- **One folder per class.** Folder names are matched to classes through aliases:
  `COVID`, `covid`, `COVID-19` → COVID-19 · `NORMAL`, `normal` → Normal ·
  `Viral Pneumonia`, `virus`, `viral` → Viral Pneumonia.
- **COVID-19 Radiography Database** (Kaggle): opens as downloaded (`COVID/`, `Normal/`,
  `Viral Pneumonia/`, with `images/` and `masks/` inside each class; other classes are ignored).
- **Kermany `chest_xray`**: `train/`, `test/`, `val/` with `NORMAL/` and `PNEUMONIA/`;
  viral films are recognised from their names (`person1661_virus_2872.jpeg`); bacterial ones are
  left out of both tasks.
- **A `manifest.csv`** beside the images with at least `file` and `label`; optional `patient_id`,
  `group_id` (same patient or near-duplicate), `source` and other columns.

Images may be PNG or JPEG (8 or 16 bit) or DICOM. Patient ids are read from the manifest or from
known file-name patterns, so splits can keep each patient on one side.""")
