"""Evaluation of a run's predictions: accuracy, confusion, ROC/PR, PPV/NPV, bootstrap CIs, calibration.

Every function takes the same inputs: ``labels`` (class names or integer indices), ``probs``
(float ``(N, C)``, columns in task class order), ``classes`` (the task's class names) and, where it
matters, ``patient_ids``. A run's stored predictions become these through :func:`from_predictions`.

For the binary task the positive class is ``classes[0]`` (COVID-19), and an optional decision
``threshold`` on P(positive) replaces the argmax. Results meant for storage (:func:`evaluate`,
:func:`bootstrap_ci`, :func:`calibration`) are plain JSON values: undefined numbers are ``None``.

Bootstrap confidence intervals live in :mod:`cxrlib.evaluation.bootstrap`; ``metrics.bootstrap_ci`` and
``metrics.resample_weights`` still work (re-exported lazily, see :func:`__getattr__`).

No TensorFlow here: this module must import fast.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


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


def _num(x: Any) -> float | None:
    """A JSON number: NaN and infinities become None."""
    x = float(x)
    return x if math.isfinite(x) else None


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


# --------------------------------------------------------------------------------------------
# Weighted core: one code path for the point estimate (unit weights) and every bootstrap resample
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Point metrics
# --------------------------------------------------------------------------------------------


def confusion_counts(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix (rows: true class, columns: predicted class) of int64 counts."""
    return np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def evaluate(labels, probs, classes: Sequence[str], patient_ids=None, *, threshold: float | None = None) -> dict:
    """All point metrics of a set of predictions, as JSON values.

    Args:
        labels: true classes (names or indices), length N.
        probs: (N, C) probabilities in ``classes`` order.
        classes: the task's class names.
        patient_ids: optional, length N; only counted here (``n_patients``).
        threshold: binary task only: predict ``classes[0]`` when its probability ≥ threshold.
            ``None`` predicts the argmax.

    Returns:
        ``accuracy``; ``confusion`` (``counts``, ``normalised`` by true-class row);
        ``report`` (per class and ``macro avg`` / ``weighted avg``: precision, recall, f1, support;
        an undefined precision or F1 counts as 0, as scikit-learn does); ``per_class``
        (sensitivity, specificity, prevalence, auc); ``auc`` (``per_class``, ``micro``, ``macro``;
        ``None`` where a class is absent or the only one present); plus ``n``, ``classes``,
        ``threshold``, ``positive_class`` (binary) and ``n_patients``.
    """
    y, p = _check(labels, probs, classes)
    n_classes = len(classes)
    pred = decide(p, threshold)
    counts = confusion_counts(y, pred, n_classes)
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    tp = np.diag(counts).astype(np.float64)
    fp, fn = predicted - tp, support - tp
    tn = y.size - tp - fp - fn
    precision = np.nan_to_num(_safe_div(tp, predicted))
    recall = _safe_div(tp, support)
    f1 = np.nan_to_num(_safe_div(2 * tp, 2 * tp + fp + fn))
    specificity = _safe_div(tn, tn + fp)
    stats = _weighted_stats(y, pred, p, np.ones((1, y.size)))
    auc = stats["auc"][0]
    onehot = np.eye(n_classes, dtype=bool)[y]
    micro = _weighted_auc(onehot.ravel(), p.ravel(), np.ones((1, onehot.size)))[0]
    report: dict[str, dict] = {}
    for i, name in enumerate(classes):
        report[name] = {"precision": _num(precision[i]), "recall": _num(np.nan_to_num(recall[i])),
                        "f1": _num(f1[i]), "support": int(support[i])}
    share = support / support.sum()
    for avg, w in (("macro avg", np.full(n_classes, 1.0 / n_classes)), ("weighted avg", share)):
        report[avg] = {"precision": _num(w @ precision), "recall": _num(w @ np.nan_to_num(recall)),
                       "f1": _num(w @ f1), "support": int(support.sum())}
    return {
        "n": int(y.size),
        "n_patients": None if patient_ids is None else int(_patient_codes(patient_ids, y.size).max() + 1),
        "classes": list(classes),
        "threshold": None if threshold is None else float(threshold),
        "positive_class": classes[0] if n_classes == 2 else None,
        "accuracy": _num(np.mean(pred == y)),
        "confusion": {
            "counts": counts.tolist(),
            "normalised": np.nan_to_num(_safe_div(counts, support[:, None])).tolist(),
        },
        "report": report,
        "per_class": {
            name: {"sensitivity": _num(recall[i]), "specificity": _num(specificity[i]),
                   "prevalence": _num(share[i]), "auc": _num(auc[i])}
            for i, name in enumerate(classes)
        },
        "auc": {
            "per_class": {name: _num(auc[i]) for i, name in enumerate(classes)},
            "micro": _num(micro),
            "macro": _num(np.mean(auc)),  # None when any class AUC is undefined
        },
    }


