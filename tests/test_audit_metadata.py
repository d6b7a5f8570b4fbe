"""Metadata-only baseline: near perfect with a planted size shortcut, at chance with a planted
lung-only signal (which the whole-film statistics it used to read would have found)."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrlib.audit import metadata_baseline, metadata_features
from cxrlib.data.film_scan import scan_films
from cxrlib.audit.metadata_baseline import FEATURE_DESCRIPTIONS, FEATURES, confounded_level
from cxrlib.core.classes import CLASSES, NORMAL
from cxrlib.data.synthetic import lung_boxes, synthetic_film

N_PER_CLASS = 30


def _dataset(root, size_shortcut: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Films all drawn as Normal (so pixels carry no class signal); labels assigned in turn.
    With ``size_shortcut`` each class is saved at its own size."""
    rng = np.random.default_rng(5)
    rows = []
    for k in range(N_PER_CLASS * 3):
        label = CLASSES[k % 3]
        film = synthetic_film(NORMAL, 96, rng)
        if size_shortcut:
            side = (80, 96, 112)[k % 3]
            film = cv2.resize(film, (side, side), interpolation=cv2.INTER_AREA)
        path = root / f"f{k:03d}.png"
        cv2.imwrite(str(path), film)
        rows.append({"path": str(path), "rel_path": path.name, "label": label,
                     "width": film.shape[1], "height": film.shape[0], "format": "PNG",
                     "bit_depth": 8, "channels": 1})
    manifest = pd.DataFrame(rows)
    split = ["test" if (k // 3) % 3 == 0 else "train" for k in range(len(manifest))]
    return manifest, pd.DataFrame({"rel_path": manifest["rel_path"], "split": split})


def test_planted_size_shortcut_is_found(tmp_path, workspace):
    manifest, split = _dataset(tmp_path, size_shortcut=True)
    result = metadata_baseline(manifest, split, classes=CLASSES)
    assert result.accuracy >= 0.95 and result.balanced_accuracy >= 0.95
    assert result.majority_rate == pytest.approx(1 / 3)  # 10 test films of each class
    assert result.confounded and "confounded" in result.verdict.text and result.verdict.alarming
    assert result.importances["feature"].iloc[0] in ("width", "height", "megapixels")
    assert result.n_test == 30 and result.n_train == 60
    assert int(result.confusion.to_numpy().sum()) == result.n_test
    assert abs(sum(result.importances["importance"]) - 1) < 1e-6


def test_no_shortcut_is_near_chance(tmp_path, workspace):
    manifest, split = _dataset(tmp_path, size_shortcut=False)
    result = metadata_baseline(manifest, split, classes=CLASSES)
    assert result.accuracy < 0.6
    assert not result.confounded
    assert "No strong" in result.verdict.text or "partly" in result.verdict.text


def test_features_measure_the_border(tmp_path, workspace):
    film = np.full((100, 100), 128, np.uint8)
    film[:5] = 0  # a black band on top: 5 of the 5-pixel frame's rows
    path = tmp_path / "b.png"
    cv2.imwrite(str(path), film)
    manifest = pd.DataFrame([{"path": str(path), "rel_path": "b.png", "label": NORMAL,
                              "width": 100, "height": 100, "format": "PNG", "bit_depth": 8, "channels": 1}])
    feats = metadata_features(manifest).iloc[0]
    frame = np.concatenate([film[:5].ravel(), film[-5:].ravel(), film[5:-5, :5].ravel(), film[5:-5, -5:].ravel()])
    assert feats["border_black"] == pytest.approx((frame <= 5).mean())
    assert feats["border_mean"] == pytest.approx(frame.mean())
    assert "mean" not in feats and "std" not in feats  # whole-film statistics see the lungs
    assert "bytes_per_pixel" not in feats  # a lossless file's size follows what it shows
    assert feats["jpeg_quality"] == -1.0


def test_confounded_level():
    assert confounded_level(3) == pytest.approx(0.8)
    assert confounded_level(2) == pytest.approx(0.85)


def _lung_signal_dataset(root) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Films of one anatomy, size and format (each with its own noise); the class is a lung
    density only (COVID-19 lungs +45 grey levels, Viral +22: consolidation), inside the lungs."""
    rng = np.random.default_rng(11)
    rows = []
    for k in range(N_PER_CLASS * 3):
        label = CLASSES[k % 3]
        film = synthetic_film(NORMAL, 96, rng, vary_anatomy=False).astype(np.int16)
        lungs = np.zeros(film.shape, np.uint8)
        for cx, cy, ax, ay in lung_boxes(96):  # 80 % of each lung ellipse: inside the lungs
            cv2.ellipse(lungs, (cx, cy), (int(0.8 * ax), int(0.8 * ay)), 0, 0, 360, 1, -1)
        film[lungs > 0] += (45, 0, 22)[k % 3]
        path = root / f"l{k:03d}.png"
        cv2.imwrite(str(path), np.clip(film, 0, 255).astype(np.uint8))
        rows.append({"path": str(path), "rel_path": path.name, "label": label, "width": 96,
                     "height": 96, "format": "PNG", "bit_depth": 8, "channels": 1})
    manifest = pd.DataFrame(rows)
    split = ["test" if (k // 3) % 3 == 0 else "train" for k in range(len(manifest))]
    return manifest, pd.DataFrame({"rel_path": manifest["rel_path"], "split": split})


def test_lung_only_signal_stays_at_chance(tmp_path, workspace):
    from sklearn.ensemble import RandomForestClassifier

    manifest, split = _lung_signal_dataset(tmp_path)
    result = metadata_baseline(manifest, split, classes=CLASSES)
    assert result.balanced_accuracy < 0.55  # chance 1/3; 30 test films
    assert not result.confounded and "No strong" in result.verdict.text
    assert not result.verdict.alarming and result.verdict.code == "metadata"
    assert "mean" not in result.features and "std" not in result.features
    # The planted signal is real: the whole-film mean and spread the baseline used to read
    # separate the classes (so this test fails if they come back).
    props = scan_films(manifest).properties
    test = (split["split"] == "test").to_numpy()
    forest = RandomForestClassifier(n_estimators=300, min_samples_leaf=2, random_state=0)
    forest.fit(props.loc[~test, ["mean", "std"]], manifest.loc[~test, "label"])
    whole_film = (forest.predict(props.loc[test, ["mean", "std"]]) == manifest.loc[test, "label"]).mean()
    assert whole_film >= 0.8


def test_every_feature_is_described():
    assert set(FEATURES) == set(FEATURE_DESCRIPTIONS) and all(FEATURE_DESCRIPTIONS.values())
