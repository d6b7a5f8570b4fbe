"""What a sweep found: each candidate's leave-one-source-out (LOSO) gain over the baseline, with a
paired bootstrap interval over the split's group key, and the populations no candidate reached.

LOSO's expected accuracy is the mean over sources of the accuracy on each held-out source
(:func:`cxrlib.audit.loso.leave_one_source_out`). Two candidates of one sweep score the same
films (same dataset, split and held-out rows), so their difference is paired: a resample draws,
*within each source*, that source's groups (the split's group key: a patient, a duplicate group
or a near-duplicate cluster) with replacement (:func:`cxrlib.evaluation.bootstrap.resample_weights`),
every film of a drawn group coming along, and both candidates are scored on the same resample.
Drawing within each source keeps every source in every resample, so each resample's figure is
a mean over the same sources as the estimate. The interval is the percentile interval of the
resampled differences (:func:`cxrlib.evaluation.bootstrap.percentile_interval`).

The interval says how sure the gain is *on these films*: it does not count the sources
themselves as a sample of hospitals (five sources cannot be resampled usefully).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.evaluation.bootstrap import percentile_interval, resample_weights

COLUMNS = ("rel_path", "group", "source", "label", "predicted")

FLOOR = 0.2
"""A held-out source no candidate scores above this is reported as a population the data lacks."""


def loso_gain(base: pd.DataFrame, other: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0,
              alpha: float = 0.05) -> dict:
    """``other``'s LOSO expected accuracy minus ``base``'s, with a paired bootstrap interval.

    Args:
        base, other: per-film LOSO predictions (``rel_path``, ``group``, ``source``,
            ``label``, ``predicted``), as a sweep stores them
            (:func:`cxrlib.sweep.study.loso_films`); both must hold the same films.
        n_boot, seed, alpha: resamples, generator seed, 1 - confidence.

    Returns:
        ``gain``, ``low``, ``high``, ``base`` and ``other`` (expected accuracies), ``n_films``,
        ``n_groups``, ``n_boot``, ``confidence`` and ``per_source`` (``{source: gain}``).

    Raises:
        ValueError: a missing column, or the two do not hold the same films.
    """
    for name, frame in (("base", base), ("other", other)):
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}: LOSO predictions lack the columns {missing}")
    a = base.set_index(base["rel_path"].astype(str))
    b = other.set_index(other["rel_path"].astype(str))
    if len(a) != len(b) or set(a.index) != set(b.index) or a.index.has_duplicates:
        raise ValueError("the two candidates' LOSO predictions are not of the same films")
    b = b.loc[a.index]
    right_a = (a["predicted"].astype(str) == a["label"].astype(str)).to_numpy(float)
    right_b = (b["predicted"].astype(str) == b["label"].astype(str)).to_numpy(float)
    source = a["source"].astype(str).to_numpy()
    group = a["group"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    sources = sorted(set(source))
    diffs = np.zeros(n_boot)
    per_source = {}
    for s in sources:
        rows = np.flatnonzero(source == s)
        w = resample_weights(len(rows), group[rows], n_boot=n_boot, rng=rng).astype(float)
        total = w.sum(axis=1)
        diffs += (w @ right_b[rows] - w @ right_a[rows]) / total
        per_source[s] = float(right_b[rows].mean() - right_a[rows].mean())
    diffs /= len(sources)
    low, high, _ = percentile_interval(diffs, alpha)
    acc_a = float(np.mean([right_a[source == s].mean() for s in sources]))
    acc_b = float(np.mean([right_b[source == s].mean() for s in sources]))
    return {"gain": acc_b - acc_a, "low": low, "high": high, "base": acc_a, "other": acc_b,
            "n_films": int(len(a)), "n_groups": int(len(set(zip(source, group)))), "n_boot": n_boot,
            "confidence": 1 - alpha, "per_source": per_source}


def sweep_findings(result: dict, films_of, *, baseline: str = "baseline", n_boot: int = 2000,
                   seed: int = 0) -> dict:
    """Every candidate of a finished sweep against its ``baseline`` candidate.

    Args:
        result: the sweep's ``result.json`` (:func:`cxrlib.sweep.study.sweep_result`).
        films_of: ``films_of(run_id)`` -> that candidate's per-film LOSO predictions or None.
        baseline: the name of the reference candidate.

    Returns:
        ``baseline`` (its record), ``rows`` (one per other candidate: ``name``, ``run_id``,
        ``settings``, ``loso``, ``gain``, ``low``, ``high``, ``moved`` (the interval excludes
        0: ``"up"`` / ``"down"``, else ``None``), ``selected``), best gain first, and
        ``lacking``: the held-out sources that no candidate scored above :data:`FLOOR`, with
        the classes they hold. ``rows`` is empty without a baseline with stored predictions.
    """
    records = result.get("candidates") or []
    base = next((r for r in records if r.get("name") == baseline), None)
    base_films = films_of(base["run_id"]) if base else None
    rows = []
    for r in records:
        films = films_of(r["run_id"]) if base_films is not None and r is not base else None
        if films is None:
            continue
        g = loso_gain(base_films, films, n_boot=n_boot, seed=seed)
        moved = "up" if (g["low"] or 0) > 0 else "down" if (g["high"] or 0) < 0 else None
        rows.append({"name": r["name"], "run_id": r["run_id"], "settings": r.get("settings", {}),
                     "loso": r.get("loso_expected_accuracy"), "gain": g["gain"], "low": g["low"],
                     "high": g["high"], "moved": moved, "selected": bool(r.get("selected"))})
    rows.sort(key=lambda r: -r["gain"])
    return {"baseline": base, "rows": rows, "lacking": lacking_sources(records, base_films)}


def lacking_sources(records: list[dict], films: pd.DataFrame | None) -> list[dict]:
    """Held-out sources that every candidate scored at or below :data:`FLOOR`: ``source``,
    ``best`` (the best candidate's accuracy there) and ``classes`` (what its films are, from
    ``films`` when given)."""
    best: dict[str, float] = {}
    for r in records:
        for s, acc in (r.get("loso_per_source") or {}).items():
            if acc is not None:
                best[s] = max(best.get(s, -1.0), float(acc))
    out = []
    for s, acc in sorted(best.items()):
        if acc <= FLOOR:
            classes = (sorted(films.loc[films["source"].astype(str) == s, "label"].astype(str).unique())
                       if films is not None else [])
            out.append({"source": s, "best": acc, "classes": classes})
    return out
