"""Explain: where the model looks on one film (CAM methods), at the film's own resolution."""
import streamlit as st

import app_services as svc

st.title("Explain")
ds = svc.require_dataset()
run = svc.require_run()
st.caption(f"Run {svc.run_label(run)}")

SOURCES = ["Test split of the run", "Dataset", "Upload (PNG / JPEG / DICOM)", svc.PACS_SOURCE]
source = st.radio("Film from", SOURCES, horizontal=True, key="ex_source", persist_state="session")
truth = dicom = None
try:
    if source == SOURCES[3]:
        film, film_key, name, dicom = svc.pacs_film_ui()
    elif source == SOURCES[2]:
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
        key = f"ex_film_{source[:4]}"
        svc.from_address("film", key, valid=labels)  # a reload or a link opens the same film
        name = st.selectbox("Film", list(labels), format_func=lambda r: f"{labels[r]} · {r}",
                            key=key)
        svc.to_address("film", name)
        svc.film_nav(list(labels), key)
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
compared = svc.methods_ui(cfg)
try:
    res = svc.explanation(run, film.pixels, film_key, cfg, faithful=False)
except ValueError as exc:
    st.error(f"Cannot explain this film with these settings: {exc}")
    st.stop()

upload = source in SOURCES[2:]  # an upload or a PACS film: not a film of the dataset
where = dict(ds=None if upload else ds, rel_path=None if upload else name)
lung = svc.explanation_lungs(run, film.pixels, film_key, res, **where)
window = svc.window_ui("ex_wl")
h, w = film.pixels.shape[:2]
what = svc.look(cfg, res, run)
panels = svc.explain_panels(run, film.pixels, film_key, cfg, res, lung, compared, **where)
if res["flat"]:  # no contrast: not an explanation, so nothing is drawn
    svc.flat_map_notice(st, cfg, res)
outline = st.toggle("Lung outline", key="ex_lungs", persist_state="session",
                    help="The lung field the in-lung share counts: the dataset's own mask where "
                         "it has one, else the learned segmenter's.")
svc.film_viewer(film.pixels, film_key, panels, cfg, window, key="ex_viewer",
                outline=lung["mask"] if outline else None, outline_key=lung["source"])
st.caption(f"Original · {name} · {w}×{h} px, at its native resolution (wheel: zoom, drag: pan, "
           f"double click: whole film) · {what} · alpha {cfg.alpha:g} · {cfg.colormap}"
           + (f" · below {cfg.threshold:.0%} not drawn" if cfg.threshold else "")
           + (" · contours" if cfg.contour else "")
           + (f" · lung outline ({lung['source']} mask)" if outline else ""))
svc.heatmap_trust_panel(st, run, film.pixels, film_key, cfg, res)
probs = res["probs"]
svc.scores(run, probs)
c1, c2 = st.columns(2)
svc.faithfulness_ui(c1, run, film.pixels, film_key, cfg, res)
c2.metric("CAM inside the lungs", svc.fmt(lung["share"], ".0%"),
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
    if upload:
        st.caption("An upload is not a film of the run's dataset: it cannot be reviewed here.")
    else:
        svc.review_form(run, name, label=truth, prediction=pred, ds=ds, key="ex")
if not res["flat"]:
    svc.overlay_download(run, name, cfg, res, pred, float(probs.max()))
if dicom is not None:
    svc.send_results_ui(run, dicom, film.pixels, res, lung, cfg)
st.caption("A heatmap shows what drove this model's score, not where disease is. Attention on "
           "text markers, borders or shoulders is a warning sign: see the Audit page.")
