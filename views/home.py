"""Home: what CXR Explorer is, the bundled sample and its one-click first run, the accepted
dataset layouts, and the synthetic demo."""
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
    if svc.is_bundled_sample(ds):
        st.info("You are looking at the **bundled sample**: 120 real chest films (40 a class, one "
                "per patient, redistributable licences; see `samples/cxr3-sample/README.txt`). "
                "It carries the usual shortcuts of such sets: children's Viral and Normal films, "
                "adults' COVID-19 films.", icon=":material/photo_library:")
        quick = svc.quick_run_config(ds, ds.task)
        existing = svc.find_run(quick, ds.fingerprint)
        state = existing.status().get("state") if existing else None
        if state == "done":
            st.success(f"The quick MobileNetV2 run on the sample is ready (run `{existing.id[:8]}`, "
                       "picked in the sidebar): every page shows it.", icon=":material/check_circle:")
        elif state in ("queued", "running"):
            @st.fragment(run_every=2)
            def follow(run=existing):
                status = svc.run_status(run)  # "queued, position k of n" while it waits
                if status.get("state") not in ("queued", "running"):
                    st.rerun()  # finished: the sidebar's run picker and this page refresh
                frac, text = svc.progress_text(status)
                st.progress(frac, text=f"Quick run `{run.id[:8]}` — {text}")

            follow()
            st.page_link("views/training.py", label="Follow it on Training",
                         icon=":material/model_training:")
        elif st.button("Train a quick MobileNetV2 run on the sample", type="primary",
                       icon=":material/play_arrow:",
                       help="Frozen ImageNet backbone, head only, early stopping: under a minute "
                            "on a laptop CPU, in the background."):
            try:
                svc.start_run(quick, ds.fingerprint)
            except Exception as exc:  # noqa: BLE001 - e.g. no ImageNet weights offline
                st.error(f"Could not start the quick run: {exc}")
            else:
                st.rerun()
    st.markdown("**Next steps**")
    for path, label, icon in [
            ("views/dataset.py", "Dataset: counts, sizes, sources and a sample grid", "photo_library"),
            ("views/preprocessing.py", "Preprocessing: white balance, CLAHE, gamma, live", "tune"),
            ("views/training.py", "Training: start a run in the background", "model_training"),
            ("views/evaluation.py", "Evaluation: ROC, confusion, PPV / NPV, CIs", "analytics"),
            ("views/explain.py", "Explain: Grad-CAM and friends on any film", "visibility"),
            ("views/audit.py", "Audit: leakage, shortcuts, where the model looks", "policy"),
            ("views/review.py", "Review: radiologists' verdicts on films and heatmaps", "rate_review")]:
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