def ppv_npv(sensitivity, specificity, prevalence):
    """Positive and negative predictive values by Bayes' rule.

    PPV = sens·prev / (sens·prev + (1 − spec)(1 − prev)),
    NPV = spec·(1 − prev) / (spec·(1 − prev) + (1 − sens)·prev).

    Args:
        sensitivity, specificity, prevalence: in [0, 1]; scalars or broadcastable arrays.

    Returns:
        ``(ppv, npv)``: floats for scalar inputs, arrays otherwise. A 0/0 case (e.g. PPV at
        prevalence 0 with specificity 1: no positive calls and no positives) is NaN.

    Raises:
        ValueError: for a value outside [0, 1].
    """
    sens, spec, prev = (np.asarray(v, dtype=np.float64) for v in (sensitivity, specificity, prevalence))
    for name, v in (("sensitivity", sens), ("specificity", spec), ("prevalence", prev)):
        if np.any(~np.isfinite(v)) or np.any((v < 0) | (v > 1)):
            raise ValueError(f"{name} must lie in [0, 1]")
    true_pos, false_pos = sens * prev, (1 - spec) * (1 - prev)
    true_neg, false_neg = spec * (1 - prev), (1 - sens) * prev
    ppv = _safe_div(true_pos, true_pos + false_pos)
    npv = _safe_div(true_neg, true_neg + false_neg)
    if ppv.ndim == 0:
        return float(ppv), float(npv)
    return ppv, npv


def predictive_values(evaluation: dict, class_name: str, prevalence: float | None = None) -> dict:
    """PPV and NPV of one class against the rest, at a prevalence the user sets.

    Args:
        evaluation: a result of :func:`evaluate`.
        class_name: the class treated as "positive" (one-vs-rest).
        prevalence: the prevalence of that class in the population of interest; ``None`` uses
            its share of the evaluated images.

    Returns:
        ``class``, ``sensitivity``, ``specificity``, ``prevalence``, ``ppv``, ``npv``
        (``None`` where undefined).

    Raises:
        KeyError: for a class not in the evaluation.
    """
    row = evaluation["per_class"][class_name]
    prev = row["prevalence"] if prevalence is None else float(prevalence)
    out = {"class": class_name, "sensitivity": row["sensitivity"], "specificity": row["specificity"],
           "prevalence": prev, "ppv": None, "npv": None}
    if row["sensitivity"] is not None and row["specificity"] is not None:
        ppv, npv = ppv_npv(row["sensitivity"], row["specificity"], prev)
        out["ppv"], out["npv"] = _num(ppv), _num(npv)
    return out


# --------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------


