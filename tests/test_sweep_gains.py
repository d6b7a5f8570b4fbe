"""The paired bootstrap of a LOSO gain (cxrlib.sweep.gains) on tiny hand-made cases, checked
against an exact enumeration of every resample."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

# source A: groups a1 (2 films), a2 (1 film); source B: groups b1, b2, b3 (1 film each).
# (rel_path, group, source, label, base right?, other right?)
FILMS = [("A/1", "a1", "A", "Normal", 1, 1), ("A/2", "a1", "A", "Normal", 0, 1),
         ("A/3", "a2", "A", "Normal", 0, 0),
         ("B/1", "b1", "B", "COVID-19", 1, 1), ("B/2", "b2", "B", "COVID-19", 0, 1),
         ("B/3", "b3", "B", "COVID-19", 1, 0)]


def _frame(which: int) -> pd.DataFrame:
    rows = [{"rel_path": p, "group": g, "source": s, "label": lab,
             "predicted": lab if f[which] else "Viral Pneumonia"} for p, g, s, lab, *f in FILMS]
    return pd.DataFrame(rows)


def _exact():
    """Every resample (each source's groups drawn with replacement, as many as it has), equally
    likely: the exact distribution of the difference of the means over sources."""
    by = {}
    for p, g, s, lab, a, b in FILMS:
        by.setdefault(s, {}).setdefault(g, []).append((a, b))
    per_source = []
    for s, groups in sorted(by.items()):
        outcomes = []
        for draw in itertools.product(list(groups), repeat=len(groups)):
            films = [f for g in draw for f in groups[g]]
            outcomes.append(np.mean([b for _, b in films]) - np.mean([a for a, _ in films]))
        per_source.append(outcomes)
    return np.array([np.mean(c) for c in itertools.product(*per_source)])


def test_the_gain_and_its_interval_match_an_exact_enumeration():
    from cxrlib.sweep.gains import loso_gain

    g = loso_gain(_frame(0), _frame(1), n_boot=40_000, seed=1)
    # by hand: A 1/3 -> 2/3 (+1/3), B 2/3 -> 2/3 (0): gain 1/6
    assert g["gain"] == pytest.approx(1 / 6)
    assert g["base"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert g["per_source"] == pytest.approx({"A": 1 / 3, "B": 0.0})
    exact = _exact()
    assert len(exact) == 2 ** 2 * 3 ** 3
    atoms, counts = np.unique(np.round(exact, 9), return_counts=True)
    cdf = np.cumsum(counts) / len(exact)  # the exact quantiles: the first atom whose CDF >= q
    lo, hi = atoms[np.argmax(cdf >= 0.025)], atoms[np.argmax(cdf >= 0.975)]
    assert (lo, hi) == pytest.approx((-1 / 3, 2 / 3))  # CDF 0.056 / 0.991; below them 0.009 / 0.972
    assert g["low"] == pytest.approx(lo, abs=1e-9) and g["high"] == pytest.approx(hi, abs=1e-9)
    assert (g["n_films"], g["n_groups"]) == (6, 5)


def test_a_gain_of_nothing_and_mismatched_films():
    from cxrlib.sweep.gains import loso_gain

    same = loso_gain(_frame(0), _frame(0).sample(frac=1, random_state=0), n_boot=200)
    assert (same["gain"], same["low"], same["high"]) == (0.0, 0.0, 0.0)  # order does not matter
    with pytest.raises(ValueError, match="same films"):
        loso_gain(_frame(0), _frame(1).iloc[1:], n_boot=10)
    with pytest.raises(ValueError, match="lack the columns"):
        loso_gain(_frame(0).drop(columns="group"), _frame(1), n_boot=10)


def test_sweep_findings_rank_candidates_and_name_the_population_no_candidate_reached():
    from cxrlib.sweep.gains import sweep_findings

    films = {"r0": _frame(0), "r1": _frame(1), "r2": _frame(0)}
    result = {"candidates": [
        {"name": "baseline", "run_id": "r0", "loso_expected_accuracy": 0.5,
         "loso_per_source": {"A": 1 / 3, "B": 2 / 3}},
        {"name": "same", "run_id": "r2", "loso_expected_accuracy": 0.5,
         "loso_per_source": {"A": 1 / 3, "B": 2 / 3}},
        {"name": "better", "run_id": "r1", "loso_expected_accuracy": 2 / 3, "selected": True,
         "loso_per_source": {"A": 2 / 3, "B": 2 / 3}},
        {"name": "old", "run_id": "r9", "loso_per_source": {"A": 0.0, "B": 0.1}}]}  # no films
    found = sweep_findings(result, films.get, n_boot=500)
    assert [r["name"] for r in found["rows"]] == ["better", "same"]
    assert found["rows"][0]["selected"] and found["rows"][1]["moved"] is None
    assert found["lacking"] == []  # A reached 2/3 somewhere, B 2/3
    result["candidates"] = [dict(c, loso_per_source={"A": 0.1, "B": 0.9}) for c in result["candidates"]]
    lacking = sweep_findings(result, films.get, n_boot=50)["lacking"]
    assert lacking == [{"source": "A", "best": 0.1, "classes": ["Normal"]}]
    assert sweep_findings({"candidates": result["candidates"][1:]}, films.get)["rows"] == []
