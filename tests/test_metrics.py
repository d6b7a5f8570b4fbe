"""Metrics against scikit-learn, hand-worked cases and the formulas they implement."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    classification_report,
    confusion_matrix,
    recall_score,
    roc_auc_score,
)
from sklearn.preprocessing import label_binarize

from cxrlib import evaluation as metrics
from cxrlib.core.classes import CLASSES, TASK_CLASSES

BINARY = TASK_CLASSES["binary"]


def noisy_predictions(n: int = 300, n_classes: int = 3, seed: int = 0, signal: float = 1.2, round_to: int | None = 2):
    """Labels and softmax probabilities that carry some signal; rounding creates tied scores."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += signal
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if round_to is not None:
        probs = np.round(probs, round_to)
        probs /= probs.sum(axis=1, keepdims=True)
    return y, probs


# ---------------------------------------------------------------- evaluate vs scikit-learn


@pytest.mark.parametrize("seed", [0, 1])
def test_evaluate_matches_sklearn_three_classes(seed):
    y, probs = noisy_predictions(seed=seed)
    result = metrics.evaluate(np.asarray(CLASSES)[y], probs, CLASSES)  # labels given as names
    json.dumps(result)  # stored as JSON
    pred = probs.argmax(axis=1)

    assert result["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert result["confusion"]["counts"] == confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
    np.testing.assert_allclose(result["confusion"]["normalised"],
                               confusion_matrix(y, pred, labels=[0, 1, 2], normalize="true"))
    expected = classification_report(y, pred, labels=[0, 1, 2], target_names=CLASSES, output_dict=True,
                                     zero_division=0)
    for key in (*CLASSES, "macro avg", "weighted avg"):
        for field, sk_field in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"),
                                ("support", "support")):
            assert result["report"][key][field] == pytest.approx(expected[key][sk_field]), (key, field)

    onehot = label_binarize(y, classes=[0, 1, 2])
    per_class = roc_auc_score(y, probs, multi_class="ovr", average=None)
    for i, name in enumerate(CLASSES):
        assert result["auc"]["per_class"][name] == pytest.approx(per_class[i])
        assert result["per_class"][name]["auc"] == pytest.approx(per_class[i])
        assert result["per_class"][name]["sensitivity"] == pytest.approx(recall_score(y == i, pred == i))
        assert result["per_class"][name]["specificity"] == pytest.approx(recall_score(y != i, pred != i))
    assert result["auc"]["macro"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert result["auc"]["micro"] == pytest.approx(roc_auc_score(onehot.ravel(), probs.ravel()))
    # the report's average rows carry specificity and AUC too (they showed as empty cells)
    spec = [recall_score(y != i, pred != i) for i in range(3)]
    share = np.bincount(y, minlength=3) / len(y)
    assert result["report"]["macro avg"]["specificity"] == pytest.approx(np.mean(spec))
    assert result["report"]["weighted avg"]["specificity"] == pytest.approx(share @ spec)
    assert result["report"]["macro avg"]["auc"] == pytest.approx(
        roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert result["report"]["weighted avg"]["auc"] == pytest.approx(
        roc_auc_score(y, probs, multi_class="ovr", average="weighted"))


def test_evaluate_binary_auc_and_undefined_class():
    y, probs = noisy_predictions(n=200, n_classes=2, seed=3)
    result = metrics.evaluate(y, probs, BINARY)
    assert result["positive_class"] == "COVID-19"
    assert result["auc"]["per_class"]["COVID-19"] == pytest.approx(roc_auc_score(y == 0, probs[:, 0]))
    # A class missing from the labels has no AUC, and then no macro AUC either.
    only_two = metrics.evaluate(y, np.c_[probs * 0.9, np.full(len(y), 0.1)], CLASSES)
    assert only_two["auc"]["per_class"]["Viral Pneumonia"] is None
    assert only_two["auc"]["macro"] is None
    assert only_two["report"]["macro avg"]["auc"] is None and only_two["report"]["weighted avg"]["auc"] is None
    assert only_two["report"]["Viral Pneumonia"]["support"] == 0


def test_hand_worked_binary_case():
    # 10 images: 4 COVID-19, 6 Normal. Predictions (argmax): TP = 3, FN = 1, FP = 2, TN = 4.
    labels = ["COVID-19"] * 4 + ["Normal"] * 6
    p_covid = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.55, 0.4, 0.3, 0.1, 0.05])
    result = metrics.evaluate(labels, np.c_[p_covid, 1 - p_covid], BINARY)
    assert result["confusion"]["counts"] == [[3, 1], [2, 4]]
    covid = result["per_class"]["COVID-19"]
    assert covid["sensitivity"] == pytest.approx(3 / 4)
    assert covid["specificity"] == pytest.approx(4 / 6)
    assert covid["prevalence"] == pytest.approx(0.4)
    assert result["accuracy"] == pytest.approx(0.7)
    # Positives 0.9, 0.8, 0.7 beat all 6 negatives; 0.2 beats only 0.1 and 0.05 → AUC = 20 / 24.
    assert covid["auc"] == pytest.approx(20 / 24)
    # At the sample prevalence, PPV and NPV are the observed precisions: 3/5 and 4/5.
    pv = metrics.predictive_values(result, "COVID-19")
    assert pv["ppv"] == pytest.approx(3 / 5)
    assert pv["npv"] == pytest.approx(4 / 5)
    # At a 10% prevalence: PPV = 0.075 / (0.075 + 0.3) = 0.2; NPV = 0.6 / (0.6 + 0.025).
    pv10 = metrics.predictive_values(result, "COVID-19", prevalence=0.1)
    assert pv10["ppv"] == pytest.approx(0.2)
    assert pv10["npv"] == pytest.approx(0.6 / 0.625)


