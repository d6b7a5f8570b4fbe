"""Metrics by subgroup: which films a model fails on, each with a CI honest at small n.

A model that scores 0.94 overall can call most adult viral films COVID-19 and every film from
one hospital abnormal: per-class figures average such failures away. Here the predictions are
cut by any manifest column (``source``, ``view``, ``notes``, ``sex``, any column a user's
``manifest.csv`` brings) or derived acquisition attribute (:data:`DERIVED`: binned width,
height and megapixels, format, JPEG quality, the small re-encoded copies), and every subgroup
gets its films, patients, accuracy, per-class recall and the counts of what its films were
called (its confusion row), each rate with a patient-level bootstrap 95 % CI from
:func:`cxrlib.evaluation.bootstrap.bootstrap_ci` and the point values from
:func:`cxrlib.evaluation.metrics.point_metrics` (the one accuracy path).

A subgroup's accuracy CI is the wider of its patient bootstrap and the exact (Clopper-Pearson)
interval on its patients, :func:`cxrlib.evaluation.intervals.patient_interval`: a bootstrap of
one patient, or of a subgroup whose films are all right, has no spread and said [1, 1]
(issue 26); the exact interval does not collapse there. Subgroups with
fewer than ``min_patients`` patients are marked ``small``.

Worst first. A subgroup is *flagged* when its whole accuracy CI lies below the overall accuracy
(and it holds at least ``min_patients`` patients: the bootstrap of a handful of patients bounds
nothing).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from cxrlib.evaluation.bootstrap import bootstrap_ci
from cxrlib.evaluation.core import decide, json_number, json_records, label_indices
from cxrlib.evaluation.intervals import MIN_PATIENTS, patient_interval
from cxrlib.evaluation.metrics import point_metrics

DERIVED = ("megapixels", "aspect", "jpeg_quality", "small_copy")
"""Attributes computed from a film's size, file and format rather than read from a column."""
DEFAULT_BY = ("source", "view", "notes", "sex", "age", "width", "height", "megapixels", "format",
              "jpeg_quality", "small_copy")
"""What :func:`default_columns` offers when present: the usual suspects of a source shortcut."""
BIN_EDGES = {"width": (256, 384, 512, 1024, 2048), "height": (256, 384, 512, 1024, 2048),
             "megapixels": (0.1, 0.25, 0.5, 1.0, 4.0), "aspect": (0.9, 1.1, 1.3),
             "jpeg_quality": (70, 85, 95), "age": (2, 6, 12, 18, 40, 65)}
"""Fixed bin edges of the usual numeric attributes, so a test split and an external folder are
cut alike; other numeric columns with many values are cut at their quintiles."""
SMALL_COPY_SIDE = 256
"""A film whose longer side is at most this many pixels is a small copy: cxr3's Kermany mirror
holds 224 x 224 re-encoded copies, no original chest film is that small."""
NOT_ATTRIBUTES = ("path", "rel_path", "patient_id", "group_id", "dup_cluster", "group", "digest",
                  "pred", "error", "mask_path", "file_bytes", "label", "source_path", "source_commit")
MISSING = "(missing)"


@dataclass
class SubgroupAnalysis:
    """Result of :func:`subgroup_analysis`.

    Attributes:
        table: one row per subgroup, worst accuracy first (see :func:`subgroup_analysis`).
        overall: :func:`point_metrics` of all films, plus ``ci_low`` / ``ci_high`` of accuracy.
        classes: the task's classes.
        confusion: ``{(column, value): counts}``, rows true class, columns predicted class.
        skipped: ``{column: reason}`` for requested columns that could not be used.
    """

    table: pd.DataFrame
    overall: dict
    classes: tuple[str, ...]
    confusion: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)

    def worst(self, k: int = 3) -> list[dict]:
        """The ``k`` worst subgroups: ``column``, ``value``, ``n``, ``accuracy``, ``flagged``."""
        return [{"column": str(r.column), "value": str(r.value), "n": int(r.n),
                 "accuracy": json_number(r.accuracy), "ci_low": json_number(r.ci_low),
                 "ci_high": json_number(r.ci_high), "flagged": bool(r.flagged)}
                for r in self.table.head(k).itertuples()]

    def to_dict(self) -> dict:
        """JSON values: ``overall``, ``subgroups`` (records) and ``skipped``."""
        records = json_records(self.table)
        for rec in records:
            rec["confusion"] = self.confusion.get((rec["column"], rec["value"]))
        return {"overall": self.overall, "subgroups": records, "skipped": self.skipped}


