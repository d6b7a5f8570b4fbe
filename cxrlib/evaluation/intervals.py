"""Confidence intervals of proportions that stay honest at small n (issue 26).

A patient bootstrap of one patient, or of a subgroup whose films are all right, has no spread:
it gives [1, 1]. These closed-form intervals do not collapse there:

- :func:`wilson_interval`: the Wilson score interval of ``successes`` of ``n``;
- :func:`clopper_pearson`: the exact (Clopper-Pearson) binomial interval, conservative;
- :func:`patient_interval`: Clopper-Pearson on *patients*: ``n`` films from ``p`` patients count
  as ``p`` independent trials (a patient's films are correlated; the films' share keeps its
  value), so 2 films of 1 patient, both right, give [0.025, 1];
- :func:`cxrlib.evaluation.metrics.predictive_value_interval` (beside ``ppv_npv``): PPV / NPV at a set prevalence from the intervals of
  sensitivity and specificity (both values rise with each, so the corners bound them).
"""
from __future__ import annotations

from statistics import NormalDist

import numpy as np

MIN_PATIENTS = 5
"""Below this many patients a subgroup's figure is marked "too few patients": its interval is
wide and it is never flagged."""


def wilson_interval(successes: int, n: int,
                    alpha: float = 0.05) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion; ``(None, None)`` when ``n`` is 0."""
    if n == 0:
        return None, None
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 or n successes the bound is exactly 0 or 1 (centre = half there); say so exactly.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return float(low), float(high)


def clopper_pearson(successes: float, n: float,
                    alpha: float = 0.05) -> tuple[float | None, float | None]:
    """Exact binomial interval: the beta quantiles ``B(α/2; x, n−x+1)`` and
    ``B(1−α/2; x+1, n−x)``; 0 and 1 at the ends. ``successes`` may be fractional (an effective
    count). ``(None, None)`` when ``n`` is 0."""
    from scipy.stats import beta  # noqa: PLC0415

    if n <= 0:
        return None, None
    x = min(max(float(successes), 0.0), float(n))
    low = 0.0 if x <= 0 else float(beta.ppf(alpha / 2, x, n - x + 1))
    high = 1.0 if x >= n else float(beta.ppf(1 - alpha / 2, x + 1, n - x))
    return low, high


def patient_interval(correct: int, films: int, patients: int | None,
                     alpha: float = 0.05) -> tuple[float | None, float | None]:
    """Clopper-Pearson interval of a share of ``films`` with ``patients`` as the number of
    independent trials (``films`` when patients are unknown)."""
    if films == 0:
        return None, None
    trials = films if not patients else min(int(patients), films)
    return clopper_pearson(correct / films * trials, trials, alpha)
