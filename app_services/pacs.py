"""The Explain page's PACS source: search a DICOMweb server, pick a study and a film, and send
the film's results back (SEG, SC, SR) by STOW-RS.

Settings come from Streamlit's secrets (a ``[pacs]`` table: ``url``, ``username`` /
``password`` or ``token``, ``verify``, ``timeout``) or else the ``CXR_PACS_*`` environment
(:mod:`cxrlib.dicom.web`). Retrieved films stay in memory (a cache keyed by SOP instance UID and
bounded by bytes, :mod:`.bytecache`); nothing is written to disk. Patient names are not shown:
studies are listed by date, accession number and patient id.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import streamlit as st

from cxrlib.dicom import web

from .bytecache import byte_cached
from .explaining import overlay_of

SOURCE = "PACS (DICOMweb)"


def pacs_settings() -> tuple[web.PacsSettings | None, str]:
    """``(settings, "")``, or ``(None, why not)`` when no PACS is configured or it is misconfigured."""
    try:
        table = dict(st.secrets.get("pacs", {}))
    except Exception:  # noqa: BLE001  (no secrets file at all: Streamlit raises its own error)
        table = {}
    try:
        if table:
            return web.PacsSettings.from_mapping(table), ""
        return web.PacsSettings.from_env(), ""
    except ValueError as exc:
        return None, str(exc)


@st.cache_resource(max_entries=2, show_spinner=False)
def _client(url: str, auth: str, _settings: web.PacsSettings) -> web.PacsClient:
    return web.PacsClient(_settings)


def client() -> web.PacsClient:
    """The configured PACS client (call :func:`pacs_settings` first)."""
    settings, why = pacs_settings()
    if settings is None:
        raise web.PacsError(why)
    return _client(settings.url, settings.auth, settings)


@st.cache_data(ttl=60, max_entries=16, show_spinner="Searching the PACS…")
def _search(url: str, patient_id: str, accession: str, date_from: str, date_to: str) -> list:
    return client().search_studies(patient_id=patient_id or None, accession=accession or None,
                                   date_from=date_from or None, date_to=date_to or None)


@st.cache_data(ttl=60, max_entries=16, show_spinner="Listing the study's films…")
def _films(url: str, study_uid: str) -> list:
    return client().films(study_uid)


@byte_cached(0.05, spinner="Retrieving the film…")  # a 16-bit DX film and its object: ~60 MB
def _retrieve(url: str, sop_uid: str, _ref: web.FilmRef):
    from cxrlib.dicom.films import film_of_dataset  # noqa: PLC0415

    ds = client().retrieve(_ref)
    return film_of_dataset(ds), ds


def _study_label(s: web.Study) -> str:
    date = f"{s.study_date[:4]}-{s.study_date[4:6]}-{s.study_date[6:]}" if len(s.study_date) == 8 else "no date"
    films = "" if s.n_instances is None else f" · {s.n_instances} object(s)"
    return (f"{date} · accession {s.accession or '—'} · patient {s.patient_id or '—'} · "
            f"{'/'.join(s.modalities) or '?'}{films}" + (f" · {s.description}" if s.description else ""))


def pacs_film_ui() -> tuple[Any, str, str, Any]:
    """Search, pick a study and one of its films; returns ``(film, film_key, name, dataset)``.

    Stops the page (with a message) until a film is chosen, or when the PACS cannot be used.
    """
    settings, why = pacs_settings()
    if settings is None:
        st.info(f"No PACS is configured ({why}). Set CXR_PACS_URL (and CXR_PACS_USER / "
                "CXR_PACS_PASSWORD or CXR_PACS_TOKEN), or a [pacs] table in Streamlit's "
                "secrets: see docs/pacs.md.", icon=":material/dns:")
        st.stop()
    st.caption(f"PACS {settings.url} · authentication: {settings.auth}")
    c1, c2, c3 = st.columns(3)
    patient_id = c1.text_input("Patient id", key="pacs_patient", persist_state="session")
    accession = c2.text_input("Accession number", key="pacs_accession",
                              persist_state="session")
    dates = c3.date_input("Study dates", value=(), key="pacs_dates", persist_state="session",
                          max_value=dt.date.today() + dt.timedelta(days=1))
    lo, hi = (list(dates) + [None, None])[:2] if isinstance(dates, (list, tuple)) else (dates, None)
    try:
        studies = _search(settings.url, patient_id.strip(), accession.strip(),
                          lo.strftime("%Y%m%d") if lo else "", hi.strftime("%Y%m%d") if hi else "")
        if not studies:
            st.info("No study with CR or DX films matches.", icon=":material/search_off:")
            st.stop()
        by_uid = {s.study_uid: s for s in studies}
        study = st.selectbox(f"Study ({len(studies)} found)", list(by_uid),
                             format_func=lambda u: _study_label(by_uid[u]), key="pacs_study",
                             persist_state="session")
        refs = {r.sop_uid: r for r in _films(settings.url, study)}
        sop = st.selectbox(f"Film ({len(refs)} in the study's CR/DX series)", list(refs),
                           format_func=lambda u: f"{refs[u].modality} · series "
                           f"{refs[u].series_description or refs[u].series_uid[-12:]} · "
                           f"image {refs[u].instance_number or '?'}", key="pacs_film",
                           persist_state="session")
        film, ds = _retrieve(settings.url, sop, refs[sop])
    except web.PacsError as exc:
        st.error(str(exc), icon=":material/cloud_off:")
        st.stop()
    return film, f"pacs:{sop}", sop, ds


def send_results_ui(run, source_ds, pixels, res: dict[str, Any], lung: dict[str, Any], cfg) -> None:
    """A "Send to PACS" button: the film's lung SEG, heatmap SEG, overlay SC and SR by STOW-RS."""
    if not st.button("Send to PACS", key="pacs_send", icon=":material/cloud_upload:",
                     help="Stores the lung mask and heatmap (DICOM SEG), the overlay (Secondary "
                          "Capture) and a Structured Report in this film's study."):
        return
    from cxrlib.dicom.pipeline import results_of  # noqa: PLC0415
    from cxrlib.explain.batch import FilmExplanation  # noqa: PLC0415
    from cxrlib.lungs import LungSegmentation  # noqa: PLC0415

    classes = list(run.classes)
    seg = LungSegmentation(lung["mask"], lung["quality"], lung["flagged"], lung["source"])
    row = {f"p_{c}": float(p) for c, p in zip(classes, res["probs"])}
    row.update(method=cfg.method, layer=res["layer"], flat=res["flat"],
               target=classes[int(res["probs"].argmax()) if cfg.target is None else cfg.target],
               in_lung_share=lung["share"],
               lung_mask=lung["source"] + (" (flagged: poor mask)" if lung["flagged"] else ""))
    item = FilmExplanation(row, res["heatmap"], res["box"], seg,
                           None if res["flat"] else overlay_of(cfg, res))
    try:
        objects = results_of(run, source_ds, pixels, item)
        stored = client().store(objects.datasets())
    except web.PacsError as exc:
        st.error(str(exc), icon=":material/cloud_off:")
        return
    st.success(f"Stored {stored} DICOM objects in the study on the PACS "
               f"({', '.join(kind.replace('_', ' ') for kind, _ in objects.items())}).",
               icon=":material/cloud_done:")