def test_threshold_moves_binary_predictions():
    p_covid = np.array([0.9, 0.6, 0.4, 0.2])
    probs = np.c_[p_covid, 1 - p_covid]
    labels = [0, 0, 1, 1]
    assert metrics.decide(probs).tolist() == [0, 0, 1, 1]
    assert metrics.decide(probs, 0.5).tolist() == [0, 0, 1, 1]
    assert metrics.decide(probs, 0.3).tolist() == [0, 0, 0, 1]  # more COVID-19 calls
    assert metrics.decide(probs, 0.7).tolist() == [0, 1, 1, 1]
    assert metrics.decide(probs, 0.6).tolist() == [0, 0, 1, 1]  # P(COVID-19) ≥ threshold is positive
    low = metrics.evaluate(labels, probs, BINARY, threshold=0.3)
    assert low["per_class"]["COVID-19"]["sensitivity"] == 1.0
    assert low["per_class"]["COVID-19"]["specificity"] == 0.5
    assert low["threshold"] == 0.3
    high = metrics.evaluate(labels, probs, BINARY, threshold=0.95)
    assert high["confusion"]["counts"] == [[0, 2], [0, 2]]
    # The threshold does not change the ranking, hence not the AUC.
    assert high["auc"]["per_class"]["COVID-19"] == low["auc"]["per_class"]["COVID-19"] == 1.0
    with pytest.raises(ValueError):
        metrics.decide(np.full((2, 3), 1 / 3), 0.5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="not among"):
        metrics.evaluate(["COVID-19", "Cat"], np.full((2, 2), 0.5), BINARY)
    with pytest.raises(ValueError, match="shape"):
        metrics.evaluate([0, 1], np.full((2, 3), 0.5), BINARY)


# ---------------------------------------------------------------- PPV / NPV


@pytest.mark.parametrize("sens, spec, prev", [(0.947, 0.966, 0.05), (0.9, 0.8, 0.5), (0.5, 0.99, 0.3)])
def test_ppv_npv_formula(sens, spec, prev):
    ppv, npv = metrics.ppv_npv(sens, spec, prev)
    assert ppv == pytest.approx(sens * prev / (sens * prev + (1 - spec) * (1 - prev)))
    assert npv == pytest.approx(spec * (1 - prev) / (spec * (1 - prev) + (1 - sens) * prev))


