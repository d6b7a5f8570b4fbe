"""Point metrics of a set of predictions: accuracy, confusion, report, PPV/NPV.

:func:`point_metrics` is the one place accuracy, balanced accuracy, per-class recall and the
majority-class rate are computed from labels and decisions; everything that reports accuracy
(the training engine, the audit, subgroups, leave-one-source-out) calls it or :func:`evaluate`.
Results are plain JSON values: undefined numbers are ``None``. No TensorFlow here.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cxrlib.evaluation.core import (_check, _patient_codes, _safe_div, _weighted_auc,
                                    _weighted_stats, decide, json_number, label_indices)


def confusion_counts(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix (rows: true class, columns: predicted class) of int64 counts."""
    return np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def point_metrics(labels, preds, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy and its companions from true and predicted classes (names or indices).

    Args:
        labels: true classes, length N.
        preds: predicted classes, length N.
        classes: the class names (their order gives the indices).

    Returns:
        ``n``, ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present),
        ``majority_rate`` (the accuracy of always predicting the commonest true class: the
        chance level of an imbalanced set), ``recall`` and ``support`` per class name (recall
        ``None`` for an absent class), ``confusion`` (counts, rows true) and ``predicted``
        (how many films each class was predicted for). Empty input gives ``n = 0`` and Nones.
    """
    y = label_indices(labels, classes)
    p = label_indices(preds, classes)
    if y.size != p.size:
        raise ValueError(f"{y.size} labels but {p.size} predictions")
    k = len(classes)
    counts = confusion_counts(y, p, k) if y.size else np.zeros((k, k), np.int64)
    support = counts.sum(axis=1)
    recall = _safe_div(np.diag(counts), support)
    present = support > 0
    return {
        "n": int(y.size),
        "accuracy": json_number(np.trace(counts) / y.size) if y.size else None,
        "balanced_accuracy": json_number(recall[present].mean()) if present.any() else None,
        "majority_rate": json_number(support.max() / y.size) if y.size else None,
        "recall": {c: json_number(recall[i]) for i, c in enumerate(classes)},
        "support": {c: int(support[i]) for i, c in enumerate(classes)},
        "predicted": {c: int(n) for c, n in zip(classes, counts.sum(axis=0))},
        "confusion": counts.tolist(),
    }


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
        an undefined precision or F1 counts as 0, as scikit-learn does; the two averages also
        specificity and AUC, None when a class's is undefined); ``per_class``
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
        report[name] = {"precision": json_number(precision[i]),
                        "recall": json_number(np.nan_to_num(recall[i])),
                        "f1": json_number(f1[i]), "support": int(support[i])}
    share = support / support.sum()
    for avg, w in (("macro avg", np.full(n_classes, 1.0 / n_classes)), ("weighted avg", share)):
        report[avg] = {"precision": json_number(w @ precision),
                       "recall": json_number(w @ np.nan_to_num(recall)),
                       "f1": json_number(w @ f1), "support": int(support.sum()),
                       # undefined (None) when any class's value is
                       "specificity": json_number(w @ specificity), "auc": json_number(w @ auc)}
    return {
        "n": int(y.size),
        "n_patients": None if patient_ids is None else int(_patient_codes(patient_ids, y.size).max() + 1),
        "classes": list(classes),
        "threshold": None if threshold is None else float(threshold),
        "positive_class": classes[0] if n_classes == 2 else None,
        "accuracy": json_number(np.mean(pred == y)),
        "confusion": {
            "counts": counts.tolist(),
            "normalised": np.nan_to_num(_safe_div(counts, support[:, None])).tolist(),
        },
        "report": report,
        "per_class": {
            name: {"sensitivity": json_number(recall[i]),
                   "specificity": json_number(specificity[i]),
                   "prevalence": json_number(share[i]), "auc": json_number(auc[i])}
            for i, name in enumerate(classes)
        },
        "auc": {
            "per_class": {name: json_number(auc[i]) for i, name in enumerate(classes)},
            "micro": json_number(micro),
            "macro": json_number(np.mean(auc)),  # None when any class AUC is undefined
        },
    }


def predictive_value_interval(sensitivity: tuple, specificity: tuple,
                              prevalence: float) -> dict[str, tuple[float | None, float | None]]:
    """``{"ppv": (low, high), "npv": (low, high)}`` from ``(low, high)`` intervals of
    sensitivity and specificity at a fixed prevalence; ``(None, None)`` where undefined."""
    if None in (*sensitivity, *specificity):
        return {"ppv": (None, None), "npv": (None, None)}
    lows = ppv_npv(sensitivity[0], specificity[0], prevalence)
    highs = ppv_npv(sensitivity[1], specificity[1], prevalence)
    out = {}
    for i, name in enumerate(("ppv", "npv")):
        lo, hi = float(lows[i]), float(highs[i])
        out[name] = (None if np.isnan(lo) else lo, None if np.isnan(hi) else hi)
    return out


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
        (``None`` where undefined), and ``<each>_ci``: 95 % Wilson intervals of sensitivity and
        specificity (films counted as independent) and the PPV / NPV interval they imply at
        this prevalence (:func:`predictive_value_interval`).

    Raises:
        KeyError: for a class not in the evaluation.
    """
    from cxrlib.evaluation.intervals import wilson_interval  # noqa: PLC0415

    row = evaluation["per_class"][class_name]
    prev = row["prevalence"] if prevalence is None else float(prevalence)
    out = {"class": class_name, "sensitivity": row["sensitivity"], "specificity": row["specificity"],
           "prevalence": prev, "ppv": None, "npv": None}
    if row["sensitivity"] is not None and row["specificity"] is not None:
        ppv, npv = ppv_npv(row["sensitivity"], row["specificity"], prev)
        out["ppv"], out["npv"] = json_number(ppv), json_number(npv)
    counts = np.asarray(evaluation["confusion"]["counts"])
    i = list(evaluation["classes"]).index(class_name)
    tp, positives, called = counts[i, i], counts[i].sum(), counts[:, i].sum()
    tn, negatives = counts.sum() - positives - called + tp, counts.sum() - positives
    out["sensitivity_ci"] = wilson_interval(int(tp), int(positives))
    out["specificity_ci"] = wilson_interval(int(tn), int(negatives))
    bounds = predictive_value_interval(out["sensitivity_ci"], out["specificity_ci"], prev)
    out["ppv_ci"], out["npv_ci"] = bounds["ppv"], bounds["npv"]
    return out

