"""Is one run really better than another on the same test films?

Two runs are compared only on the same films with the same labels: same task, same dataset
(fingerprint) and the same test split; otherwise :class:`NotComparable` says why.

- **McNemar's exact test** (McNemar 1947, *Psychometrika* 12:153-157; exact form: Edwards
  1948) on the paired correct / incorrect table: under "equally accurate", the films only one
  run gets right fall to either run with probability ½, so the two-sided p-value is the
  binomial one of ``only_a_correct`` out of the discordant films. It treats films as
  independent; with several films per patient read it as a guide and trust the CIs below.
- **Paired bootstrap** (Efron & Tibshirani 1993, ch. 16) of the differences run B − run A in
  accuracy, each class's one-vs-rest AUC and the macro AUC: every resample draws patients with
  replacement (:func:`cxrlib.evaluation.resample_weights`) and BOTH runs are scored on that
  same resample, so what the films have in common cancels out and patients' correlated films
  stay together. It stands in for DeLong's test (DeLong et al. 1988, *Biometrics* 44:837-845),
  which assumes independent films.

Scores come from the one weighted statistics core (:mod:`cxrlib.evaluation.core`), as for
:func:`cxrlib.evaluation.bootstrap_ci`. No TensorFlow here.
"""
from __future__ import annotations

from typing import Any, Sequence

import math

import numpy as np
import pandas as pd

from cxrlib.evaluation.bootstrap import _WEIGHT_CELLS, percentile_interval, resample_weights
from cxrlib.evaluation.core import (_check, _patient_codes, _weighted_stats, decide,
                                    from_predictions, json_number)


class NotComparable(ValueError):
    """Two runs that were not tested on the same films.

    Attributes:
        reason: why, in words a user can act on.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def mcnemar_exact(correct_a, correct_b) -> dict[str, Any]:
    """McNemar's exact test on paired correct / incorrect outcomes of two classifiers.

    Args:
        correct_a, correct_b: booleans per film, same films in the same order.

    Returns:
        ``both_correct``, ``only_a_correct``, ``only_b_correct``, ``both_wrong``,
        ``discordant`` and the two-sided exact ``p_value`` (1.0 without discordant films).
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("correct_a and correct_b must be 1-D and of the same length")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    # Binomial(n, ½) is symmetric: the two-sided p doubles the smaller tail (capped at 1).
    # Integer sums keep it exact; scipy.stats would cost this module a second of import time.
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    p = min(1.0, 2 * tail / 2**n) if n else 1.0
    return {"both_correct": int(np.sum(a & b)), "only_a_correct": only_a,
            "only_b_correct": only_b, "both_wrong": int(np.sum(~a & ~b)), "discordant": n,
            "p_value": p}


def paired_bootstrap(labels, probs_a, probs_b, classes: Sequence[str], patient_ids=None, *,
                     n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                     threshold: float | None = None) -> dict[str, Any]:
    """Percentile bootstrap CIs of run B − run A, both runs scored on the same resamples.

    Resamples are drawn as in :func:`cxrlib.evaluation.bootstrap_ci` (same generator, same
    chunks), so with one chunk the weights are exactly
    ``resample_weights(n, patient_ids, n_boot=n_boot, rng=np.random.default_rng(seed))``.

    Args:
        labels: true classes of the films (names or indices).
        probs_a, probs_b: (N, C) probabilities of the two runs on the same films.
        classes, patient_ids, n_boot, seed, alpha, threshold: as for ``bootstrap_ci``.

    Returns:
        ``unit``, ``n_units``, ``n_boot``, ``seed``, ``confidence`` and ``metrics``:
        ``{name: {"a", "b", "difference", "low", "high", "n_valid", "n_skipped"}}`` for
        ``accuracy``, ``auc/macro`` and ``auc/<class>``. A resample where a metric is undefined
        for either run is left out of that metric's interval and counted in ``n_skipped``.
    """
    if n_boot < 1 or not 0.0 < alpha < 1.0:
        raise ValueError("n_boot must be ≥ 1 and alpha in (0, 1)")
    y, pa = _check(labels, probs_a, classes)
    _, pb = _check(labels, probs_b, classes)
    pred_a, pred_b = decide(pa, threshold), decide(pb, threshold)
    ones = np.ones((1, y.size))
    point_a, point_b = _weighted_stats(y, pred_a, pa, ones), _weighted_stats(y, pred_b, pb, ones)
    rng = np.random.default_rng(seed)
    chunk = max(1, _WEIGHT_CELLS // y.size)
    diffs: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_boot, chunk):
        weights = resample_weights(y.size, patient_ids, n_boot=min(chunk, n_boot - start), rng=rng)
        sa, sb = _weighted_stats(y, pred_a, pa, weights), _weighted_stats(y, pred_b, pb, weights)
        for name, (va, vb) in _columns(sa, sb, classes).items():
            diffs.setdefault(name, []).append(vb - va)
    metrics = {}
    for name, (va, vb) in _columns(point_a, point_b, classes).items():
        low, high, n_valid = percentile_interval(np.concatenate(diffs[name]), alpha)
        metrics[name] = {"a": json_number(va[0]), "b": json_number(vb[0]),
                         "difference": json_number(vb[0] - va[0]), "low": low, "high": high,
                         "n_valid": n_valid, "n_skipped": int(n_boot - n_valid)}
    n_units = y.size if patient_ids is None else int(_patient_codes(patient_ids, y.size).max() + 1)
    return {"unit": "image" if patient_ids is None else "patient", "n_units": n_units,
            "n_boot": int(n_boot), "seed": int(seed), "confidence": 1 - alpha, "metrics": metrics}