def test_ppv_npv_prevalence_edges():
    assert metrics.ppv_npv(0.9, 0.8, 0.0) == (0.0, 1.0)  # no disease: every positive call is false
    assert metrics.ppv_npv(0.9, 0.8, 1.0) == (1.0, 0.0)  # all disease: every negative call is false
    ppv, npv = metrics.ppv_npv(0.9, 1.0, 0.0)  # no positives and no positive calls: 0/0
    assert math.isnan(ppv) and npv == 1.0
    ppv, npv = metrics.ppv_npv(1.0, 0.8, 1.0)
    assert ppv == 1.0 and math.isnan(npv)
    ppv, _ = metrics.ppv_npv(0.9, 0.8, np.array([0.0, 0.5, 1.0]))  # a prevalence sweep
    np.testing.assert_allclose(ppv, [0.0, 0.45 / 0.55, 1.0])
    with pytest.raises(ValueError):
        metrics.ppv_npv(1.2, 0.8, 0.5)


# ---------------------------------------------------------------- curves


@pytest.mark.parametrize("round_to", [None, 1])  # distinct scores, then many ties
def test_curve_points_match_sklearn(round_to):
    y, probs = noisy_predictions(n=150, seed=2, round_to=round_to)
    truth, scores = y == 1, probs[:, 1]
    for ours, theirs in zip(metrics.roc_curve(truth, scores), skm.roc_curve(truth, scores)):
        np.testing.assert_allclose(ours, theirs)
    for ours, theirs in zip(metrics.precision_recall_curve(truth, scores), skm.precision_recall_curve(truth, scores)):
        np.testing.assert_allclose(ours, theirs)


def test_roc_and_pr_curves():
    y, probs = noisy_predictions(seed=4, round_to=None)
    roc = metrics.roc_curves(y, probs, CLASSES)
    json.dumps(roc)
    for i, name in enumerate(CLASSES):
        assert roc["per_class"][name]["auc"] == pytest.approx(roc_auc_score(y == i, probs[:, i]))
    assert roc["micro"]["auc"] == pytest.approx(roc_auc_score(label_binarize(y, classes=[0, 1, 2]).ravel(),
                                                              probs.ravel()))
    macro = roc["macro"]
    assert macro["auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"))
    assert macro["curve_auc"] == pytest.approx(macro["auc"], abs=0.02)  # interpolated curve ≈ mean AUC
    assert macro["fpr"][0] == 0 and macro["fpr"][-1] == 1 and macro["tpr"][-1] == pytest.approx(1)
    pr = metrics.pr_curves(y, probs, CLASSES)
    for i, name in enumerate(CLASSES):
        assert pr["per_class"][name]["ap"] == pytest.approx(average_precision_score(y == i, probs[:, i]))
        assert pr["per_class"][name]["prevalence"] == pytest.approx(np.mean(y == i))
    assert pr["micro"]["ap"] == pytest.approx(
        average_precision_score(label_binarize(y, classes=[0, 1, 2]), probs, average="micro"))


