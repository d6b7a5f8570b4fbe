"""What every evaluation function shares: inputs, decisions, and one weighted statistics core.

Inputs are the same everywhere: ``labels`` (class names or integer indices), ``probs`` (float
``(N, C)``, columns in task class order), ``classes`` (the task's class names) and, where it
matters, ``patient_ids``. For the binary task the positive class is ``classes[0]`` (COVID-19),
and an optional decision ``threshold`` on P(positive) replaces the argmax (:func:`decide`).

The weighted core computes accuracy, recall and AUC for rows of image *multiplicities*: unit
weights give the point estimate, bootstrap resamples are other rows (:mod:`.bootstrap`), so the
two can never disagree in how they count. No TensorFlow here: this module must import fast.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd


def label_indices(labels: Sequence[Any], classes: Sequence[str]) -> np.ndarray:
    """Class indices (int64) for labels given as class names or as indices.

    Raises:
        ValueError: for a name not in ``classes`` or an index out of range.
    """
    arr = np.asarray(labels)
    if arr.dtype.kind in "iu":
        idx = arr.astype(np.int64)
    else:
        lookup = {name: i for i, name in enumerate(classes)}
        unknown = sorted({str(v) for v in arr.tolist() if v not in lookup})
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
        idx = np.array([lookup[v] for v in arr.tolist()], dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(classes)):
        raise ValueError(f"label indices must lie in [0, {len(classes) - 1}]")
    return idx.reshape(-1)


def _check(labels, probs, classes) -> tuple[np.ndarray, np.ndarray]:
    y = label_indices(labels, classes)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape != (y.size, len(classes)):
        raise ValueError(f"probs must have shape ({y.size}, {len(classes)}), got {p.shape}")
    if y.size == 0:
        raise ValueError("no predictions to evaluate")
    return y, p


def _patient_codes(patient_ids, n_images: int) -> np.ndarray:
    """Integer patient code per image; a missing id (None, NaN, "") is a patient of its own."""
    ids = pd.Series(np.asarray(patient_ids, dtype=object)).astype("string")
    if len(ids) != n_images:
        raise ValueError(f"patient_ids has {len(ids)} entries for {n_images} images")
    missing = ids.isna() | (ids.str.strip() == "")
    ids = ids.where(~missing, pd.Series([f"\0image-{i}" for i in range(n_images)], dtype="string"))
    return pd.factorize(ids, sort=True)[0]


def test_rows(predictions: pd.DataFrame) -> pd.DataFrame:
    """The rows of a run's predictions on its test split (``split == "test"``), index reset; a
    frame without a ``split`` column (predictions of a folder) is returned whole."""
    if "split" not in predictions.columns:
        return predictions.reset_index(drop=True)
    return predictions[predictions["split"].astype(str) == "test"].reset_index(drop=True)


def own_test_accuracy(run, sources: Mapping[str, str] | None = None) -> tuple[float, dict[str, float]]:
    """A run's accuracy on its own test split, from its stored predictions (its metrics.json
    figure when it has none; ``nan`` when neither), and with ``sources`` (rel_path -> source,
    named on the whole dataset: a subset may not tell sources apart) the accuracy on the test
    films of each source. The one rule for the audit's "own test split" and leave-one-source-out's
    in-distribution accuracy.

    Returns:
        ``(overall, {source: accuracy})``; the dict is empty without ``sources`` or predictions.
    """
    p = run.predictions()
    if p.empty:
        stored = run.metrics().get("accuracy")
        return (float(stored) if isinstance(stored, (int, float)) else float("nan")), {}
    p = test_rows(p)
    hit = p["label"].astype(str) == p["pred"].astype(str)
    per: dict[str, float] = {}
    if sources is not None and len(p):
        src = p["rel_path"].astype(str).map(sources)
        per = {str(k): float(v) for k, v in hit[src.notna()].groupby(src[src.notna()]).mean().items()}
    return (float(hit.mean()) if len(p) else float("nan")), per


def from_predictions(df: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Labels, probabilities and patient ids from a run's stored predictions.

    Args:
        df: columns ``label`` and ``p_<class>`` for every class; ``patient_id`` optional.
        classes: the task's classes, in model output order.

    Returns:
        ``(labels_idx, probs, patient_ids)``; ``patient_ids`` is ``None`` without that column.

    Raises:
        ValueError: when a probability column is missing or a label is not a task class.
    """
    missing = [f"p_{c}" for c in classes if f"p_{c}" not in df.columns]
    if missing or "label" not in df.columns:
        raise ValueError(f"predictions lack columns {missing + ([] if 'label' in df.columns else ['label'])}")
    probs = df[[f"p_{c}" for c in classes]].to_numpy(dtype=np.float64)
    patient_ids = df["patient_id"].to_numpy(dtype=object) if "patient_id" in df.columns else None
    return label_indices(df["label"].to_numpy(dtype=object), classes), probs, patient_ids


def decide(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Predicted class indices: argmax, or for two classes P(classes[0]) ≥ ``threshold``.

    Raises:
        ValueError: a threshold for more than two classes, or outside [0, 1].
    """
    probs = np.asarray(probs, dtype=np.float64)
    if threshold is None:
        return probs.argmax(axis=1)
    if probs.shape[1] != 2:
        raise ValueError("a decision threshold applies only to the binary task (2 classes)")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    return np.where(probs[:, 0] >= threshold, 0, 1)


def json_number(x: Any) -> float | None:
    """A JSON number: None, ``pd.NA``, NaN and infinities become None (``null``). The one
    NaN-to-None rule of every JSON result."""
    if x is None or x is pd.NA:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def json_records(table: pd.DataFrame) -> list[dict]:
    """A table's rows as JSON-ready dicts: missing values (NaN, None, ``pd.NA``) become None."""
    return table.astype(object).where(table.notna(), None).to_dict("records")


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _weighted_auc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC per weight row (Mann-Whitney: P(s+ > s-) + ½ P(s+ = s-)).

    ``weights`` (B, N) are image multiplicities, so a row gives the AUC of the resample that
    repeats image i ``weights[b, i]`` times. Scores are sorted once; tied scores form groups.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    pos = positive[order]
    pos_w = np.add.reduceat(w * pos, starts, axis=1)
    neg_w = np.add.reduceat(w * ~pos, starts, axis=1)
    neg_below = np.cumsum(neg_w, axis=1) - neg_w
    wins = np.sum(pos_w * (neg_below + 0.5 * neg_w), axis=1)
    return _safe_div(wins, pos_w.sum(axis=1) * neg_w.sum(axis=1))


def _weighted_stats(y: np.ndarray, pred: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy (B,), recall (B, C) and AUC (B, C) for each row of image weights (B, N)."""
    n_classes = probs.shape[1]
    weights = weights.astype(np.float64, copy=False)
    correct = (y == pred).astype(np.float64)
    onehot = np.eye(n_classes, dtype=np.float64)[y]  # (N, C)
    support = weights @ onehot
    stats = {
        "accuracy": _safe_div(weights @ correct, weights.sum(axis=1)),
        "recall": _safe_div(weights @ (onehot * correct[:, None]), support),
        "auc": np.stack([_weighted_auc(y == c, probs[:, c], weights) for c in range(n_classes)], axis=1),
    }
    return stats

