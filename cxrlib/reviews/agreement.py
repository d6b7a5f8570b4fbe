"""How far reviewers agree with each other and with the model, and where they saw the heatmaps.

All statistics use each reviewer's latest review of a film (:func:`latest_reviews`). Three
questions are rated: agreement with the label, agreement with the prediction (two categories
each) and the heatmap location (four categories).

- Cohen's kappa (Cohen 1960, *Educ. Psychol. Meas.* 20:37-46) for a pair of reviewers on the
  films both reviewed: κ = (p_o − p_e) / (1 − p_e), p_e = Σ_k p_a(k) p_b(k).
- Fleiss' kappa (Fleiss 1971, *Psychol. Bull.* 76:378-382) for three or more reviewers on the
  films at least two of them reviewed. A film's agreement uses its own number of reviewers
  r_i: P_i = (Σ_j n_ij² − r_i) / (r_i (r_i − 1)); category shares pool all ratings. With the
  same number of reviewers on every film this is exactly Fleiss's statistic.
- Confidence intervals of a kappa: percentile bootstrap over films (Efron & Tibshirani 1993),
  with the film multiplicities of :func:`cxrlib.evaluation.resample_weights`. A resample whose
  kappa is undefined (one category only) is left out and counted.
- Shares (agreement with the model, heatmaps off target): Wilson score intervals (Wilson 1927,
  *JASA* 22:209-212), which stay inside [0, 1] for small counts.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from cxrlib.evaluation.bootstrap import percentile_interval, resample_weights
from cxrlib.evaluation.core import json_number
from cxrlib.evaluation.intervals import wilson_interval  # noqa: F401 (re-exported)
from cxrlib.reviews.records import HEATMAP_LOCATIONS, OFF_TARGET
from cxrlib.reviews.store import latest_reviews

QUESTIONS: dict[str, tuple] = {
    "agrees_with_label": (False, True),
    "agrees_with_prediction": (False, True),
    "heatmap_location": tuple(HEATMAP_LOCATIONS),
}
"""The rated questions and their categories."""


def cohen_kappa(ratings_a, ratings_b, categories=None) -> float:
    """Cohen's kappa of two raters' ratings of the same items (NaN when p_e = 1).

    Args:
        ratings_a, ratings_b: one category per item, same length.
        categories: all categories (default: those seen).
    """
    a, b = list(ratings_a), list(ratings_b)
    if len(a) != len(b) or not a:
        raise ValueError("two non-empty rating lists of the same length are needed")
    cats = list(categories) if categories is not None else sorted(set(a) | set(b), key=str)
    index = {c: i for i, c in enumerate(cats)}
    cells = np.array([index[x] * len(cats) + index[y] for x, y in zip(a, b)])
    table = np.bincount(cells, minlength=len(cats) ** 2).reshape(1, len(cats), len(cats))
    return float(_cohen(table)[0])


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa of an items × categories table of rating counts (≥ 2 ratings per item)."""
    m = np.asarray(counts, dtype=np.float64)
    if m.ndim != 2 or not len(m) or (m.sum(axis=1) < 2).any():
        raise ValueError("counts must be items × categories with at least two ratings per item")
    return float(_fleiss(m, np.ones((1, len(m))))[0])


def _cohen(tables: np.ndarray) -> np.ndarray:
    """Kappa of each K × K agreement table in ``tables`` (B, K, K)."""
    n = tables.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = np.trace(tables, axis1=1, axis2=2) / n
        p_e = np.sum(tables.sum(axis=2) * tables.sum(axis=1), axis=1) / n**2
        return np.where(np.isclose(p_e, 1.0), np.nan, (p_o - p_e) / (1.0 - p_e))