def test_curves_skip_an_absent_class():
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.3, 0.4, 0.3]])
    roc = metrics.roc_curves(y, probs, CLASSES)
    assert roc["undefined"] == ["Viral Pneumonia"] and "macro" not in roc
    assert set(metrics.pr_curves(y, probs, CLASSES)["per_class"]) == {"COVID-19", "Normal"}


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_is_deterministic_and_contains_estimate():
    y, probs = noisy_predictions(n=200, seed=5)
    a = metrics.bootstrap_ci(y, probs, CLASSES, n_boot=300, seed=7)
    b = metrics.bootstrap_ci(y, probs, CLASSES, n_boot=300, seed=7)
    c = metrics.bootstrap_ci(y, probs, CLASSES, n_boot=300, seed=8)
    assert a == b
    assert a["metrics"]["accuracy"] != c["metrics"]["accuracy"]
    point = metrics.evaluate(y, probs, CLASSES)
    assert list(a["metrics"]) == ["accuracy", *(f"recall/{n}" for n in CLASSES),
                                  *(f"auc/{n}" for n in CLASSES), "auc/macro"]
    assert a["metrics"]["accuracy"]["estimate"] == pytest.approx(point["accuracy"])
    assert a["metrics"]["auc/macro"]["estimate"] == pytest.approx(point["auc"]["macro"])
    for name, m in a["metrics"].items():
        assert m["low"] < m["estimate"] < m["high"], name
        assert m["n_valid"] == 300 and m["n_skipped"] == 0
    # Width of a 95% interval for a proportion ≈ 2 · 1.96 · sqrt(p(1 − p) / n).
    acc = point["accuracy"]
    width = a["metrics"]["accuracy"]["high"] - a["metrics"]["accuracy"]["low"]
    assert width == pytest.approx(2 * 1.96 * math.sqrt(acc * (1 - acc) / 200), rel=0.2)


def test_one_resample_equals_sklearn_on_the_repeated_images():
    y, probs = noisy_predictions(n=60, seed=6)
    pred = probs.argmax(axis=1)
    rng = np.random.default_rng(0)
    weights = metrics.resample_weights(60, None, n_boot=1, rng=rng)
    assert weights.sum() == 60
    from cxrlib.evaluation.core import _weighted_stats

    stats = _weighted_stats(y, pred, probs, weights)
    idx = np.repeat(np.arange(60), weights[0])
    assert stats["accuracy"][0] == pytest.approx(accuracy_score(y[idx], pred[idx]))
    np.testing.assert_allclose(stats["recall"][0], recall_score(y[idx], pred[idx], average=None))
    np.testing.assert_allclose(stats["auc"][0], roc_auc_score(y[idx], probs[idx], multi_class="ovr", average=None))


def test_patient_resampling_keeps_a_patients_images_together():
    patient_ids = np.array(["a", "a", "b", "c", "c", "c", None, ""], dtype=object)
    w = metrics.resample_weights(8, patient_ids, n_boot=500, rng=np.random.default_rng(1))
    assert w.shape == (500, 8)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 4]).all() and (w[:, 4] == w[:, 5]).all()
    # 5 units (a, b, c, and the two images without an id): each resample draws 5 of them.
    units = w[:, [0, 2, 3, 6, 7]]
    assert (units.sum(axis=1) == 5).all()
    assert not (w[:, 6] == w[:, 7]).all()  # missing ids are not one shared patient


def test_patient_bootstrap_is_wider_when_images_repeat_a_patient():
    # 40 patients with 5 identical images each: there are only 40 independent observations.
    y1, probs1 = noisy_predictions(n=40, seed=9, signal=0.8)
    y, probs = np.repeat(y1, 5), np.repeat(probs1, 5, axis=0)
    patient_ids = np.repeat([f"p{i}" for i in range(40)], 5)
    by_image = metrics.bootstrap_ci(y, probs, CLASSES, n_boot=500, seed=0)
    by_patient = metrics.bootstrap_ci(y, probs, CLASSES, patient_ids, n_boot=500, seed=0)
    assert by_image["unit"] == "image" and by_image["n_units"] == 200
    assert by_patient["unit"] == "patient" and by_patient["n_units"] == 40

    def width(ci, name):
        return ci["metrics"][name]["high"] - ci["metrics"][name]["low"]

    # Cluster bootstrap ≈ sqrt(5) times wider; image bootstrap pretends n = 200.
    assert width(by_patient, "accuracy") > 1.6 * width(by_image, "accuracy")
    assert width(by_patient, "auc/macro") > 1.6 * width(by_image, "auc/macro")


