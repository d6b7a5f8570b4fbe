"""Metadata-only baseline: near perfect with a planted size shortcut, near chance without."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrlib.audit import metadata_baseline, metadata_features
from cxrlib.audit.metadata_baseline import confounded_level
from cxrlib.core.classes import CLASSES, NORMAL
from cxrlib.data.synthetic import synthetic_film

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
    assert result.accuracy >= 0.95
    assert result.confounded and "confounded" in result.verdict
    assert result.importances["feature"].iloc[0] in ("width", "height", "megapixels")
    assert result.n_test == 30 and result.n_train == 60
    assert int(result.confusion.to_numpy().sum()) == result.n_test
    assert abs(sum(result.importances["importance"]) - 1) < 1e-6


def test_no_shortcut_is_near_chance(tmp_path, workspace):
    manifest, split = _dataset(tmp_path, size_shortcut=False)
    result = metadata_baseline(manifest, split, classes=CLASSES)
    assert result.accuracy < 0.6
    assert not result.confounded
    assert "No strong" in result.verdict or "partly" in result.verdict


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
    assert feats["mean"] == pytest.approx(film.mean())
    assert feats["bytes_per_pixel"] == pytest.approx(path.stat().st_size / 1e4)
    assert feats["jpeg_quality"] == -1.0


def test_confounded_level():
    assert confounded_level(3) == pytest.approx(0.8)
    assert confounded_level(2) == pytest.approx(0.85)
