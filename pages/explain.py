"""Explain: where the model looks on one film (CAM methods), at the film's own resolution."""
import streamlit as st

import app_services as svc
from cxrlib import explain

from cxrlib.data import imageio

st.title("Explain")
ds = svc.require_dataset()
run = svc.require_run()
st.caption(f"Run {svc.run_label(run)}")

SOURCES = ["Test split of the run", "Dataset", "Upload (PNG / JPEG / DICOM)"]
source = st.radio("Film from", SOURCES, horizontal=True, key="ex_source", persist_state="session")
truth = None
try:
    if source == SOURCES[2]:
        upload = st.file_uploader("Chest X-ray", type=["png", "jpg", "jpeg", "dcm", "dicom"],
                                  key="ex_upload")
        if upload is None:
            st.info("Upload a film to explain it.", icon=":material/upload:")
            st.stop()
        film, film_key = svc.upload_film(upload)
        name = upload.name
    else:
        rows = svc.test_predictions(run) if source == SOURCES[0] else ds.manifest
        labels = dict(zip(rows["rel_path"], rows["label"]))
        name = st.selectbox("Film", list(labels), format_func=lambda r: f"{labels[r]} · {r}",
                            key=f"ex_film_{source[:4]}")
        truth, path = labels[name], svc.path_of(ds, name)
        film, film_key = svc.film(path), svc.file_stamp(path)
except imageio.ImageReadError as exc:
    st.error(f"Could not read this film: {exc.reason}")
    st.stop()
except KeyError as exc:
    st.error(f"This film is not in the open dataset: {exc}")
    st.stop()

layers, default_layer = svc.cam_layers(run)
cfg = svc.explain_ui(layers, default_layer, list(run.classes))
try:
    res = svc.explanation(run, film.pixels, film_key, cfg)
except ValueError as exc:
    st.error(f"Cannot explain this film with these settings: {exc}")
    st.stop()

h, w = film.pixels.shape[:2]
left, right = st.columns(2)
left.image(film.pixels)  # captions apart: an image never stretches to its caption's width
left.caption(f"Original · {name} · {w}×{h} px")
right.image(res["overlay"])
right.caption(f"{cfg.method} on {cfg.layer or default_layer} · alpha {cfg.alpha:g} · "
              f"{cfg.colormap}" + (" · contours" if cfg.contour else ""))
probs = res["probs"]
cols = st.columns(len(run.classes) + 1)
for col, cls, p in zip(cols, run.classes, probs):
    col.metric(f"P({cls})", f"{p:.1%}")
faith = res["faithfulness"]
cols[-1].metric("Faithfulness (deletion)", f"{faith['faithfulness']:+.3f}",
                help="Area under the class-probability curve when pixels are removed in random "
                     "order minus the same when removed most-heated first. Above 0: the heatmap "
                     "points at pixels the model needs.")
pred = run.classes[int(probs.argmax())]
verdict = f"Predicted **{pred}**" + (f"; labelled **{truth}**." if truth else ".")
(st.success if truth in (None, pred) else st.error)(verdict)
st.download_button("Download the overlay (PNG)", explain.to_png(res["overlay"]),
                   file_name=f"{name.rsplit('/', 1)[-1].rsplit('.', 1)[0]}-{cfg.method}.png",
                   mime="image/png", icon=":material/download:")
st.caption("A heatmap shows what drove this model's score, not where disease is. Attention on "
           "text markers, borders or shoulders is a warning sign: see the Audit page.")
