"""What a finished run writes: its test-split predictions and their headline metrics."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

PREDICTION_COLUMNS = ("rel_path", "path", "label", "patient_id", "group_id", "source", "split")


def test_summary(onehot: np.ndarray, probs: np.ndarray, classes) -> dict:
    """Headline test metrics: accuracy, balanced accuracy, majority rate, cross-entropy, recall
    per class and macro one-vs-rest AUC, from the one evaluation path (:mod:`cxrlib.evaluation`).
    (The full evaluation, with CIs and calibration, is what the Evaluation page shows.)"""
    from cxrlib.evaluation import evaluate, point_metrics  # noqa: PLC0415

    y = onehot.argmax(1)
    point = point_metrics(y, probs.argmax(1), classes)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return {"accuracy": point["accuracy"], "balanced_accuracy": point["balanced_accuracy"],
            "majority_rate": point["majority_rate"], "loss": float(-np.log(p_true).mean()),
            "recall": point["recall"], "macro_auc": evaluate(y, probs, classes)["auc"]["macro"],
            "n_test": int(len(y)), "classes": list(classes)}


def write_results(run, test: pd.DataFrame, onehot: np.ndarray, probs: np.ndarray, classes,
                  info: dict) -> dict:
    """Write predictions.csv and metrics.json of the test rows; returns the metrics."""
    preds = pd.DataFrame({c: test[c].to_numpy() if c in test else "" for c in PREDICTION_COLUMNS})
    probs = np.asarray(probs, np.float64)
    preds["pred"] = np.array(classes)[probs.argmax(1)]
    for i, c in enumerate(classes):
        preds[f"p_{c}"] = probs[:, i]
    run.write_predictions(preds)
    metrics = {**test_summary(onehot, probs, classes), **info}
    metrics = json.loads(json.dumps(metrics, default=_plain))
    run.write_metrics(metrics)
    return metrics


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)
