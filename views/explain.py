"""Explain: where the model looks on one film (CAM methods), at the film's own resolution."""
import streamlit as st

import app_services as svc

st.title("Explain")
ds = svc.require_dataset()
run = svc.require_run()
st.caption(f"Run {svc.run_label(run)}")
shown = svc.explain_film_ui(run, ds)
film, film_key = shown.film, shown.key

layers, _ = svc.cam_layers(run)
cfg = svc.explain_ui(layers, list(run.classes), svc.method_layers(run))
compared = svc.methods_ui(cfg)
try:
    res = svc.explanation(run, film.pixels, film_key, cfg)
except ValueError as exc:
    st.error(f"Cannot explain this film with these settings: {exc}")
    st.stop()

where = shown.place(ds)
lung = svc.explanation_lungs(run, film.pixels, film_key, res, **where)
window = svc.window_ui("ex_wl")
what = svc.look(cfg, res, run)
panels = svc.explain_panels(run, film.pixels, film_key, cfg, res, lung, compared, **where)
if res["flat"]:  # no contrast: not an explanation, so nothing is drawn
    svc.flat_map_notice(st, cfg, res)
outline = st.toggle("Lung outline", key="ex_lungs", persist_state="session",
                    help="The lung field the in-lung share counts: the dataset's own mask where "
                         "it has one, else the learned segmenter's.")
svc.film_viewer(film.pixels, film_key, panels, cfg, window, key="ex_viewer",
                outline=lung["mask"] if outline else None, outline_key=lung["source"])
st.caption(svc.viewer_caption(shown, cfg, what, lung, outline))
svc.heatmap_trust_panel(st, run, film.pixels, film_key, cfg, res)
probs = res["probs"]
svc.scores(run, probs)
c1, c2 = st.columns(2)
svc.faithfulness_ui(c1, run, film.pixels, film_key, cfg, res)
svc.lung_share_ui(c2, lung)
pred = svc.verdict_ui(run, shown, probs, ds)
if not res["flat"]:
    svc.overlay_download(run, shown.name, cfg, res, pred, float(probs.max()))
if shown.dicom is not None:
    svc.send_results_ui(run, shown.dicom, film.pixels, res, lung, cfg)
st.caption("A heatmap shows what drove this model's score, not where disease is. Attention on "
           "text markers, borders or shoulders is a warning sign: see the Audit page.")
