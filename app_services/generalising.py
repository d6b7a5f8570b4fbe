"""Generalisation services: subgroups of a run's test split, and the audit's LOSO / probe views."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from cxrlib.audit.metadata_baseline import FEATURE_DESCRIPTIONS
from cxrlib.evaluation import subgroups as sg
from cxrlib.viz import subgroups as figs

from .evaluation import test_predictions
from .runs import get_run, run_stamp


def _frame(run, ds) -> pd.DataFrame:
    return sg.attach_manifest(test_predictions(run), ds.manifest)


@st.cache_data(max_entries=32, show_spinner=False)
def _columns(stamp: str, run_id: str, fingerprint: str, _ds) -> tuple[list[str], list[str]]:
    frame = _frame(get_run(run_id), _ds)
    return sg.available_columns(frame), sg.default_columns(frame)


def subgroup_columns(run, ds) -> tuple[list[str], list[str]]:
    """``(available, default)`` columns to cut a run's test split by (cached per run and data)."""
    return _columns(run_stamp(run), run.id, ds.fingerprint, ds)


@st.cache_data(max_entries=32, show_spinner="Bootstrapping every subgroup…")
def _subgroups(stamp: str, run_id: str, fingerprint: str, by: tuple[str, ...], n_boot: int,
               _ds) -> dict[str, Any]:
    run = get_run(run_id)
    analysis = sg.subgroup_analysis(_frame(run, _ds), run.classes, list(by), n_boot=n_boot)
    return {"table": analysis.table, "overall": analysis.overall, "skipped": analysis.skipped,
            "classes": list(run.classes), "csv": sg.subgroups_csv(analysis)}


def subgroups(run, ds, by: list[str], n_boot: int = 1000) -> dict[str, Any]:
    """Subgroup metrics of the run's test split (cached per run, dataset and columns):
    ``table`` (worst first), ``overall``, ``skipped``, ``classes`` and ``csv``."""
    return _subgroups(run_stamp(run), run.id, ds.fingerprint, tuple(by), n_boot, ds)


def subgroup_figures(result: dict[str, Any], order=None, x_start: float | None = None) -> tuple[Any, Any]:
    """The forest plot of subgroup accuracy and the class x subgroup recall heatmap (rows in
    ``order`` and the x axis from ``x_start`` when given: two runs on shared axes)."""
    table = result["table"]
    return (figs.subgroup_forest_figure(table, result["overall"]["accuracy"], order=order,
                                        x_start=x_start),
            figs.subgroup_recall_heatmap(table, result["classes"], order=order))


def analysis_figures(analysis) -> tuple[Any, Any]:
    """The same two figures of a :class:`cxrlib.evaluation.subgroups.SubgroupAnalysis`."""
    return (figs.subgroup_forest_figure(analysis.table, analysis.overall["accuracy"]),
            figs.subgroup_recall_heatmap(analysis.table, analysis.classes))


def subgroup_table(table: pd.DataFrame, classes) -> pd.DataFrame:
    """The columns a reader needs: subgroup, films, patients, accuracy with CI, recalls, flag."""
    cols = ["column", "value", "n", "patients", "small", "accuracy", "ci_low", "ci_high",
            *[f"recall_{c}" for c in classes], *[f"pred_{c}" for c in classes], "flagged"]
    return table[[c for c in cols if c in table.columns]]


def metadata_features() -> pd.DataFrame:
    """What the metadata-only baseline sees, one row per feature."""
    return pd.DataFrame({"feature": list(FEATURE_DESCRIPTIONS), "what it is": list(FEATURE_DESCRIPTIONS.values())})


def loso_figure(generalisation):
    """Leave-one-source-out bars (plain and, when measured, adversarial head)."""
    return figs.loso_figure(generalisation.loso, generalisation.loso_adversarial)


def loso_table(loso, classes) -> pd.DataFrame:
    """Per held-out source: films, classes, held-out and in-distribution accuracy, recalls."""
    cols = ["source", "n", "classes", "single_class", "held_out_accuracy", "balanced_accuracy",
            "majority_rate", "in_distribution_accuracy", "drop", *[f"recall_{c}" for c in classes],
            *[f"predicted_{c}" for c in classes]]
    return loso.table[[c for c in cols if c in loso.table.columns]]
