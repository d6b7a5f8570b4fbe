"""ROC and precision-recall curves, one class against the rest, and their averages.

Same points as scikit-learn's curves, without importing it (that costs seconds at start-up).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from cxrlib.evaluation.core import _check, json_number, _safe_div


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
        per_class[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [json_number(t) for t in thr],
                           "auc": json_number(np.trapezoid(tpr, fpr))}
    fpr, tpr, thr = roc_curve(onehot.ravel(), p.ravel())
    out = {"per_class": per_class, "undefined": undefined,
           "micro": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [json_number(t) for t in thr],
                     "auc": json_number(np.trapezoid(tpr, fpr))}}
    if per_class and not undefined:
        grid = np.unique(np.concatenate([c["fpr"] for c in per_class.values()]))
        mean_tpr = np.mean([np.interp(grid, c["fpr"], c["tpr"]) for c in per_class.values()], axis=0)
        out["macro"] = {"fpr": grid.tolist(), "tpr": mean_tpr.tolist(), "thresholds": [None] * grid.size,
                        "auc": json_number(np.mean([c["auc"] for c in per_class.values()])),
                        "curve_auc": json_number(np.trapezoid(mean_tpr, grid))}
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
        return {"recall": recall.tolist(), "precision": precision.tolist(), "thresholds": [json_number(t) for t in thr],
                "ap": json_number(-np.sum(np.diff(recall) * precision[:-1])), "prevalence": json_number(truth.mean())}

    per_class, undefined = {}, []
    for i, name in enumerate(classes):
        if onehot[:, i].max() == 0:
            undefined.append(name)
        else:
            per_class[name] = one(onehot[:, i], p[:, i])
    return {"per_class": per_class, "micro": one(onehot.ravel(), p.ravel()), "undefined": undefined}

