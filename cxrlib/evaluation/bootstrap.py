"""Bootstrap confidence intervals for accuracy, per-class recall and AUC (patient-level when possible).

Every resample is a row of image *multiplicities* (how often each image enters it), so one
vectorised code path, :func:`cxrlib.evaluation.metrics._weighted_stats`, computes the point estimate (unit
weights) and all resamples. Inputs are those of :mod:`cxrlib.evaluation.metrics`; ``metrics.bootstrap_ci``
is this module's :func:`bootstrap_ci`.

No TensorFlow here: this module must import fast.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from cxrlib.evaluation.core import _check, _patient_codes, _weighted_stats, decide, json_number

_WEIGHT_CELLS = 4_000_000  # bootstrap weights processed per chunk (rows × images), bounds memory


def resample_weights(n_images: int, patient_ids=None, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap multiplicities (n_boot, n_images): how often each image enters each resample.

    Without patient ids, images are drawn with replacement (multinomial counts summing to
    ``n_images``). With them it is a cluster bootstrap: patients are drawn with replacement and
    every image of a drawn patient comes along, so all images of one patient share one weight.
    Images with a missing id (None, NaN, "") count as patients of their own.
    """
    if patient_ids is None:
        return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_boot)
    codes = _patient_codes(patient_ids, n_images)
    n_patients = int(codes.max()) + 1
    per_patient = rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=n_boot)
    return per_patient[:, codes]


def percentile_interval(samples: np.ndarray, alpha: float) -> tuple[float | None, float | None, int]:
    """The ``1 - alpha`` percentile interval of bootstrap ``samples``, over the finite ones.

    Returns:
        ``(low, high, n_valid)``: JSON numbers (None when no sample is finite) and the count of
        finite samples (a resample without some class has an undefined recall or AUC).
    """
    samples = np.asarray(samples, dtype=np.float64)
    valid = samples[np.isfinite(samples)]
    if not valid.size:
        return None, None, 0
    low, high = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
    return json_number(low), json_number(high), int(valid.size)


def bootstrap_ci(labels, probs, classes: Sequence[str], patient_ids=None, *, n_boot: int = 1000,
                 seed: int = 0, alpha: float = 0.05, threshold: float | None = None) -> dict:
    """Percentile bootstrap confidence intervals for accuracy, per-class recall and AUC.

    Resamples patients (cluster bootstrap) when ``patient_ids`` are given, images otherwise, so
    that a patient's correlated images do not make the interval falsely narrow. Deterministic:
    all randomness comes from ``np.random.default_rng(seed)``. A resample where a class is absent
    (recall, AUC) or is the only one present (AUC) gives no value for that metric; such
    resamples are counted in ``n_skipped`` and left out of its interval.

    Args:
        labels, probs, classes: as for :func:`evaluate`.
        patient_ids: optional, length N.
        n_boot: number of resamples.
        seed: seed of the generator.
        alpha: 1 − confidence level (0.05 gives 95% intervals).
        threshold: decision threshold, as for :func:`evaluate`.

    Returns:
        ``unit`` ("patient" or "image"), ``n_units``, ``n_boot``, ``seed``, ``confidence``, and
        ``metrics``: ``{name: {"estimate", "low", "high", "n_valid", "n_skipped"}}`` for
        ``accuracy``, ``recall/<class>``, ``auc/<class>`` and ``auc/macro``, in that order.
    """
    if n_boot < 1 or not 0.0 < alpha < 1.0:
        raise ValueError("n_boot must be ≥ 1 and alpha in (0, 1)")
    y, p = _check(labels, probs, classes)
    pred = decide(p, threshold)
    rng = np.random.default_rng(seed)
    point = _weighted_stats(y, pred, p, np.ones((1, y.size)))
    chunk = max(1, _WEIGHT_CELLS // y.size)
    parts = []
    for start in range(0, n_boot, chunk):
        weights = resample_weights(y.size, patient_ids, n_boot=min(chunk, n_boot - start), rng=rng)
        parts.append(_weighted_stats(y, pred, p, weights))
    boot = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}

    columns = {"accuracy": (point["accuracy"][0], boot["accuracy"])}
    for i, name in enumerate(classes):
        columns[f"recall/{name}"] = (point["recall"][0, i], boot["recall"][:, i])
    for i, name in enumerate(classes):
        columns[f"auc/{name}"] = (point["auc"][0, i], boot["auc"][:, i])
    columns["auc/macro"] = (point["auc"][0].mean(), boot["auc"].mean(axis=1))  # NaN if any class NaN

    metrics = {}
    for name, (estimate, samples) in columns.items():
        low, high, n_valid = percentile_interval(samples, alpha)
        metrics[name] = {"estimate": json_number(estimate), "low": low, "high": high,
                         "n_valid": n_valid, "n_skipped": int(n_boot - n_valid)}
    n_units = y.size if patient_ids is None else int(_patient_codes(patient_ids, y.size).max() + 1)
    return {"unit": "image" if patient_ids is None else "patient", "n_units": n_units, "n_boot": int(n_boot),
            "seed": int(seed), "confidence": 1 - alpha, "metrics": metrics}