def _fleiss(m: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Fleiss' kappa for each row of film multiplicities ``weights`` (B, N); ``m`` is (N, K)."""
    raters = m.sum(axis=1)
    per_film = (np.sum(m * m, axis=1) - raters) / (raters * (raters - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_bar = weights @ per_film / weights.sum(axis=1)
        shares = (weights @ m) / (weights @ raters)[:, None]
        p_e = np.sum(shares**2, axis=1)
        return np.where(np.isclose(p_e, 1.0), np.nan, (p_bar - p_e) / (1.0 - p_e))


def _interval(point: float, samples: np.ndarray, alpha: float) -> dict:
    low, high, n_valid = percentile_interval(samples, alpha)
    return {"kappa": json_number(point), "low": low, "high": high, "n_valid": n_valid}


def rating_matrix(reviews: pd.DataFrame, question: str) -> pd.DataFrame:
    """Films (``run_id``, ``rel_path``) × reviewers of one question's answers (each reviewer's
    latest review; NaN where a reviewer did not review the film)."""
    latest = latest_reviews(reviews)
    return latest.pivot(index=["run_id", "rel_path"], columns="reviewer", values=question)


def kappa_tables(reviews: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> dict[str, pd.DataFrame]:
    """Agreement between reviewers, per question, with bootstrap CIs.

    Args:
        reviews: a reviews table of one run (:meth:`ReviewStore.reviews`).
        n_boot, seed, alpha: bootstrap resamples, generator seed, 1 − confidence.

    Returns:
        ``pairwise``: question, reviewer_a, reviewer_b, films (reviewed by both),
        observed_agreement, kappa, low, high (Cohen's kappa per pair with a common film);
        ``overall``: question, method (Cohen for two reviewers, Fleiss for more), reviewers,
        films (with two or more reviews), observed_agreement, kappa, low, high.
    """
    pairwise, overall = [], []
    for question, cats in QUESTIONS.items():
        matrix = rating_matrix(reviews, question) if len(reviews) else pd.DataFrame()
        codes = matrix.apply(lambda col: col.map({c: i for i, c in enumerate(cats)}))
        for a, b in combinations(sorted(matrix.columns), 2):
            both = codes[[a, b]].dropna()
            if len(both):
                pairwise.append({"question": question, "reviewer_a": a, "reviewer_b": b,
                                 **_pair_stats(both.to_numpy(int), len(cats), n_boot, seed, alpha)})
        shared = codes[codes.notna().sum(axis=1) >= 2]
        if matrix.shape[1] >= 2 and len(shared):
            counts = np.stack([(shared == k).sum(axis=1).to_numpy() for k in range(len(cats))], 1)
            method = "Cohen" if matrix.shape[1] == 2 else "Fleiss"
            stats = (_pair_stats(shared.to_numpy(int), len(cats), n_boot, seed, alpha)
                     if method == "Cohen" else _fleiss_stats(counts, n_boot, seed, alpha))
            overall.append({"question": question, "method": method,
                            "reviewers": int(matrix.shape[1]), **stats})
    columns = ["films", "observed_agreement", "kappa", "low", "high"]
    return {"pairwise": pd.DataFrame(pairwise, columns=["question", "reviewer_a", "reviewer_b",
                                                        *columns]),
            "overall": pd.DataFrame(overall, columns=["question", "method", "reviewers", *columns])}


def _pair_stats(codes: np.ndarray, k: int, n_boot: int, seed: int, alpha: float) -> dict:
    cells = np.eye(k * k)[codes[:, 0] * k + codes[:, 1]]  # one-hot agreement cell per film
    weights = resample_weights(len(codes), None, n_boot=n_boot, rng=np.random.default_rng(seed))
    point = _cohen(cells.sum(axis=0).reshape(1, k, k))[0]
    boot = _cohen((weights @ cells).reshape(n_boot, k, k))
    return {"films": len(codes), "observed_agreement": float(np.mean(codes[:, 0] == codes[:, 1])),
            **{k_: v for k_, v in _interval(point, boot, alpha).items() if k_ != "n_valid"}}


def _fleiss_stats(counts: np.ndarray, n_boot: int, seed: int, alpha: float) -> dict:
    m = counts.astype(np.float64)
    weights = resample_weights(len(m), None, n_boot=n_boot, rng=np.random.default_rng(seed))
    point = _fleiss(m, np.ones((1, len(m))))[0]
    raters = m.sum(axis=1)
    observed = float(np.mean((np.sum(m * m, axis=1) - raters) / (raters * (raters - 1))))
    return {"films": len(m), "observed_agreement": observed,
            **{k: v for k, v in _interval(point, _fleiss(m, weights), alpha).items()
               if k != "n_valid"}}


def _share(successes: int, n: int, alpha: float) -> dict:
    low, high = wilson_interval(successes, n, alpha)
    return {"share": successes / n if n else None, "low": low, "high": high}


def model_agreement(reviews: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Per reviewer (and ``all reviewers``): how often they agree with the model and the label.

    Returns:
        reviewer, reviews, agrees_with_prediction (share), low, high (its Wilson CI),
        agrees_with_label (share), model_errors (reviews of films whose shown prediction
        differs from the shown label) and sides_with_model_on_errors (the share of those where
        the reviewer agrees with the prediction).
    """
    latest = latest_reviews(reviews)
    groups = [(name, g) for name, g in latest.groupby("reviewer", sort=True)]
    if len(groups) > 1:
        groups.append(("all reviewers", latest))
    rows = []
    for name, g in groups:
        known = g["label"].notna() & g["prediction"].notna()
        errors = g[known & (g["label"].astype(str) != g["prediction"].astype(str))]
        share = _share(int(g["agrees_with_prediction"].sum()), len(g), alpha)
        rows.append({"reviewer": name, "reviews": len(g), "agrees_with_prediction": share["share"],
                     "low": share["low"], "high": share["high"],
                     "agrees_with_label": float(g["agrees_with_label"].mean()) if len(g) else None,
                     "model_errors": len(errors),
                     "sides_with_model_on_errors": (float(errors["agrees_with_prediction"].mean())
                                                    if len(errors) else None)})
    return pd.DataFrame(rows, columns=["reviewer", "reviews", "agrees_with_prediction", "low",
                                       "high", "agrees_with_label", "model_errors",
                                       "sides_with_model_on_errors"])


def off_target_share(reviews: pd.DataFrame, classes=None, *, alpha: float = 0.05) -> pd.DataFrame:
    """Per class of the film's label (and ``all``): reviews whose heatmap was judged on markers,
    text or devices or outside the body (:data:`OFF_TARGET`).

    Every reviewer's latest review counts (a film reviewed twice counts twice).

    Returns:
        class, reviews, one count column per location of :data:`HEATMAP_LOCATIONS` (named by
        its words), off_target (share), low, high (Wilson CI).
    """
    latest = latest_reviews(reviews)
    labels = latest["label"].fillna("(unknown)").astype(str)
    names = list(classes) if classes is not None else sorted(labels.unique())
    rows = []
    for name, part in [(c, latest[labels == c]) for c in names] + [("all", latest)]:
        counts = part["heatmap_location"].value_counts()
        off = int(sum(counts.get(c, 0) for c in OFF_TARGET))
        share = _share(off, len(part), alpha)
        rows.append({"class": name, "reviews": len(part),
                     **{words: int(counts.get(code, 0))
                        for code, words in HEATMAP_LOCATIONS.items()},
                     "off_target": share["share"], "low": share["low"], "high": share["high"]})
    return pd.DataFrame(rows)
