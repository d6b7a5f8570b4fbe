"""Evaluation services: metrics, curves and bootstrap intervals of a run, cached per run."""
from __future__ import annotations

from typing import Any

import streamlit as st

from cxrlib import evaluation as ev

from .runs import get_run, predictions, run_stamp


def test_predictions(run):
    """The run's predictions on its test split."""
    preds = predictions(run)
    return preds[preds["split"] == "test"].reset_index(drop=True) if "split" in preds else preds


@st.cache_data(max_entries=16, show_spinner="Evaluating…")
def _evaluation(stamp: str, run_id: str, threshold: float | None) -> dict[str, Any]:
    run = get_run(run_id)
    classes = list(run.classes)
    y, probs, patients = ev.from_predictions(test_predictions(run), classes)
    return {"eval": ev.evaluate(y, probs, classes, patients, threshold=threshold),
            "roc": ev.roc_curves(y, probs, classes),
            "pr": ev.pr_curves(y, probs, classes),
            "calibration": ev.calibration(y, probs, classes=classes)}


def evaluation(run, threshold: float | None = None) -> dict[str, Any]:
    """Point metrics, ROC, PR and calibration of a run's test split (cached per run)."""
    return _evaluation(run_stamp(run), run.id, threshold)


@st.cache_data(max_entries=16, show_spinner="Bootstrapping confidence intervals…")
def _bootstrap(stamp: str, run_id: str, n_boot: int, threshold: float | None) -> dict[str, Any]:
    run = get_run(run_id)
    y, probs, patients = ev.from_predictions(test_predictions(run), list(run.classes))
    return ev.bootstrap_ci(y, probs, list(run.classes), patients, n_boot=n_boot, seed=0,
                                threshold=threshold)


def bootstrap(run, n_boot: int = 1000, threshold: float | None = None) -> dict[str, Any]:
    """95 % bootstrap CIs (patients resampled when ids are known), cached per run."""
    return _bootstrap(run_stamp(run), run.id, n_boot, threshold)


def report_table(ev: dict[str, Any]):
    """The classification report with sensitivity, specificity and AUC per class."""
    import pandas as pd

    rows = []
    for name, rep in ev["report"].items():
        extra = ev["per_class"].get(name, {})
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
