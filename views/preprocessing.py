"""Preprocessing: white balance, CLAHE, gamma and the lung crop on a film, before / after, live."""
import streamlit as st

import app_services as svc

st.title("Preprocessing")
ds = svc.require_dataset()
st.caption("Previews run at display size (longer side ≤ 768 px); training applies the same steps "
           "at the film's native size, then resizes to the model input.")

films = svc.preview_films(ds)  # one random film per class, stable within the session
pick, presets = st.columns([3, 2])
ANY = "Choose any film…"
choice = pick.selectbox("Film (one per class at random, or any)", [*films, ANY], key="pp_film",
                        format_func=lambda r: r if r == ANY else f"{films[r]} · {r}",
                        persist_state="session")
pick.button("Other random films", on_click=svc.reshuffle_preview_films, icon=":material/shuffle:")
if choice == ANY:
    choice = pick.selectbox("Any film of the dataset", ds.manifest["rel_path"].tolist(),
                            key="pp_any", persist_state="session")
path = svc.path_of(ds, choice)
presets.markdown("**Published settings**")
presets.button("White balance → MobileNetV2", on_click=svc.apply_preset,
               args=(svc.PreprocessConfig.published_mobilenet(),))
presets.button("CLAHE → small CNN", on_click=svc.apply_preset,
               args=(svc.PreprocessConfig.published_clahe(),))

cfg = svc.preprocess_ui(st.session_state.get(svc.TRAIN_PREPROCESS) or svc.PreprocessConfig())
if cfg is None:
    st.stop()
try:
    view = svc.preprocess_preview(path, cfg)
except Exception as exc:  # noqa: BLE001 - an unreadable film is a message, not a traceback
    st.error(f"Could not preprocess {choice}: {getattr(exc, 'reason', exc)}")
    st.stop()
outline = st.toggle("Show the predicted lung mask", True, key="pp_lungs", persist_state="session",
                    help="The learned segmenter's lung field of this film: what the lung-crop "
                         "step cuts by, and what the Audit counts as lung when the dataset has "
                         "no masks of its own.")
before, after = st.columns(2)
before.image(view["before"], caption=f"Original · {choice}", width="stretch")
after.image(svc.with_outline(view["after"], view["lungs"]) if outline else view["after"],
            caption="Preprocessed: " + svc.describe_preprocess(cfg), width="stretch")
if outline:
    after.caption(f"Green: the predicted lung mask (quality {view['lungs_quality']:.2f}).")
if outline and view["lungs_flagged"]:
    st.warning("The segmenter flags this film's lung mask as poor (quality below its threshold); "
               "the Audit leaves such films out of its lung figures.", icon=":material/masks:")
svc.chart(svc.figures.histogram_figure(view["hist_before"], view["hist_after"]))

st.subheader("The same settings on one film per class")
cols = st.columns(len(films))
for col, (rel, label) in zip(cols, films.items()):
    col.image(svc.preprocess_preview(svc.path_of(ds, rel), cfg)["after"], caption=label,
              width="stretch")

if st.button("Use these settings for training", type="primary", icon=":material/arrow_forward:"):
    st.session_state[svc.TRAIN_PREPROCESS] = cfg
if st.session_state.get(svc.TRAIN_PREPROCESS) == cfg:
    st.success("The Training page will use these settings.", icon=":material/check_circle:")
    st.page_link("views/training.py", label="Go to Training", icon=":material/model_training:")