def attach_manifest(predictions: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` with every manifest column it lacks, matched by ``rel_path``."""
    extra = [c for c in manifest.columns if c not in predictions.columns and c != "rel_path"]
    if not extra or "rel_path" not in predictions or "rel_path" not in manifest:
        return predictions
    lookup = manifest.drop_duplicates("rel_path").set_index("rel_path")[extra]
    joined = lookup.reindex(predictions["rel_path"].astype(str)).reset_index(drop=True)
    return pd.concat([predictions.reset_index(drop=True), joined], axis=1)


def available_columns(frame: pd.DataFrame) -> list[str]:
    """Columns (and derived attributes) of ``frame`` that subgroups can be cut by."""
    cols = [c for c in frame.columns if c not in NOT_ATTRIBUTES and not str(c).startswith("p_")]
    derived = [d for d in DERIVED if d not in cols and _derivable(frame, d)]
    return cols + derived


def default_columns(frame: pd.DataFrame) -> list[str]:
    """:data:`DEFAULT_BY` columns present in ``frame`` with at least two distinct values."""
    usable = set(available_columns(frame))
    return [c for c in DEFAULT_BY if c in usable and attribute(frame, c).nunique() > 1]


def _derivable(frame: pd.DataFrame, name: str) -> bool:
    needs = {"megapixels": ("width", "height"), "aspect": ("width", "height"),
             "small_copy": ("width", "height"), "jpeg_quality": ("path",)}[name]
    return all(c in frame.columns for c in needs)


def attribute(frame: pd.DataFrame, column: str) -> pd.Series:
    """The subgroup label of every row for ``column``: text values as they are (empty ones
    :data:`MISSING`), numbers with many values in bins, derived attributes computed.

    Raises:
        KeyError: ``column`` is neither a column of ``frame`` nor a derivable attribute.
    """
    if column in frame.columns and column not in DERIVED:
        values = frame[column]
    elif column in DERIVED and _derivable(frame, column):
        values = _derived(frame, column)
    else:
        raise KeyError(f"no column {column!r}; choose from {', '.join(available_columns(frame))}")
    if column == "small_copy":
        named = values.map({True: f"small copy (<= {SMALL_COPY_SIDE} px)", False: "larger"})
        return named.where(named.notna(), MISSING).astype(str)
    numeric = pd.to_numeric(values, errors="coerce")
    if column == "jpeg_quality":  # films of other formats have none
        return _binned(numeric, BIN_EDGES[column]).where(numeric.notna(), "not JPEG")
    text = values.astype("string").str.strip()
    present = text.notna() & (text != "")
    if present.any() and numeric[present].notna().mean() >= 0.95 and (
            column in BIN_EDGES or numeric.nunique() > 8):
        return _binned(numeric, BIN_EDGES.get(column))
    return text.where(present, MISSING).astype(str)


def _derived(frame: pd.DataFrame, name: str) -> pd.Series:
    w = pd.to_numeric(frame["width"], errors="coerce") if "width" in frame else None
    h = pd.to_numeric(frame["height"], errors="coerce") if "height" in frame else None
    if name == "megapixels":
        return w * h / 1e6
    if name == "aspect":
        return w / h.replace(0, np.nan)
    if name == "small_copy":
        return np.maximum(w, h) <= SMALL_COPY_SIDE
    from cxrlib.data.imageio import jpeg_quality  # noqa: PLC0415

    quality = [jpeg_quality(p) for p in frame["path"].astype(str)]  # nan for other formats
    return pd.Series(quality, index=frame.index, dtype=float)


def _binned(numeric: pd.Series, edges) -> pd.Series:
    """Bins labelled ``"<a"``, ``"a-b"``, ``">=b"``; missing values :data:`MISSING`."""
    if edges is None:
        qs = np.unique(np.quantile(numeric.dropna(), [0.2, 0.4, 0.6, 0.8]))
        edges = tuple(float(f"{q:.3g}") for q in qs)
    edges = tuple(edges)
    fmt = (lambda v: f"{v:g}")  # noqa: E731
    labels = [f"<{fmt(edges[0])}"] + [f"{fmt(a)}-{fmt(b)}" for a, b in zip(edges, edges[1:])] + \
             [f">={fmt(edges[-1])}"]
    idx = np.searchsorted(np.asarray(edges, float), numeric.to_numpy(float), side="right")
    out = pd.Series(np.asarray(labels, dtype=object)[np.minimum(idx, len(labels) - 1)], index=numeric.index)
    return out.where(numeric.notna(), MISSING).astype(str)


def subgroup_analysis(frame: pd.DataFrame, classes: Sequence[str], by: Sequence[str], *,
                      n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                      min_patients: int = MIN_PATIENTS, max_values: int = 40,
                      threshold: float | None = None) -> SubgroupAnalysis:
    """Metrics of every subgroup of ``frame`` for each column of ``by``.

    Args:
        frame: predictions (``label``, ``p_<class>`` for every class, optional ``patient_id``)
            with the attribute columns (see :func:`attach_manifest`); rows with an ``error``
            (unreadable films) are left out.
        classes: the task's classes, in model output order.
        by: columns or :data:`DERIVED` attributes; one that cannot be used is listed in
            ``skipped`` with the reason, never an error.
        n_boot, seed, alpha: the bootstrap (the same seed for every subgroup).
        min_patients: subgroups with fewer patients are reported but never flagged.
        max_values: a column with more values keeps its largest ones; the rest are one
            subgroup ``"(other)"``.
        threshold: binary task decision threshold (as for :func:`cxrlib.evaluation.evaluate`).

    Returns:
        A :class:`SubgroupAnalysis` whose ``table`` has ``column``, ``value``, ``n``,
        ``patients``, ``accuracy``, ``ci_low``, ``ci_high``, ``balanced_accuracy``, per class
        ``recall_<class>`` / ``recall_low_<class>`` / ``recall_high_<class>`` (recall of the
        subgroup's films of that class, NaN when it has none), ``support_<class>`` and
        ``pred_<class>`` (how many of its films were called that class), ``small`` (fewer than
        ``min_patients`` patients) and ``flagged``. ``ci_low`` / ``ci_high``: the wider of the
        patient bootstrap and Clopper-Pearson on the patients; the recall CIs: the bootstrap.
    """
    if "error" in frame:
        frame = frame[frame["error"].fillna("").astype(str) == ""]
    frame = frame.reset_index(drop=True)
    classes = tuple(classes)
    probs = frame[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    y = label_indices(frame["label"].astype(str).to_numpy(dtype=object), classes)
    patients = frame["patient_id"].to_numpy(dtype=object) if "patient_id" in frame else None
    pred = decide(probs, threshold)
    overall = point_metrics(y, pred, classes)
    ci = bootstrap_ci(y, probs, classes, patients, n_boot=n_boot, seed=seed, alpha=alpha,
                      threshold=threshold)["metrics"]["accuracy"]
    overall.update(ci_low=ci["low"], ci_high=ci["high"])
    rows, confusion, skipped = [], {}, {}
    for column in dict.fromkeys(by):
        try:
            groups = _capped(attribute(frame, column), max_values)
        except KeyError as exc:
            skipped[column] = str(exc.args[0])
            continue
        for value, idx in groups.groupby(groups, sort=True).groups.items():
            idx = np.asarray(idx)
            row, counts = _subgroup_row(y[idx], probs[idx], pred[idx], classes,
                                        None if patients is None else patients[idx],
                                        n_boot=n_boot, seed=seed, alpha=alpha, threshold=threshold)
            row = {"column": column, "value": str(value), **row}
            row["small"] = bool(row["patients"] < min_patients)
            row["flagged"] = bool(row["patients"] >= min_patients and row["ci_high"] is not None
                                  and overall["accuracy"] is not None
                                  and row["ci_high"] < overall["accuracy"])
            rows.append(row)
            confusion[column, str(value)] = counts
    table = pd.DataFrame(rows, columns=_table_columns(classes))
    numeric = [c for c in table.columns if c not in ("column", "value", "small", "flagged")]
    table[numeric] = table[numeric].apply(pd.to_numeric)  # an undefined rate is NaN, not None
    table = table.sort_values(["accuracy", "n", "column", "value"], ascending=[True, False, True, True],
                              kind="stable").reset_index(drop=True)
    return SubgroupAnalysis(table, overall, classes, confusion, skipped)


def _capped(groups: pd.Series, max_values: int) -> pd.Series:
    counts = groups.value_counts()
    if len(counts) <= max_values:
        return groups
    keep = set(counts.index[:max_values - 1])
    return groups.where(groups.isin(keep), "(other)")


def _table_columns(classes) -> list[str]:
    per_class = [f"{k}_{c}" for k in ("recall", "recall_low", "recall_high", "support", "pred")
                 for c in classes]
    return ["column", "value", "n", "patients", "accuracy", "ci_low", "ci_high",
            "balanced_accuracy", *per_class, "small", "flagged"]


def _subgroup_row(y, probs, pred, classes, patients, **boot) -> tuple[dict, list]:
    point = point_metrics(y, pred, classes)
    ci = bootstrap_ci(y, probs, classes, patients, **boot)
    m = ci["metrics"]
    low, high = patient_interval(int(round(point["accuracy"] * point["n"])), point["n"],
                                 ci["n_units"], boot.get("alpha", 0.05))
    row = {"n": point["n"], "patients": ci["n_units"], "accuracy": point["accuracy"],
           "ci_low": _lower(low, m["accuracy"]["low"]),
           "ci_high": _upper(high, m["accuracy"]["high"]),
           "balanced_accuracy": point["balanced_accuracy"]}
    for c in classes:
        row[f"recall_{c}"] = point["recall"][c]
        row[f"recall_low_{c}"] = m[f"recall/{c}"]["low"] if point["support"][c] else None
        row[f"recall_high_{c}"] = m[f"recall/{c}"]["high"] if point["support"][c] else None
        row[f"support_{c}"] = point["support"][c]
        row[f"pred_{c}"] = point["predicted"][c]
    return row, point["confusion"]


def _lower(a, b):
    return min(v for v in (a, b) if v is not None) if (a, b) != (None, None) else None


def _upper(a, b):
    return max(v for v in (a, b) if v is not None) if (a, b) != (None, None) else None


def subgroups_csv(analysis: SubgroupAnalysis) -> str:
    """``subgroups.csv``: :attr:`SubgroupAnalysis.table` as CSV (``flagged`` as true/false)."""
    table = analysis.table.copy()
    table["flagged"] = table["flagged"].map({True: "true", False: "false"})
    from cxrlib.core.csvio import csv_text  # noqa: PLC0415

    return csv_text(table, for_people=True)