def _columns(sa: dict, sb: dict, classes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-resample values of each compared metric for both runs (macro AUC NaN if any class is)."""
    out = {"accuracy": (sa["accuracy"], sb["accuracy"]),
           "auc/macro": (sa["auc"].mean(axis=1), sb["auc"].mean(axis=1))}
    for i, name in enumerate(classes):
        out[f"auc/{name}"] = (sa["auc"][:, i], sb["auc"][:, i])
    return out


def compare_predictions(labels, probs_a, probs_b, classes: Sequence[str], patient_ids=None, *,
                        n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                        threshold: float | None = None) -> dict[str, Any]:
    """McNemar's test and the paired bootstrap of two runs' predictions on the same films.

    Returns:
        ``n``, ``classes``, ``threshold``, ``mcnemar`` (:func:`mcnemar_exact`), ``bootstrap``
        (:func:`paired_bootstrap`) and ``verdict``: one sentence on the accuracy difference.
    """
    y, pa = _check(labels, probs_a, classes)
    _, pb = _check(labels, probs_b, classes)
    mc = mcnemar_exact(decide(pa, threshold) == y, decide(pb, threshold) == y)
    boot = paired_bootstrap(y, pa, pb, classes, patient_ids, n_boot=n_boot, seed=seed,
                            alpha=alpha, threshold=threshold)
    return {"n": int(y.size), "classes": list(classes), "threshold": threshold, "mcnemar": mc,
            "bootstrap": boot, "verdict": _verdict(mc, boot)}


def _verdict(mc: dict, boot: dict) -> str:
    acc = boot["metrics"]["accuracy"]
    level = f"{boot['confidence']:.0%}"
    if acc["low"] is None:
        return "The accuracy difference has no bootstrap interval."
    d, low, high = acc["difference"], acc["low"], acc["high"]
    films = f"{mc['discordant']} film{'' if mc['discordant'] == 1 else 's'}"
    where = (f"B − A = {d:+.3f} ({level} CI {low:+.3f} to {high:+.3f}; McNemar p = "
             f"{mc['p_value']:.3g}, {films} only one run gets right)")
    if low > 0 or high < 0:
        better = "B" if low > 0 else "A"
        return f"Run {better} is more accurate, beyond chance: {where}."
    return f"No accuracy difference beyond chance: {where}."


def paired_test_predictions(run_a, run_b) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two runs' test-split predictions, row for row on the same films.

    Args:
        run_a, run_b: :class:`cxrlib.runs.run.Run` objects (anything with ``id``, ``classes``,
            ``fingerprint`` and ``predictions()``).

    Returns:
        ``(test_a, test_b)`` sorted by ``rel_path``, with equal ``rel_path`` and ``label``.

    Raises:
        NotComparable: other tasks, other data, other test films or other labels.
    """
    if tuple(run_a.classes) != tuple(run_b.classes):
        raise NotComparable(f"the runs solve different tasks ({', '.join(run_a.classes)} vs "
                            f"{', '.join(run_b.classes)})")
    if run_a.fingerprint != run_b.fingerprint:
        raise NotComparable(f"the runs were trained on different data (dataset fingerprints "
                            f"{run_a.fingerprint} and {run_b.fingerprint})")
    tests = []
    for run in (run_a, run_b):
        preds = run.test_predictions()
        if not len(preds):
            raise NotComparable(f"run {run.id[:8]} has no test predictions")
        tests.append(preds.sort_values("rel_path", kind="stable").reset_index(drop=True))
    films_a, films_b = (set(t["rel_path"].astype(str)) for t in tests)
    if films_a != films_b:
        raise NotComparable(
            f"the runs were tested on different films (another split): {len(films_a - films_b)} "
            f"test films only in run {run_a.id[:8]}, {len(films_b - films_a)} only in run "
            f"{run_b.id[:8]}, {len(films_a & films_b)} in both")
    differ = int((tests[0]["label"].astype(str) != tests[1]["label"].astype(str)).sum())
    if differ:
        raise NotComparable(f"{differ} test films carry different labels in the two runs")
    return tests[0], tests[1]


def compare_runs(run_a, run_b, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                 threshold: float | None = None) -> dict[str, Any]:
    """:func:`compare_predictions` of two runs on their common test films.

    Returns:
        Its result plus ``run_a`` and ``run_b`` (the ids).

    Raises:
        NotComparable: see :func:`paired_test_predictions`.
    """
    test_a, test_b = paired_test_predictions(run_a, run_b)
    classes = list(run_a.classes)
    y, pa, patients = from_predictions(test_a, classes)
    _, pb, _ = from_predictions(test_b, classes)
    result = compare_predictions(y, pa, pb, classes, patients, n_boot=n_boot, seed=seed,
                                 alpha=alpha, threshold=threshold)
    return {"run_a": run_a.id, "run_b": run_b.id, **result}