def test_bootstrap_counts_resamples_without_a_class():
    # One Viral Pneumonia image among 30: many resamples miss it.
    y = np.array([0] * 15 + [1] * 14 + [2])
    probs = np.tile([0.6, 0.3, 0.1], (30, 1))
    probs[15:29] = [0.3, 0.6, 0.1]
    probs[29] = [0.1, 0.2, 0.7]
    ci = metrics.bootstrap_ci(y, probs, CLASSES, n_boot=400, seed=0)
    skipped = ci["metrics"]["auc/Viral Pneumonia"]["n_skipped"]
    assert skipped == pytest.approx(400 * (29 / 30) ** 30, rel=0.3)  # P(image never drawn) ≈ e^-1
    assert ci["metrics"]["recall/Viral Pneumonia"]["n_skipped"] == skipped
    assert ci["metrics"]["auc/COVID-19"]["n_skipped"] == 0
    assert ci["metrics"]["auc/macro"]["n_valid"] == 400 - skipped


# ---------------------------------------------------------------- calibration


def test_calibration_hand_worked():
    # Binary, 4 bins ((0, .25], (.25, .5], (.5, .75], (.75, 1]); 0.75 falls in the third bin.
    # Third bin: confidences 0.6, 0.6, 0.75, two right → accuracy 2/3, mean confidence 0.65.
    # Fourth bin: confidences 0.9, 0.8, one right → accuracy 0.5, mean confidence 0.85.
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6], [0.75, 0.25]])
    labels = [0, 0, 0, 1, 1]
    cal = metrics.calibration(labels, probs, n_bins=4)
    assert cal["count"] == [0, 0, 3, 2]
    assert cal["confidence"][2] == pytest.approx(0.65) and cal["accuracy"][2] == pytest.approx(2 / 3)
    assert cal["confidence"][3] == pytest.approx(0.85) and cal["accuracy"][3] == 0.5
    assert cal["accuracy"][0] is None
    # ECE = 3/5 · |2/3 − 0.65| + 2/5 · |0.5 − 0.85| = 0.01 + 0.14
    assert cal["ece"] == pytest.approx(0.15)
    assert cal["mce"] == pytest.approx(0.35)
    assert metrics.calibration(["COVID-19", "COVID-19", "COVID-19", "Normal", "Normal"], probs, n_bins=4,
                               classes=BINARY) == cal
    with pytest.raises(ValueError, match="classes"):
        metrics.calibration(["COVID-19", "Normal", "Normal", "Normal", "Normal"], probs)


def test_calibration_small_for_calibrated_and_large_for_overconfident():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20000)
    y = np.where(rng.uniform(size=p.size) < p, 0, 1)  # class 0 with probability p: calibrated
    calibrated = metrics.calibration(y, np.c_[p, 1 - p])
    assert calibrated["ece"] < 0.02
    sharpened = np.where(p > 0.5, 0.99, 0.01)  # same decisions, overconfident
    assert metrics.calibration(y, np.c_[sharpened, 1 - sharpened])["ece"] > 0.2


# ---------------------------------------------------------------- history and records


def test_training_curves_and_best_epoch():
    history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.0, 0.7, 0.5], "accuracy": [0.5, 0.7, 0.8],
                            "val_loss": [0.9, 0.6, 0.8], "val_accuracy": [0.6, 0.7, 0.65], "lr": [1e-3] * 3})
    tidy = metrics.training_curves(history)
    assert len(tidy) == 12
    val = tidy[(tidy.metric == "loss") & (tidy.split == "validation")]
    assert val["value"].tolist() == [0.9, 0.6, 0.8]
    assert metrics.best_epoch(history) == 2
    assert metrics.best_epoch(history.drop(columns=["val_loss"])) is None
    assert metrics.training_curves(history[["epoch", "loss"]])["split"].unique().tolist() == ["train"]