def _ranked_counts(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when calling positive every score ≥ each distinct threshold.

    Thresholds are the distinct scores, highest first (as in scikit-learn's ``_binary_clf_curve``).
    """
    order = np.argsort(-scores, kind="stable")
    scores, truth = scores[order], truth[order].astype(np.float64)
    last_of_value = np.r_[np.flatnonzero(np.diff(scores)), truth.size - 1]
    tps = np.cumsum(truth)[last_of_value]
    fps = 1 + last_of_value - tps
    return fps, tps, scores[last_of_value]


def roc_curve(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr, thresholds)`` from (0, 0), collinear points dropped.

    The first threshold is +inf (nothing called positive). Same points as scikit-learn's
    ``roc_curve(drop_intermediate=True)``, without importing it (that costs seconds at start-up).
    """
    fps, tps, thresholds = _ranked_counts(np.asarray(truth, dtype=bool), np.asarray(scores, dtype=np.float64))
    if fps.size > 2:  # keep the corners only
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps, thresholds = np.r_[0, fps], np.r_[0, tps], np.r_[np.inf, thresholds]
    return _safe_div(fps, fps[-1]), _safe_div(tps, tps[-1]), thresholds


def precision_recall_curve(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)``, recall decreasing, ending at the point (recall 0, precision 1)."""
    fps, tps, thresholds = _ranked_counts(np.asarray(truth, dtype=bool), np.asarray(scores, dtype=np.float64))
    precision = tps / (tps + fps)
    recall = _safe_div(tps, tps[-1])
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def roc_curves(labels, probs, classes: Sequence[str]) -> dict:
    """One-vs-rest ROC curve per class, plus micro- and macro-average curves.

    The macro curve interpolates every class's TPR on the union of their FPRs and averages them
    (as scikit-learn's ROC example does); its ``auc`` is the mean of the per-class AUCs (the
    figure reported by :func:`evaluate`), ``curve_auc`` the area under the averaged curve.

    Returns:
        ``{"per_class": {class: curve}, "micro": curve, "macro": curve, "undefined": [...]}``
        where a curve is ``{"fpr", "tpr", "thresholds", "auc"}`` (lists); a class absent from
        ``labels`` (or the only one present) has no curve and is listed in ``undefined``.
    """
    y, p = _check(labels, probs, classes)
    onehot = np.eye(len(classes), dtype=int)[y]
    per_class, undefined = {}, []
    for i, name in enumerate(classes):
        if onehot[:, i].min() == onehot[:, i].max():
            undefined.append(name)
            continue
        fpr, tpr, thr = roc_curve(onehot[:, i], p[:, i])
        per_class[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [_num(t) for t in thr],
                           "auc": _num(np.trapezoid(tpr, fpr))}
    fpr, tpr, thr = roc_curve(onehot.ravel(), p.ravel())
    out = {"per_class": per_class, "undefined": undefined,
           "micro": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [_num(t) for t in thr],
                     "auc": _num(np.trapezoid(tpr, fpr))}}
    if per_class and not undefined:
        grid = np.unique(np.concatenate([c["fpr"] for c in per_class.values()]))
        mean_tpr = np.mean([np.interp(grid, c["fpr"], c["tpr"]) for c in per_class.values()], axis=0)
        out["macro"] = {"fpr": grid.tolist(), "tpr": mean_tpr.tolist(), "thresholds": [None] * grid.size,
                        "auc": _num(np.mean([c["auc"] for c in per_class.values()])),
                        "curve_auc": _num(np.trapezoid(mean_tpr, grid))}
    return out


def pr_curves(labels, probs, classes: Sequence[str]) -> dict:
    """One-vs-rest precision-recall curve per class and the micro-average, with average precision.

    Average precision is Σₙ (Rₙ − Rₙ₋₁) Pₙ (no interpolation), as scikit-learn defines it.

    Returns:
        ``{"per_class": {class: curve}, "micro": curve, "undefined": [...]}``, a curve being
        ``{"recall", "precision", "thresholds", "ap", "prevalence"}``; classes absent from
        ``labels`` are listed in ``undefined``.
    """
    y, p = _check(labels, probs, classes)
    onehot = np.eye(len(classes), dtype=int)[y]

    def one(truth: np.ndarray, scores: np.ndarray) -> dict:
        precision, recall, thr = precision_recall_curve(truth, scores)
        return {"recall": recall.tolist(), "precision": precision.tolist(), "thresholds": [_num(t) for t in thr],
                "ap": _num(-np.sum(np.diff(recall) * precision[:-1])), "prevalence": _num(truth.mean())}

    per_class, undefined = {}, []
    for i, name in enumerate(classes):
        if onehot[:, i].max() == 0:
            undefined.append(name)
        else:
            per_class[name] = one(onehot[:, i], p[:, i])
    return {"per_class": per_class, "micro": one(onehot.ravel(), p.ravel()), "undefined": undefined}


# --------------------------------------------------------------------------------------------
# Calibration, training curves, sample records
# --------------------------------------------------------------------------------------------


def calibration(labels, probs, n_bins: int = 10, *, classes: Sequence[str] | None = None) -> dict:
    """Reliability curve and expected calibration error of the predicted class's confidence.

    Confidence is the largest probability; bins are equal-width on [0, 1], bin m holding
    confidences in ((m−1)/M, m/M] (the first also holds 0). ECE = Σₘ (|Bₘ|/N)·|acc(Bₘ) − conf(Bₘ)|;
    MCE is the largest such gap over non-empty bins.

    Args:
        labels: true class indices, or names together with ``classes``.
        probs: (N, C) probabilities.
        n_bins: number of bins M.
        classes: class names, needed only when ``labels`` are names.

    Returns:
        ``bin_edges`` (M+1), per bin ``count``, ``confidence`` (mean) and ``accuracy`` (``None``
        for an empty bin), and ``ece``, ``mce``, ``n``.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {p.shape}")
    if classes is None and np.asarray(labels).dtype.kind not in "iu":
        raise ValueError("labels given as class names need `classes`")
    y = label_indices(labels, classes if classes is not None else range(p.shape[1]))
    if p.shape[0] != y.size or y.size == 0:
        raise ValueError("probs must be (N, C) with one row per label, N > 0")
    if n_bins < 1:
        raise ValueError("n_bins must be ≥ 1")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    mean_conf = _safe_div(np.bincount(bins, weights=confidence, minlength=n_bins), count)
    accuracy = _safe_div(np.bincount(bins, weights=correct, minlength=n_bins), count)
    gaps = np.abs(accuracy - mean_conf)
    filled = count > 0
    return {
        "n": int(y.size),
        "bin_edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        "count": count.tolist(),
        "confidence": [_num(v) for v in mean_conf],
        "accuracy": [_num(v) for v in accuracy],
        "ece": float(np.sum(count[filled] / y.size * gaps[filled])),
        "mce": float(gaps[filled].max()),
    }


TRAINING_METRICS = {"loss": ("loss", "val_loss"), "accuracy": ("accuracy", "val_accuracy")}


def training_curves(history: pd.DataFrame) -> pd.DataFrame:
    """A run's history in tidy form: one row per (epoch, metric, split).

    Args:
        history: columns ``epoch`` and any of ``loss``, ``accuracy``, ``val_loss``,
            ``val_accuracy`` (``lr`` is ignored here).

    Returns:
        Columns ``epoch``, ``metric`` ("loss"/"accuracy"), ``split`` ("train"/"validation"),
        ``value``; rows with a missing value are dropped.
    """
    rows = []
    for metric, (train_col, val_col) in TRAINING_METRICS.items():
        for split, col in (("train", train_col), ("validation", val_col)):
            if col in history.columns:
                rows.append(pd.DataFrame({"epoch": history["epoch"].to_numpy(), "metric": metric,
                                          "split": split, "value": history[col].to_numpy(dtype=float)}))
    if not rows:
        return pd.DataFrame({"epoch": pd.Series(dtype=int), "metric": pd.Series(dtype=str),
                             "split": pd.Series(dtype=str), "value": pd.Series(dtype=float)})
    return pd.concat(rows, ignore_index=True).dropna(subset=["value"]).reset_index(drop=True)


def best_epoch(history: pd.DataFrame) -> int | None:
    """The epoch of the lowest validation loss (the weights a run keeps), or None without one."""
    if "val_loss" not in history.columns or history["val_loss"].isna().all():
        return None
    return int(history.loc[history["val_loss"].idxmin(), "epoch"])


def sample_records(predictions: pd.DataFrame, classes: Sequence[str], *, only_errors: bool = False,
                   threshold: float | None = None) -> pd.DataFrame:
    """One row per image for a sample-prediction grid, most confident errors first.

    The prediction is recomputed from the ``p_<class>`` columns with the same rule as
    :func:`evaluate` (argmax, or ``threshold`` for the binary task), so the grid agrees with the
    metrics shown beside it. Confidence is the probability of the predicted class.

    Args:
        predictions: a run's predictions (``path``, ``label``, ``p_<class>``...; ``rel_path``
            and ``patient_id`` are carried along when present).
        classes: the task's classes.
        only_errors: keep misclassified images only.
        threshold: as for :func:`evaluate`.

    Returns:
        Columns ``path``, [``rel_path``, ``patient_id``,] ``true``, ``predicted``,
        ``confidence``, ``correct`` and the ``p_<class>`` columns; errors first, each part by
        confidence descending (ties by path).
    """
    y, probs, _ = from_predictions(predictions, classes)
    pred = decide(probs, threshold)
    names = np.asarray(classes, dtype=object)
    paths_ = predictions["path"].astype(str).to_numpy() if "path" in predictions.columns else [""] * y.size
    out = pd.DataFrame({"path": paths_})
    for col in ("rel_path", "patient_id"):
        if col in predictions.columns:
            out[col] = predictions[col].to_numpy()
    out["true"] = names[y]
    out["predicted"] = names[pred]
    out["confidence"] = probs[np.arange(y.size), pred]
    out["correct"] = y == pred
    for i, name in enumerate(classes):
        out[f"p_{name}"] = probs[:, i]
    if only_errors:
        out = out[~out["correct"]]
    out = out.sort_values(["correct", "confidence", "path"], ascending=[True, False, True], kind="stable")
    return out.reset_index(drop=True)


_BOOTSTRAP_NAMES = ("bootstrap_ci", "resample_weights")


def __getattr__(name: str) -> Any:
    """``metrics.bootstrap_ci`` / ``metrics.resample_weights``: re-exported from :mod:`cxrlib.evaluation.bootstrap`.

    Lazy (PEP 562) because :mod:`cxrlib.evaluation.bootstrap` builds on this module: an import at the top
    here would be circular.
    """
    if name in _BOOTSTRAP_NAMES:
        from cxrlib.evaluation import bootstrap  # noqa: PLC0415

        return getattr(bootstrap, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
