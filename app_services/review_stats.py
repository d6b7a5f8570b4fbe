"""Review statistics services: kappa tables, agreement with the model and heatmaps off target,
cached on the run's reviews, and their display tables."""
from __future__ import annotations

from typing import Any

import streamlit as st

from cxrlib import reviews as rv


@st.cache_data(max_entries=16, show_spinner="Computing agreement…")
def _agreement(run_id: str, n_reviews: int, last_id: str, classes: tuple, _frame):
    return {"kappa": rv.kappa_tables(_frame, n_boot=1000, seed=0),
            "model": rv.model_agreement(_frame),
            "off_target": rv.off_target_share(_frame, classes)}


def agreement(run, frame) -> dict[str, Any]:
    """Kappa tables, agreement with the model and heatmaps off target per class (cached on the
    run and its reviews' count and last id)."""
    last = str(frame["review_id"].iloc[-1]) if len(frame) else ""
    return _agreement(run.id, len(frame), last, tuple(run.classes), frame)


def _pct(value) -> str:
    return "—" if value is None or value != value else f"{value:.0%}"


def _with_ci(value, low, high, spec: str) -> str:
    if value is None or value != value:
        return "—"
    if low is None or low != low:
        return format(value, spec)
    return f"{format(value, spec)} ({format(low, spec)} to {format(high, spec)})"


def model_agreement_display(table):
    """:func:`cxrlib.reviews.model_agreement` in words and percentages."""
    import pandas as pd  # noqa: PLC0415

    return pd.DataFrame({
        "reviewer": table["reviewer"], "reviews": table["reviews"],
        "agrees with the prediction (95 % CI)": [
            _with_ci(v, lo, hi, ".0%") for v, lo, hi in
            zip(table["agrees_with_prediction"], table["low"], table["high"])],
        "agrees with the label": table["agrees_with_label"].map(_pct),
        "films the model got wrong": table["model_errors"],
        "sides with the model on them": table["sides_with_model_on_errors"].map(_pct)})


def off_target_display(table):
    """:func:`cxrlib.reviews.off_target_share` with the share and its CI in one column."""
    out = table.drop(columns=["off_target", "low", "high"]).copy()
    out["off target (95 % CI)"] = [
        _with_ci(v, lo, hi, ".0%")
        for v, lo, hi in zip(table["off_target"], table["low"], table["high"])]
    return out


QUESTION_WORDS = {"agrees_with_label": "agrees with the label",
                  "agrees_with_prediction": "agrees with the prediction",
                  "heatmap_location": "where the heatmap falls"}


def kappa_display(table):
    """A kappa table with its questions in words and each kappa beside its CI."""
    out = table.drop(columns=["kappa", "low", "high"]).copy()
    out["question"] = out["question"].map(QUESTION_WORDS)
    out["observed_agreement"] = out["observed_agreement"].map(_pct)
    out["kappa (95 % CI)"] = [_with_ci(v, lo, hi, ".2f") for v, lo, hi in
                              zip(table["kappa"], table["low"], table["high"])]
    return out.rename(columns={"observed_agreement": "observed agreement",
                               "reviewer_a": "reviewer A", "reviewer_b": "reviewer B"})


def reviews_csv(frame) -> str:
    """A reviews table as the CSV the CLI's ``reviews export`` writes."""
    return download_csv(frame)


def download_csv(frame) -> str:
    """A table as a CSV download for people (quoted, formula-like cells neutralised:
    :func:`cxrlib.core.csvio.csv_text`)."""
    from cxrlib.core.csvio import csv_text  # noqa: PLC0415

    return csv_text(frame, for_people=True)
