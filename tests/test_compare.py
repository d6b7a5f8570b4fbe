"""Two runs on the same test films: McNemar's exact test against hand-computed tables, the paired
bootstrap against a direct resample-by-resample computation, refusals with their reasons."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from cxrlib.evaluation import (NotComparable, compare_predictions, compare_runs, mcnemar_exact,
                               paired_bootstrap, resample_weights)

CLASSES = ["COVID-19", "Normal", "Viral Pneumonia"]


def _outcomes(both: int, only_a: int, only_b: int, neither: int):
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return a, b


def test_mcnemar_matches_hand_computed_tables():
    # 1 vs 6 discordant films: p = 2 · (C(7,0) + C(7,1)) / 2^7 = 2 · 8 / 128 = 0.125
    result = mcnemar_exact(*_outcomes(40, 1, 6, 3))
    assert result == {"both_correct": 40, "only_a_correct": 1, "only_b_correct": 6,
                      "both_wrong": 3, "discordant": 7, "p_value": 0.125}
    # 10 vs 3: p = 2 · (1 + 13 + 78 + 286) / 2^13 = 756 / 8192
    assert mcnemar_exact(*_outcomes(5, 10, 3, 0))["p_value"] == pytest.approx(756 / 8192, abs=1e-15)
    # equal discordant counts, and none at all: no evidence of a difference
    assert mcnemar_exact(*_outcomes(5, 4, 4, 1))["p_value"] == 1.0
    assert mcnemar_exact(*_outcomes(9, 0, 0, 1))["p_value"] == 1.0
    # and SciPy's exact binomial test on larger tables
    for only_a, only_b in ((40, 62), (0, 9), (150, 120)):
        expected = binomtest(only_a, only_a + only_b, 0.5).pvalue
        assert mcnemar_exact(*_outcomes(3, only_a, only_b, 2))["p_value"] == pytest.approx(
            expected, rel=1e-12)


def _two_runs(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    probs = []
    for boost in (0.6, 1.2):
        p = rng.dirichlet([1, 1, 1], n)
        p[np.arange(n), y] += boost * rng.random(n)
        probs.append(p / p.sum(axis=1, keepdims=True))
    patients = np.array([f"p{i // 3}" for i in range(n)], dtype=object)  # 3 films a patient
    return y, probs[0], probs[1], patients


def test_paired_bootstrap_matches_a_direct_computation():
    y, pa, pb, patients = _two_runs()
    n_boot, seed = 100, 11
    got = paired_bootstrap(y, pa, pb, CLASSES, patients, n_boot=n_boot, seed=seed)
    # Directly: the same patient draws, each resample built by repeating films, scored with
    # NumPy (accuracy) and scikit-learn (AUC) for both runs on that one resample.
    weights = resample_weights(len(y), patients, n_boot=n_boot, rng=np.random.default_rng(seed))
    assert all(len(set(w[patients == p])) == 1 for w in weights[:5] for p in set(patients))
    diffs: dict[str, list[float]] = {"accuracy": [], "auc/macro": []}
    for w in weights:
        idx = np.repeat(np.arange(len(y)), w)
        yy = y[idx]
        diffs["accuracy"].append(np.mean(pb[idx].argmax(1) == yy) - np.mean(pa[idx].argmax(1) == yy))
        aucs = [[roc_auc_score(yy == c, p[idx, c]) if 0 < np.sum(yy == c) < len(yy) else np.nan
                 for c in range(3)] for p in (pa, pb)]
        for c, name in enumerate(CLASSES):
            diffs.setdefault(f"auc/{name}", []).append(aucs[1][c] - aucs[0][c])
        diffs["auc/macro"].append(np.mean(aucs[1]) - np.mean(aucs[0]))
    for name, values in diffs.items():
        values = np.asarray(values)
        valid = values[np.isfinite(values)]
        m = got["metrics"][name]
        assert m["low"] == pytest.approx(np.quantile(valid, 0.025), abs=1e-12), name
        assert m["high"] == pytest.approx(np.quantile(valid, 0.975), abs=1e-12), name
        assert m["n_valid"] == valid.size and m["n_skipped"] == n_boot - valid.size
    acc = got["metrics"]["accuracy"]
    assert acc["a"] == pytest.approx(np.mean(pa.argmax(1) == y))
    assert acc["difference"] == pytest.approx(np.mean(pb.argmax(1) == y) - np.mean(pa.argmax(1) == y))
    auc_a = np.mean([roc_auc_score(y == c, pa[:, c]) for c in range(3)])
    assert got["metrics"]["auc/macro"]["a"] == pytest.approx(auc_a)
    assert got["unit"] == "patient" and got["n_units"] == 20


def test_a_run_compared_with_itself_differs_by_exactly_zero():
    y, pa, _, patients = _two_runs()
    result = compare_predictions(y, pa, pa, CLASSES, patients, n_boot=100)
    assert result["mcnemar"]["discordant"] == 0 and result["mcnemar"]["p_value"] == 1.0
    for m in result["bootstrap"]["metrics"].values():
        assert (m["difference"], m["low"], m["high"]) == (0.0, 0.0, 0.0)
    assert result["verdict"].startswith("No accuracy difference beyond chance")


def test_a_clearly_better_run_is_called_better():
    y, pa, _, patients = _two_runs(n=150)
    perfect = np.eye(3)[y] * 0.9 + 0.1 / 3
    result = compare_predictions(y, pa, perfect, CLASSES, patients, n_boot=300)
    assert result["bootstrap"]["metrics"]["accuracy"]["low"] > 0
    assert result["verdict"].startswith("Run B is more accurate, beyond chance")
    wrong_a = int(np.sum(pa.argmax(1) != y))
    assert result["mcnemar"]["only_b_correct"] == wrong_a
    assert result["mcnemar"]["p_value"] == pytest.approx(2 / 2**wrong_a)


def _fake_run(run_id: str, preds: pd.DataFrame, *, fingerprint: str = "fp1", classes=CLASSES):
    from cxrlib.evaluation.core import test_rows

    return SimpleNamespace(id=run_id, classes=tuple(classes), fingerprint=fingerprint,
                           predictions=lambda: preds.copy(),
                           test_predictions=lambda: test_rows(preds.copy()))


def _preds(y, probs, split="test"):
    frame = pd.DataFrame({"rel_path": [f"f{i:03d}" for i in range(len(y))],
                          "label": np.asarray(CLASSES)[y], "patient_id": [f"p{i // 3}" for i in range(len(y))],
                          "split": split})
    for i, c in enumerate(CLASSES):
        frame[f"p_{c}"] = probs[:, i]
    return frame


def test_compare_runs_pairs_films_by_path_whatever_their_order():
    y, pa, pb, _ = _two_runs()
    a, b = _preds(y, pa), _preds(y, pb)
    train_rows = _preds(y[:5], pa[:5], split="train").assign(rel_path=lambda f: "train/" + f["rel_path"])
    shuffled = pd.concat([b.sample(frac=1.0, random_state=1), train_rows], ignore_index=True)
    result = compare_runs(_fake_run("aaaa1111", a), _fake_run("bbbb2222", shuffled), n_boot=50)
    direct = compare_predictions(y, pa, pb, CLASSES, a["patient_id"].to_numpy(), n_boot=50)
    assert result["mcnemar"] == direct["mcnemar"]
    assert result["bootstrap"] == direct["bootstrap"]
    assert (result["run_a"], result["run_b"], result["n"]) == ("aaaa1111", "bbbb2222", len(y))


@pytest.mark.parametrize("change, reason", [
    (dict(fingerprint="fp2"), "trained on different data"),
    (dict(classes=["COVID-19", "Normal"]), "different tasks"),
    (dict(films=slice(0, 50)), "tested on different films"),
    (dict(labels=True), "carry different labels"),
])
def test_runs_on_different_test_films_are_refused_with_the_reason(change, reason):
    y, pa, pb, _ = _two_runs()
    other = _preds(y, pb)
    if "films" in change:
        other = other.iloc[change["films"]]
    if change.get("labels"):
        other.loc[0, "label"] = CLASSES[(y[0] + 1) % 3]
    run_b = _fake_run("bbbb2222", other, fingerprint=change.get("fingerprint", "fp1"),
                      classes=change.get("classes", CLASSES))
    with pytest.raises(NotComparable, match=reason) as err:
        compare_runs(_fake_run("aaaa1111", _preds(y, pa)), run_b, n_boot=10)
    assert err.value.reason == str(err.value)
    if "films" in change:
        assert "10 test films only in run aaaa1111, 0 only in run bbbb2222, 50 in both" in err.value.reason


def test_mcnemar_needs_paired_outcomes():
    with pytest.raises(ValueError):
        mcnemar_exact([True, False], [True])
    assert math.isclose(mcnemar_exact([True], [False])["p_value"], 1.0)