def test_sample_records_order_and_from_predictions():
    df = pd.DataFrame({
        "rel_path": [f"img{i}.png" for i in range(5)],
        "path": [f"/data/img{i}.png" for i in range(5)],
        "label": ["COVID-19", "Normal", "COVID-19", "Normal", "Normal"],
        "patient_id": ["a", "b", "c", "d", "e"],
        "p_COVID-19": [0.95, 0.9, 0.3, 0.45, 0.2],
        "p_Normal": [0.05, 0.1, 0.7, 0.55, 0.8],
    })
    y, probs, pids = metrics.from_predictions(df, BINARY)
    assert y.tolist() == [0, 1, 0, 1, 1] and pids.tolist() == list("abcde")
    records = metrics.sample_records(df, BINARY)
    # Errors: img1 (Normal called COVID-19 at 0.9), img2 (COVID-19 called Normal at 0.7).
    assert records["rel_path"].tolist() == ["img1.png", "img2.png", "img0.png", "img4.png", "img3.png"]
    assert records["correct"].tolist() == [False, False, True, True, True]
    assert records.loc[0, "predicted"] == "COVID-19" and records.loc[0, "true"] == "Normal"
    assert records["confidence"].tolist() == pytest.approx([0.9, 0.7, 0.95, 0.8, 0.55])
    errors = metrics.sample_records(df, BINARY, only_errors=True)
    assert errors["rel_path"].tolist() == ["img1.png", "img2.png"]
    # Threshold 0.25 on P(COVID-19): img2 becomes right, img3 and img1 wrong.
    thresholded = metrics.sample_records(df, BINARY, only_errors=True, threshold=0.25)
    assert thresholded["rel_path"].tolist() == ["img1.png", "img3.png"]
    with pytest.raises(ValueError, match="p_Viral"):
        metrics.from_predictions(df, CLASSES)


def test_sample_records_without_a_path_column():
    df = pd.DataFrame({"label": ["COVID-19", "Normal"], "p_COVID-19": [0.2, 0.3], "p_Normal": [0.8, 0.7]})
    records = metrics.sample_records(df, BINARY)
    assert records["path"].tolist() == ["", ""]
    assert records["correct"].tolist() == [False, True]


def test_calibration_rejects_one_dimensional_probabilities():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        metrics.calibration([0, 1], np.array([0.2, 0.9]))


def test_test_rows_keeps_only_the_test_split_in_order():
    """A predictions frame read back from CSV may hold the split as any dtype; the test rows keep
    their order and get a fresh index; a folder's predictions (no split column) pass whole."""
    preds = pd.DataFrame({"rel_path": list("abcdef"),
                          "split": ["train", "test", "val", "test", None, "test"]},
                         index=[10, 11, 12, 13, 14, 15])
    rows = metrics.test_rows(preds)
    assert rows["rel_path"].tolist() == ["b", "d", "f"]
    assert rows.index.tolist() == [0, 1, 2]
    categorical = preds.astype({"split": "category"})
    assert metrics.test_rows(categorical)["rel_path"].tolist() == ["b", "d", "f"]
    folder = preds.drop(columns="split")
    assert metrics.test_rows(folder)["rel_path"].tolist() == list("abcdef")


def test_percentile_interval_skips_undefined_resamples():
    """The interval is numpy's percentile interval of the finite samples (a resample missing a
    class has a NaN AUC); none finite gives nulls; JSON numbers are never NaN or infinite."""
    from cxrlib.evaluation.bootstrap import percentile_interval
    from cxrlib.evaluation.core import json_number

    samples = np.array([0.1 * k for k in range(11)] + [np.nan, np.inf, -np.inf])
    low, high, n = percentile_interval(samples, 0.2)
    assert n == 11
    assert (low, high) == pytest.approx((np.percentile(samples[:11], 10), np.percentile(samples[:11], 90)))
    assert (low, high) == pytest.approx((0.1, 0.9))
    assert percentile_interval(np.full(5, np.nan), 0.05) == (None, None, 0)
    assert [json_number(v) for v in (None, np.nan, np.inf, np.float32(0.25), 3)] == [None, None, None, 0.25, 3.0]


class _StubRun:
    """What own_test_accuracy reads of a run: its predictions and metrics.json."""

    def __init__(self, predictions: pd.DataFrame, metrics: dict):
        self._p, self._m = predictions, metrics

    def predictions(self) -> pd.DataFrame:
        return self._p

    def metrics(self) -> dict:
        return self._m


