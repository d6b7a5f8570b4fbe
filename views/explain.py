"""Explain: where the model looks on one film (CAM methods), at the film's own resolution."""
import streamlit as st

import app_services as svc

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
except svc.ImageReadError as exc:
    st.error(f"Could not read this film: {exc.reason}")
    st.stop()
except KeyError as exc:
    st.error(f"This film is not in the open dataset: {exc}")
    st.stop()
refusal = svc.explain_refusal(film)
if refusal:
    st.error(f"Cannot explain this film: {refusal}.")
    st.stop()

layers, _ = svc.cam_layers(run)
cfg = svc.explain_ui(layers, list(run.classes), svc.method_layers(run))
try:
    res = svc.explanation(run, film.pixels, film_key, cfg)
except ValueError as exc:
    st.error(f"Cannot explain this film with these settings: {exc}")
    st.stop()

upload = source == SOURCES[2]
lung = svc.explanation_lungs(run, film.pixels, film_key, res, ds=None if upload else ds,
                             rel_path=None if upload else name)
outline = st.toggle("Lung outline", key="ex_lungs", persist_state="session",
                    help="The lung field the in-lung share counts: the dataset's own mask where "
                         "it has one, else the learned segmenter's.")
h, w = film.pixels.shape[:2]
left, right = st.columns(2)
shown, padded = svc.for_display(film.pixels)
left.image(shown)  # captions apart: an image never stretches to its caption's width
left.caption(f"Original · {name} · {w}×{h} px" + (" · shown padded (very long film)" if padded else ""))
if res["flat"]:  # no contrast: not an explanation, so nothing is drawn
    svc.flat_map_notice(right, cfg, res)
else:
    drawn = svc.with_outline(res["overlay"], lung["mask"]) if outline else res["overlay"]
    right.image(svc.for_display(drawn)[0])
right.caption(f"{cfg.method} on {res['layer']} · alpha {cfg.alpha:g} · "
              f"{cfg.colormap}" + (" · contours" if cfg.contour else "")
              + (f" · lung outline ({lung['source']} mask)" if outline else ""))
svc.heatmap_trust_panel(right, run, film.pixels, film_key, cfg, res)
probs = res["probs"]
cols = st.columns(len(run.classes) + 2)
for col, cls, p in zip(cols, run.classes, probs):
    col.metric(f"P({cls})", f"{p:.1%}")
faith = res["faithfulness"]
cols[-2].metric("Faithfulness (deletion)",
                "—" if faith is None else f"{faith['faithfulness']:+.3f}",
                help="Area under the class-probability curve when pixels are removed in random "
                     "order minus the same when removed most-heated first. Above 0: the heatmap "
                     "points at pixels the model needs.")
cols[-1].metric("CAM inside the lungs", svc.fmt(lung["share"], ".0%"),
                help=f"Share of the heatmap's mass inside the lung field ({lung['source']} mask, "
                     f"quality {lung['quality']:.2f}), counted at the model input as the audit does.")
if lung["flagged"]:
    st.warning("The predicted lung mask of this film is flagged as poor (its quality is below the "
               "segmenter's threshold): the in-lung share is rough, and the audit leaves such "
               "films out.", icon=":material/masks:")
pred = run.classes[int(probs.argmax())]
verdict = f"Predicted **{pred}**" + (f"; labelled **{truth}**." if truth else ".")
(st.success if truth in (None, pred) else st.error)(verdict)
with st.expander("Review this film", icon=":material/rate_review:"):
    if source == SOURCES[2]:
        st.caption("An upload is not a film of the run's dataset: it cannot be reviewed here.")
    else:
        svc.review_form(run, name, label=truth, prediction=pred, ds=ds, key="ex")
if not res["flat"]:
    st.download_button("Download the overlay (PNG)", svc.to_png(res["overlay"]),
                       file_name=f"{name.rsplit('/', 1)[-1].rsplit('.', 1)[0]}-{cfg.method}.png",
                       mime="image/png", icon=":material/download:")
st.caption("A heatmap shows what drove this model's score, not where disease is. Attention on "
           "text markers, borders or shoulders is a warning sign: see the Audit page.")
