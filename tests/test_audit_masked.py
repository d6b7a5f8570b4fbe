"""Masked evaluation, attention audit and per-source metrics on tiny models made here."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrlib.audit import (attention_gallery, attention_summary, attention_table, blank_lungs,
                          keep_lungs, masked_evaluation, per_source_metrics, shortcut_verdict)
from cxrlib.core.classes import CLASSES
from cxrlib.data.synthetic import lung_boxes

S = 32


def _films(n_per_class: int = 6):
    """Grey films whose overall brightness encodes the class, with dark lung ellipses."""
    images, labels, masks = [], [], []
    for k, label in enumerate(CLASSES):
        for j in range(n_per_class):
            img = np.full((S, S), (50, 128, 210)[k] + j, np.uint8)
            mask = np.zeros((S, S), np.uint8)
            for cx, cy, ax, ay in lung_boxes(S):
                cv2.ellipse(mask, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
            img[mask > 0] -= 30
            images.append(img)
            labels.append(label)
            masks.append(mask.astype(bool))
    return np.stack(images), labels, np.stack(masks)


@pytest.fixture(scope="module")
def brightness_model():
    """Predicts the class from the film's mean brightness only (a pure shortcut model)."""
    from cxrlib.core.tfsetup import tf

    keras = tf().keras
    inputs = keras.Input((S, S, 3))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    logits = keras.layers.Dense(3)(mean)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    w = np.zeros((3, 3), np.float32)
    w[0] = [-60.0, 0.0, 60.0]  # channel 0 weights per class; boundaries at 0.35 and 0.65
    model.layers[2].set_weights([w, np.array([21.0, 0.0, -39.0], np.float32)])
    return model


def test_blank_and_keep_replace_with_film_mean():
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    mean = round(img.mean())
    blanked, kept = blank_lungs(img, mask), keep_lungs(img, mask)
    assert (blanked[mask] == mean).all() and np.array_equal(blanked[~mask], img[~mask])
    assert (kept[~mask] == mean).all() and np.array_equal(kept[mask], img[mask])
    assert img[0, 0] == 0  # input untouched


def test_shortcut_model_keeps_its_accuracy_without_lungs(brightness_model):
    images, labels, masks = _films()
    table = masked_evaluation(brightness_model, images, labels, CLASSES, masks=masks)
    assert table["condition"].tolist() == ["unmasked", "lungs blanked", "lungs only"]
    acc = dict(zip(table["condition"], table["accuracy"]))
    # independent check of the unmasked accuracy: the class is the mean-brightness band
    means = images.reshape(len(images), -1).mean(axis=1) / 255
    expected = np.digitize(means, [0.35, 0.65])
    truth = np.array([CLASSES.index(label) for label in labels])
    assert acc["unmasked"] == pytest.approx((expected == truth).mean())
    assert acc["unmasked"] == 1.0
    assert acc["lungs blanked"] == 1.0  # blanking with the film's mean keeps the mean
    shortcut, sentence = shortcut_verdict(table, 3)
    assert shortcut and "shortcuts" in sentence
    assert set(table.columns) >= {f"recall_{c}" for c in CLASSES}


def test_verdict_for_a_model_that_needs_the_lungs():
    table = pd.DataFrame({"condition": ["unmasked", "lungs blanked", "lungs only"],
                          "accuracy": [0.92, 0.36, 0.80]})
    shortcut, sentence = shortcut_verdict(table, 3)
    assert not shortcut and "depends on the lung fields" in sentence


def test_attention_table_on_a_tiny_conv_model():
    from cxrlib.core.tfsetup import tf

    keras = tf().keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images, labels, _ = _films(3)
    table = attention_table(model, images, labels, CLASSES, layer="conv", batch_size=4)
    assert len(table) == 9 and set(table["pred"]) <= set(CLASSES)
    shares = table["in_lung_share"].dropna()
    assert ((shares >= 0) & (shares <= 1)).all()
    summary = attention_summary(table).set_index("label")
    for label in CLASSES:
        assert summary.loc[label, "mean"] == pytest.approx(
            table.loc[table["label"] == label, "in_lung_share"].mean(), nan_ok=True)
    assert summary.loc["all", "films"] == 9
    gallery = attention_gallery(table, 4, reliable_only=False)
    assert gallery["in_lung_share"].is_monotonic_increasing and len(gallery) <= 4


def test_per_source_metrics_from_manifest_and_folder():
    preds = pd.DataFrame({"rel_path": ["a/1.png", "a/2.png", "b/3.png", "b/4.png", "b/5.png"],
                          "label": ["Normal", "Normal", "COVID-19", "Normal", "COVID-19"],
                          "pred": ["Normal", "COVID-19", "COVID-19", "Normal", "Normal"],
                          "split": ["test"] * 5})
    manifest = pd.DataFrame({"rel_path": preds["rel_path"], "source": ["nih", "nih", "web", "web", "web"]})
    table = per_source_metrics(preds, manifest).set_index("source")
    assert table.loc["nih", "accuracy"] == pytest.approx(0.5) and table.loc["nih", "single_class"]
    assert table.loc["web", "accuracy"] == pytest.approx(2 / 3) and not table.loc["web", "single_class"]
    by_folder = per_source_metrics(preds).set_index("source")
    assert by_folder.loc["b", "films"] == 3