def test_own_test_accuracy_counts_test_films_overall_and_per_source():
    from cxrlib.evaluation.core import own_test_accuracy

    # hand-counted: test films a1 a2 a3 (source A, 2 right) and b1 b2 (B, 0 right); the
    # train film t1 is wrong and c1 is a test film of no known source
    p = pd.DataFrame({"rel_path": ["a1", "a2", "a3", "b1", "b2", "t1", "c1"],
                      "split": ["test"] * 5 + ["train", "test"],
                      "label": ["Normal", "COVID-19", "Normal", "Normal", "COVID-19", "Normal", "Normal"],
                      "pred": ["Normal", "COVID-19", "COVID-19", "COVID-19", "Normal", "COVID-19", "Normal"]})
    sources = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "t1": "A"}
    overall, per = own_test_accuracy(_StubRun(p, {"accuracy": 0.99}), sources)
    assert overall == pytest.approx(3 / 6)
    assert per == {"A": pytest.approx(2 / 3), "B": 0.0}
    assert own_test_accuracy(_StubRun(p, {}))[1] == {}


def test_own_test_accuracy_without_predictions_is_the_metrics_figure():
    from cxrlib.evaluation.core import own_test_accuracy

    assert own_test_accuracy(_StubRun(pd.DataFrame(), {"accuracy": 0.875}), {"a": "A"}) == (0.875, {})
    for stored in ({}, {"accuracy": None}):  # none, or a null in a hand-edited metrics.json
        overall, per = own_test_accuracy(_StubRun(pd.DataFrame(), stored))
        assert np.isnan(overall) and per == {}


def test_json_records_and_numbers_turn_every_missing_value_into_null():
    """The one NaN-to-None rule, for single values and for tables (subgroups, LOSO, masked)."""
    import pandas as pd

    from cxrlib.evaluation.core import json_number, json_records

    assert json_number(pd.NA) is None
    table = pd.DataFrame({"source": ["a", "b", None], "accuracy": [0.5, np.nan, 1.0],
                          "n": pd.array([3, pd.NA, 1], dtype="Int64")})
    assert json_records(table) == [{"source": "a", "accuracy": 0.5, "n": 3},
                                   {"source": "b", "accuracy": None, "n": None},
                                   {"source": None, "accuracy": 1.0, "n": 1}]


def test_predictive_values_carry_intervals_checked_by_hand():
    """Issue 26: sensitivity, specificity, PPV and NPV each with a 95 % interval. 8 of 10
    positives found, 45 of 50 negatives cleared: Wilson by hand, and PPV / NPV at 10 %
    prevalence from the corners of those two intervals."""
    from cxrlib.evaluation import evaluate, predictive_values
    from cxrlib.evaluation.intervals import wilson_interval

    labels = np.array([0] * 10 + [1] * 50)
    called = np.array([0] * 8 + [1] * 2 + [0] * 5 + [1] * 45)
    probs = np.eye(2)[called] * 0.8 + 0.1
    pv = predictive_values(evaluate(labels, probs, ["COVID-19", "Normal"]), "COVID-19", 0.1)
    z = 1.959963984540054
    for (k, n), (low, high) in (((8, 10), pv["sensitivity_ci"]), ((45, 50), pv["specificity_ci"])):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert (low, high) == pytest.approx((centre - half, centre + half))
    s_lo, s_hi = wilson_interval(8, 10)
    c_lo, c_hi = wilson_interval(45, 50)
    ppv = lambda s, c: s * 0.1 / (s * 0.1 + (1 - c) * 0.9)  # noqa: E731
    npv = lambda s, c: c * 0.9 / (c * 0.9 + (1 - s) * 0.1)  # noqa: E731
    assert pv["ppv_ci"] == pytest.approx((ppv(s_lo, c_lo), ppv(s_hi, c_hi)))
    assert pv["npv_ci"] == pytest.approx((npv(s_lo, c_lo), npv(s_hi, c_hi)))
    assert pv["ppv_ci"][0] < pv["ppv"] < pv["ppv_ci"][1]
