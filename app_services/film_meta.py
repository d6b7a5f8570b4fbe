"""One film's facts for the Dataset page: its decoded header and manifest row, and a DICOM film's
patient name, id and birth date behind a toggle (off by default; never on a shared server that
sets ``CXR_PATIENT_DATA=never``)."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from cxrlib.data import imageio

from .data import film


PATIENT_DATA_ENV = "CXR_PATIENT_DATA"
"""``off`` (default): the patient-data toggle starts off, as a shared server needs; ``on``: it
starts on (a single-user workstation); ``never``: no toggle, patient data is never shown."""


def patient_data_toggle(key: str) -> bool:
    """Whether the user asked to see a DICOM film's patient name, id and birth date (a toggle)."""
    setting = os.environ.get(PATIENT_DATA_ENV, "off").strip().lower()
    if setting == "never":
        return False
    return st.toggle("Show patient name, id and birth date", value=setting == "on", key=key,
                     help="From the DICOM header, for this film only. Nothing the app stores keeps them. "
                          f"Set {PATIENT_DATA_ENV}=never on a shared server to remove this switch.")


def film_meta_table(path: str, row, *, patient: bool = False):
    """What the app knows about one film (decoded header and manifest row): field / value rows;
    with ``patient``, a DICOM film's patient name, id and birth date too."""
    import pandas as pd

    meta = film(path).meta
    info = {"file": row.get("rel_path", Path(path).name), "class": row.get("label"),
            "patient_id": row.get("patient_id") or "(unknown)", "group_id": row.get("group_id"),
            "source": row.get("source") or "(unknown)", "size": f"{meta.width} × {meta.height} px",
            "channels": meta.channels, "bit depth": meta.bit_depth, "format": meta.format,
            "photometric": meta.photometric}
    info.update({k: v for k, v in (meta.extra or {}).items() if isinstance(v, (str, int, float))})
    if meta.extra.get("decoder_warnings"):
        info["warnings"] = "; ".join(meta.extra["decoder_warnings"])
    if patient and meta.format == "DICOM":
        info.update(imageio.patient_fields(path))
    return pd.DataFrame([{"field": k, "value": str(v)} for k, v in info.items()
                         if v not in (None, "")])
