"""Calibration: the reliability curve and the expected calibration error."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from cxrlib.evaluation.core import _safe_div, json_number, label_indices


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
        "confidence": [json_number(v) for v in mean_conf],
        "accuracy": [json_number(v) for v in accuracy],
        "ece": float(np.sum(count[filled] / y.size * gaps[filled])),
        "mce": float(gaps[filled].max()),
    }

