"""Evaluation services: metrics, curves and bootstrap intervals of a run, cached per run."""
from __future__ import annotations

from typing import Any

import streamlit as st

from cxrlib import evaluation as ev

from .runs import get_run, predictions, run_stamp


def test_predictions(run):
    """The run's predictions on its test split."""
    return ev.test_rows(predictions(run))


@st.cache_data(max_entries=16, show_spinner="Computing the curves…")
def _curves(stamp: str, run_id: str) -> dict[str, Any]:
    """ROC, PR and calibration: they do not depend on the decision threshold."""
    run = get_run(run_id)
    classes = list(run.classes)
    y, probs, _ = ev.from_predictions(test_predictions(run), classes)
    return {"roc": ev.roc_curves(y, probs, classes), "pr": ev.pr_curves(y, probs, classes),
            "calibration": ev.calibration(y, probs, classes=classes)}


@st.cache_data(max_entries=64, show_spinner="Evaluating…")
def _point(stamp: str, run_id: str, threshold: float | None) -> dict[str, Any]:
    run = get_run(run_id)
    classes = list(run.classes)
    y, probs, patients = ev.from_predictions(test_predictions(run), classes)
    return ev.evaluate(y, probs, classes, patients, threshold=threshold)


def evaluation(run, threshold: float | None = None) -> dict[str, Any]:
    """Point metrics (``eval``, at ``threshold``), ROC, PR and calibration of a run's test split.

    Cached per run; moving the threshold recomputes the point metrics only, never the curves.
    """
    return {"eval": _point(run_stamp(run), run.id, threshold), **_curves(run_stamp(run), run.id)}


def predictive_values(run, threshold: float | None, target: str, prevalence: float) -> dict[str, Any]:
    """PPV and NPV of ``target`` against the rest at a prevalence the user sets."""
    return ev.predictive_values(evaluation(run, threshold)["eval"], target, prevalence)


def sample_records(run, threshold: float | None = None):
    """One row per test film for the sample grid, most confident errors first."""
    return ev.sample_records(test_predictions(run), list(run.classes), threshold=threshold)


@st.cache_data(max_entries=16, show_spinner="Bootstrapping confidence intervals…")
def _bootstrap(stamp: str, run_id: str, n_boot: int, threshold: float | None) -> dict[str, Any]:
    run = get_run(run_id)
    y, probs, patients = ev.from_predictions(test_predictions(run), list(run.classes))
    return ev.bootstrap_ci(y, probs, list(run.classes), patients, n_boot=n_boot, seed=0,
                                threshold=threshold)


def bootstrap(run, n_boot: int = 1000, threshold: float | None = None) -> dict[str, Any]:
    """95 % bootstrap CIs (patients resampled when ids are known), cached per run."""
    return _bootstrap(run_stamp(run), run.id, n_boot, threshold)


@st.cache_resource(max_entries=2, show_spinner=False)
def _model_file(stamp: str, path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def model_file(run) -> bytes:
    """The bytes of a run's ``best.keras`` (for a download button; cached per run state)."""
    return _model_file(run_stamp(run), str(run.model_path))


def report_table(ev: dict[str, Any]):
    """The classification report with sensitivity, specificity and AUC per class."""
    import pandas as pd

    rows = []
    for name, rep in ev["report"].items():
        extra = ev["per_class"].get(name, rep)  # the average rows carry their own
        rows.append({"class": name, **rep, "specificity": extra.get("specificity"),
                     "auc": extra.get("auc")})
    table = pd.DataFrame(rows)
    numeric = [c for c in table.columns if c != "class"]
    table[numeric] = table[numeric].apply(pd.to_numeric)  # undefined -> NaN, shown empty
    return table


def ci_table(ci: dict[str, Any]):
    """Bootstrap intervals as a table: metric, estimate, low, high."""
    import pandas as pd

    return pd.DataFrame([{"metric": k, "estimate": v["estimate"], "low": v["low"],
                          "high": v["high"]} for k, v in ci["metrics"].items()])
