"""Masked evaluation, attention audit and per-source metrics on tiny models made here."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrlib.audit import (attention_gallery, attention_summary, attention_table, blank_lungs,
                          cam_in_lung_share, keep_lungs, masked_evaluation, per_source_metrics,
                          shortcut_verdict)
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
    shortcut, found = shortcut_verdict(table, 3)
    assert shortcut and "shortcuts" in found.text and found.alarming
    assert set(table.columns) >= {f"recall_{c}" for c in CLASSES}


def test_verdict_for_a_model_that_needs_the_lungs():
    table = pd.DataFrame({"condition": ["unmasked", "lungs blanked", "lungs only"],
                          "accuracy": [0.92, 0.36, 0.80], "balanced_accuracy": [0.92, 0.35, 0.80],
                          "predicted_Normal": [0.3, 0.9, 0.3]})
    shortcut, found = shortcut_verdict(table, 3)
    assert not shortcut and "depends on the lung fields" in found.text and not found.alarming
    assert "calls 90% of the blanked films Normal" in found.text


def test_majority_class_on_blanked_films_of_an_imbalanced_set_is_no_shortcut():
    """80 % of the films are Normal. The model reads the lungs only (their mean grey: dark lungs
    Normal, bright lungs COVID-19); with the lungs blanked (filled with the film's mean) it calls
    every film Normal. Accuracy stays at 0.8, far above uniform chance (0.5) and keeping 60 % of
    the margin: the old rule called that a shortcut. Balanced accuracy falls to chance (0.5)."""
    from cxrlib.core.tfsetup import tf

    keras = tf().keras
    classes = ("COVID-19", "Normal")
    mask = np.zeros((S, S), np.uint8)
    for cx, cy, ax, ay in lung_boxes(S):
        cv2.ellipse(mask, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
    mask = mask.astype(bool)
    images, labels = [], []
    for k in range(20):
        covid = k < 4  # 4 COVID-19, 16 Normal
        img = np.full((S, S), 150, np.uint8)
        img[mask] = 200 if covid else 60
        images.append(img)
        labels.append(classes[0] if covid else classes[1])
    images = np.stack(images)
    weights = (mask / mask.sum()).astype(np.float32)  # the mean grey of the lungs, channel 0
    inputs = keras.Input((S, S, 3))
    lung_mean = keras.layers.Dense(1, use_bias=False)(keras.layers.Flatten()(inputs[..., :1]))
    logits = keras.layers.Dense(2)(lung_mean)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    model.layers[-3].set_weights([weights.reshape(-1, 1)])
    model.layers[-2].set_weights([np.array([[40.0, -40.0]], np.float32), np.array([-26.0, 26.0], np.float32)])
    # boundary at lung mean 0.65 (166 grey): COVID lungs 200, Normal 60; blanked: the film mean
    blanked_fill = [round(float(g.mean())) for g in images]
    assert max(blanked_fill) < 166
    table = masked_evaluation(model, images, labels, classes, masks=np.stack([mask] * 20))
    rows = table.set_index("condition")
    assert rows.loc["unmasked", "accuracy"] == 1.0
    assert rows.loc["lungs blanked", "accuracy"] == pytest.approx(0.8)
    assert rows.loc["lungs blanked", "majority_rate"] == pytest.approx(0.8)
    assert rows.loc["lungs blanked", "balanced_accuracy"] == pytest.approx(0.5)
    assert rows.loc["lungs blanked", "predicted_Normal"] == pytest.approx(1.0)
    shortcut, found = shortcut_verdict(table, 2)
    assert not shortcut and "depends on the lung fields" in found.text
    # the rule this replaces (accuracy against uniform chance) would have called it a shortcut
    acc, chance = rows["accuracy"], 0.5
    assert acc["lungs blanked"] >= chance + 0.15 and (acc["lungs blanked"] - chance) / (acc["unmasked"] - chance) >= 0.5


@pytest.fixture(scope="module")
def bright_dark_model():
    """A conv model whose Grad-CAM is known: a 1x1 conv gives two channels, the film's grey
    value ``g`` and ``1 - g`` (ReLU); the class logits are linear in their means.

    COVID-19 (dark films) weighs only ``1 - g``: its CAM is ``normalise(1 - g)``, bright on the
    dark lungs. Normal weighs ``2 g + (1 - g)`` and Viral Pneumonia ``g``: their CAMs are
    ``normalise(g)``, bright outside the lungs. The class is the mean-brightness band (boundaries
    0.35 and 0.65), as for :func:`brightness_model`.
    """
    from cxrlib.core.tfsetup import tf

    keras = tf().keras
    inputs = keras.Input((S, S, 3))
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="conv")
    x = keras.layers.GlobalAveragePooling2D()(conv(inputs))
    scores = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, scores(x))
    conv.set_weights([np.stack([np.full(3, 1 / 3), np.full(3, -1 / 3)], axis=1)[None, None]
                      .astype(np.float32), np.array([0.0, 1.0], np.float32)])
    # logits: 60 (1 - m) - 25.5, 20 m + 10 (1 - m), 60 m - 22.5 for mean grey m
    scores.set_weights([np.array([[0.0, 20.0, 60.0], [60.0, 10.0, 0.0]], np.float32),
                        np.array([-25.5, 0.0, -22.5], np.float32)])
    return model


def test_attention_table_on_a_conv_model_with_known_heatmaps(bright_dark_model):
    from cxrlib.audit.attention import attention_audit, gallery_films
    from cxrlib.lungs import LungSegmentation

    images, labels, masks = _films(3)
    # Known masks (the true ellipses); the last film's is flagged as poor, the first is a dataset's.
    segs = ([LungSegmentation(masks[0], 1.0, False, "dataset")]
            + [LungSegmentation(m, 0.99, False, "predicted") for m in masks[1:-1]]
            + [LungSegmentation(masks[-1], 0.9, True, "predicted")])
    found = attention_audit(bright_dark_model, images, labels, CLASSES, layer="conv",
                            batch_size=4, segmentations=segs, rel_paths=[f"f{i}" for i in range(9)])
    table = found.table
    assert list(table["rel_path"]) == [f"f{i}" for i in range(9)]
    assert list(table["label"]) == labels and list(table["pred"]) == labels  # brightness bands
    assert list(table["mask_source"]) == ["dataset"] + ["predicted"] * 8
    assert list(table["mask_flagged"]) == [False] * 8 + [True]
    # Each film has two grey levels (lungs 30 darker), so normalise(g) is 1 outside the lungs
    # and 0 inside: in-lung share 0; normalise(1 - g) the reverse: share 1.
    expected = np.array([1.0 if label == "COVID-19" else 0.0 for label in labels])
    np.testing.assert_allclose(table["in_lung_share"], expected, atol=1e-6)

    summary = attention_summary(table).set_index("label")
    assert list(summary.index) == [*CLASSES, "all"]
    for label in CLASSES:
        assert summary.loc[label, "films"] == 3
        assert summary.loc[label, "mean"] == pytest.approx(1.0 if label == "COVID-19" else 0.0, abs=1e-6)
    # the flagged film (a Viral one) is left out of the shares and counted
    assert summary.loc["Viral Pneumonia", "flagged"] == 1 and summary.loc["Viral Pneumonia", "scored"] == 2
    assert summary.loc["all", "films"] == 9 and summary.loc["all", "flagged"] == 1
    assert summary.loc["all", "scored"] == 8
    assert summary.loc["all", "mean"] == pytest.approx(3 / 8, abs=1e-6)
    assert summary.loc["all", "median"] == pytest.approx(0.0, abs=1e-6)
    assert summary.loc["all", "masks"] == "dataset (1), predicted (7)"
    assert summary.loc["COVID-19", "masks"] == "dataset (1), predicted (2)"
    # the level an evenly spread CAM would reach: the lung share of the input, scored films only
    assert summary.loc["all", "lung_area"] == pytest.approx(masks[:-1].mean())
    assert list(table["lung_area"]) == pytest.approx([m.mean() for m in masks])

    # Most CAM mass outside the lungs first; the flagged film only when asked for.
    gallery = attention_gallery(table, 4, reliable_only=False)
    assert len(gallery) == 4 and set(gallery["label"]) <= {"Normal", "Viral Pneumonia"}
    reliable = attention_gallery(table, 12)
    assert len(reliable) == 8 and "f8" not in set(reliable["rel_path"])
    assert list(reliable["label"]).count("COVID-19") == 3 and list(reliable["label"])[-3:] == ["COVID-19"] * 3
    # the gallery's films carry the very input, mask and CAM each share was computed with
    for g in gallery_films(found, images, reliable):
        i = int(g.rel_path[1:])
        assert g.image is not None and np.array_equal(g.image, images[i])
        assert np.array_equal(g.mask, segs[i].mask) and g.mask_source == segs[i].source
        assert cam_in_lung_share(g.heatmap, g.mask) == pytest.approx(table["in_lung_share"][i])


def test_attention_table_masks_films_it_segments_itself(bright_dark_model):
    """Without precomputed masks the table segments each model input itself (the learned
    segmenter, :func:`cxrlib.lungs.segment_batch`)."""
    from cxrlib.lungs import segment_batch

    images, labels, _ = _films(2)
    table = attention_table(bright_dark_model, images, labels, CLASSES, layer="conv")
    for i, (film, seg) in enumerate(zip(images, segment_batch(list(images)))):
        heat = (film < film.max()).astype(float) if labels[i] == "COVID-19" else (film == film.max()).astype(float)
        assert table["mask_source"].iloc[i] == "predicted"
        assert table["mask_flagged"].iloc[i] == seg.flagged
        assert table["in_lung_share"].iloc[i] == pytest.approx(heat[seg.mask].sum() / heat.sum(), abs=1e-6)


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


def test_per_source_metrics_and_loso_name_the_same_sources():
    """One rule names a film's source for the per-source table and for leave-one-source-out.
    A folder per hospital whose scan gave every film the layout's name as its source: both see
    the two hospitals (the per-source table used to show one "kermany" row)."""
    from cxrlib.audit.loso import loso_sources

    preds = pd.DataFrame({"rel_path": ["siteA/COVID-19/1.png", "siteA/Normal/2.png",
                                       "siteB/COVID-19/3.png", "siteB/Normal/4.png"],
                          "label": ["COVID-19", "Normal", "COVID-19", "Normal"],
                          "pred": ["COVID-19", "COVID-19", "COVID-19", "Normal"],
                          "split": ["test"] * 4, "source": ["kermany"] * 4})
    table = per_source_metrics(preds).set_index("source")
    assert sorted(table.index) == sorted(set(loso_sources(preds))) == ["siteA", "siteB"]
    assert table.loc["siteA", "accuracy"] == pytest.approx(0.5)
    # The sources are named on the whole frame, then the split is chosen: a test split that
    # holds one hospital's films only still names them by hospital.
    one = per_source_metrics(preds.assign(split=["test", "test", "train", "train"]))
    assert one["source"].tolist() == ["siteA"]


def test_films_at_the_root_or_in_class_folders_are_not_sources_each():
    """Without a source column that names two, top-level folders are sources only when every
    film lies in one and they are not the class folders; otherwise the one named source stays
    (and leave-one-source-out refuses)."""
    from cxrlib.data.identity import film_sources
    from cxrlib.audit.loso import loso_sources

    root = pd.DataFrame({"rel_path": ["1.png", "2.png", "3.png", "4.png"],
                         "label": ["COVID-19", "Normal", "COVID-19", "Normal"],
                         "source": ["manifest"] * 4})
    assert film_sources(root).tolist() == ["manifest"] * 4
    classes = root.assign(rel_path=["COVID-19/1.png", "Normal/2.png", "COVID-19/3.png", "Normal/4.png"])
    assert film_sources(classes).tolist() == ["manifest"] * 4
    for frame in (root, classes):
        with pytest.raises(ValueError, match="two sources"):
            loso_sources(frame)
    named = classes.assign(source=["nih", "nih", "web", "web"])
    assert film_sources(named).tolist() == ["nih", "nih", "web", "web"]


def test_partial_reliance_outside_the_lungs_is_a_warning_finding_not_a_shortcut():
    """The severity is decided where the measurement is, as a field: no reader parses the text."""
    from cxrlib.audit.findings import NOTE, WARNING, Finding

    table = pd.DataFrame({"condition": ["unmasked", "lungs blanked", "lungs only"],
                          "accuracy": [0.92, 0.6, 0.8], "balanced_accuracy": [0.92, 0.6, 0.8],
                          "predicted_Normal": [0.3, 0.5, 0.3]})
    shortcut, found = shortcut_verdict(table, 3)  # 0.6 >= 1/3 + 0.15, but under half the margin
    assert not shortcut and (found.severity, found.code) == (WARNING, "masked")
    assert found.text.startswith("The model partly relies") and str(found) == found.text
    assert found.to_dict() == {"severity": WARNING, "code": "masked", "text": found.text}
    assert not Finding(NOTE, "loso", "Accuracy falls from 90% to 89%").alarming
    with pytest.raises(ValueError, match="severity"):
        Finding("alarm", "loso", "x")
