"""Components of the Explain page: where the film comes from (the run's test split, the dataset,
an upload or a PACS), the viewer's caption, the in-lung share, and the verdict with the review
form. The film viewer itself is :mod:`.viewer`'s; the maps are :mod:`.explaining`'s."""
from __future__ import annotations

from typing import Any, NamedTuple

import streamlit as st

from cxrlib.data.imageio import ImageReadError

from .address import from_address, to_address
from .core import file_stamp, fmt, md_literal
from .data import film as read_film, path_of, upload_film
from .evaluation import test_predictions
from .explaining import explain_refusal
from .pacs import SOURCE as PACS_SOURCE, pacs_film_ui
from .reviewing import review_form
from .viewer import film_nav

SOURCES = ["Test split of the run", "Dataset", "Upload (PNG / JPEG / DICOM)", PACS_SOURCE]


class ExplainFilm(NamedTuple):
    """The film to explain: ``truth`` is its label (None for an upload or a PACS film),
    ``dicom`` the PACS dataset it came from, ``upload`` whether it is outside the dataset."""
    film: Any
    key: str
    name: str
    truth: str | None
    dicom: Any
    upload: bool

    def place(self, ds) -> dict[str, Any]:
        """Where the film lives, as the lung and panel services take it (``ds``, ``rel_path``):
        an upload or a PACS film is not a film of the dataset."""
        return {"ds": None if self.upload else ds, "rel_path": None if self.upload else self.name}


def explain_film_ui(run, ds) -> ExplainFilm:
    """The source radio and the film picker; the page stops with a one-line reason when the
    film cannot be read or explained."""
    source = st.radio("Film from", SOURCES, horizontal=True, key="ex_source",
                      persist_state="session")
    truth = dicom = None
    try:
        if source == SOURCES[3]:
            film, film_key, name, dicom = pacs_film_ui()
        elif source == SOURCES[2]:
            upload = st.file_uploader("Chest X-ray", type=["png", "jpg", "jpeg", "dcm", "dicom"],
                                      key="ex_upload")
            if upload is None:
                st.info("Upload a film to explain it.", icon=":material/upload:")
                st.stop()
            film, film_key = upload_film(upload)
            name = upload.name
        else:
            rows = test_predictions(run) if source == SOURCES[0] else ds.manifest
            labels = dict(zip(rows["rel_path"], rows["label"]))
            key = f"ex_film_{source[:4]}"
            from_address("film", key, valid=labels)  # a reload or a link opens the same film
            name = st.selectbox("Film", list(labels), format_func=lambda r: f"{labels[r]} · {r}",
                                key=key, persist_state="session")  # kept when the user comes back
            to_address("film", name)
            film_nav(list(labels), key)
            truth, path = labels[name], path_of(ds, name)
            film, film_key = read_film(path), file_stamp(path)
    except ImageReadError as exc:
        st.error(f"Could not read this film: {exc.reason}")
        st.stop()
    except KeyError as exc:
        st.error(f"This film is not in the open dataset: {exc}")
        st.stop()
    refusal = explain_refusal(film)
    if refusal:
        st.error(f"Cannot explain this film: {refusal}.")
        st.stop()
    return ExplainFilm(film, film_key, name, truth, dicom, source in SOURCES[2:])


def viewer_caption(shown: ExplainFilm, cfg, what: str, lung: dict[str, Any],
                   outline: bool) -> str:
    """The line under the viewer: the film, its size, the map and how it is drawn."""
    h, w = shown.film.pixels.shape[:2]
    return (f"Original · {md_literal(shown.name)} · {w}×{h} px, at its native resolution (wheel: zoom, drag: "
            f"pan, double click: whole film) · {what} · alpha {cfg.alpha:g} · {cfg.colormap}"
            + (f" · below {cfg.threshold:.0%} not drawn" if cfg.threshold else "")
            + (f" · {contour_note(cfg.threshold)}" if cfg.contour else "")
            + (f" · lung outline ({lung['source']} mask)" if outline else ""))


def contour_note(threshold: float) -> str:
    """What contour mode draws at ``threshold``: ``contours at 40, 60, 80 %``."""
    from cxrlib.explain import drawn_levels  # noqa: PLC0415

    levels = drawn_levels(threshold)
    if not levels:
        return "contours: none at or above the threshold"
    return "contours at " + ", ".join(f"{level * 100:.0f}" for level in levels) + " %"


def lung_share_ui(container, lung: dict[str, Any]) -> None:
    """The CAM's share inside the lungs, and a warning when the lung mask is flagged."""
    container.metric("CAM inside the lungs", fmt(lung["share"], ".0%"),
                     help=f"Share of the heatmap's mass inside the lung field ({lung['source']} "
                          f"mask, quality {lung['quality']:.2f}), counted at the model input as "
                          "the audit does.")
    if lung["flagged"]:
        st.warning("The predicted lung mask of this film is flagged as poor (its quality is below "
                   "the segmenter's threshold): the in-lung share is rough, and the audit leaves "
                   "such films out.", icon=":material/masks:")


def verdict_ui(run, shown: ExplainFilm, probs, ds) -> str:
    """The predicted class against the label, and the review form of a dataset film; returns
    the predicted class."""
    pred = run.classes[int(probs.argmax())]
    verdict = f"Predicted **{pred}**" + (f"; labelled **{shown.truth}**." if shown.truth else ".")
    (st.success if shown.truth in (None, pred) else st.error)(verdict)
    with st.expander("Review this film", icon=":material/rate_review:"):
        if shown.upload:
            st.caption("An upload is not a film of the run's dataset: it cannot be reviewed here.")
        else:
            review_form(run, shown.name, label=shown.truth, prediction=pred, ds=ds, key="ex")
    return pred
