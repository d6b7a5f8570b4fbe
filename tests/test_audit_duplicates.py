"""Duplicate finder: planted copies are found, distinct films are not paired; JPEG quality."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrlib.audit import find_duplicates, split_leakage
from cxrlib.data.imageio import jpeg_quality
from cxrlib.audit.film_scan import hamming, phash, scan_films
from cxrlib.core.classes import CLASSES
from cxrlib.data.synthetic import synthetic_film


def _textured_film(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A film with its own random structure (blobs and lines), unlike any other seed's."""
    img = cv2.GaussianBlur(rng.normal(120, 40, (size // 8, size // 8)).astype(np.float32), (0, 0), 1.0)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        p = tuple(int(v) for v in rng.integers(0, size, 4))
        cv2.line(img, p[:2], p[2:], float(rng.integers(0, 255)), int(rng.integers(2, 8)))
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """18 distinct originals (synthetic films of every class + textured films) and 3 planted
    copies of three of them: rescaled, cropped ~10%, re-encoded as JPEG quality 30."""
    root = tmp_path_factory.mktemp("dups")
    rng = np.random.default_rng(7)
    rows, films = [], {}
    for k in range(12):  # 4 synthetic films per class, each from its own generator state
        films[f"synth_{k:02d}.png"] = (synthetic_film(CLASSES[k % 3], 256, rng), CLASSES[k % 3])
    for k in range(6):
        films[f"texture_{k:02d}.png"] = (_textured_film(rng), CLASSES[k % 3])
    # The crop is planted on a textured film: a crop of one synthetic drawing also fits the other
    # drawings of its class (they differ only by noise), which real films do not.
    a, b, c = films["synth_00.png"][0], films["texture_04.png"][0], films["texture_01.png"][0]
    h, w = b.shape
    copies = {
        "copy_rescaled.png": (cv2.resize(a, (170, 150), interpolation=cv2.INTER_AREA), "synth_00.png"),
        "copy_cropped.png": (b[int(0.1 * h):, int(0.05 * w):int(0.95 * w)], "texture_04.png"),
        "copy_reencoded.jpg": (cv2.imdecode(cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], 0),
                               "texture_01.png"),
    }
    for name, (img, original) in copies.items():
        films[name] = (img, films[original][1])
    for name, (img, label) in films.items():
        cv2.imwrite(str(root / name), img)
        rows.append({"path": str(root / name), "rel_path": name, "label": label,
                     "patient_id": f"p-{name.split('.')[0]}", "source": "test"})
    truth = {name: original for name, (_, original) in copies.items()}
    return pd.DataFrame(rows), truth


def test_planted_copies_are_clustered_with_their_originals(planted, workspace):
    manifest, truth = planted
    clusters = find_duplicates(manifest)
    cluster_of = dict(zip(clusters["rel_path"], clusters["cluster_id"]))
    for copy, original in truth.items():
        assert copy in cluster_of and original in cluster_of, (copy, original, clusters)
        assert cluster_of[copy] == cluster_of[original]
    # exactly the three planted pairs: no distinct originals are paired
    assert clusters["cluster_id"].nunique() == 3
    assert len(clusters) == 6
    assert (clusters["cluster_size"] == 2).all()


def test_distinct_synthetic_films_of_one_class_are_not_paired(tmp_path, workspace):
    rng = np.random.default_rng(11)
    rows = []
    for k in range(16):
        path = tmp_path / f"n{k}.png"
        cv2.imwrite(str(path), synthetic_film(CLASSES[1], 256, rng))
        rows.append({"path": str(path), "rel_path": path.name, "label": CLASSES[1]})
    assert find_duplicates(pd.DataFrame(rows)).empty


def test_phash_is_stable_under_rescale_and_far_for_different_films():
    rng = np.random.default_rng(3)
    a, b = _textured_film(rng), _textured_film(rng)
    small = cv2.resize(a, (97, 131), interpolation=cv2.INTER_AREA)
    assert hamming(phash(a), phash(small)) <= 4
    assert hamming(phash(a), phash(b)) >= 12


def test_scan_is_cached(planted, workspace):
    manifest, _ = planted
    first = scan_films(manifest)
    second = scan_films(manifest)
    assert not first.cache_hit and second.cache_hit
    assert np.array_equal(first.phash, second.phash)
    assert np.array_equal(first.thumbs, second.thumbs)


@pytest.mark.parametrize("quality", [20, 50, 75, 95])
def test_jpeg_quality_read_from_dqt(tmp_path, quality):
    img = _textured_film(np.random.default_rng(quality), 64)
    path = tmp_path / "q.jpg"
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert jpeg_quality(path) == quality


def test_jpeg_quality_nan_for_png(tmp_path):
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.zeros((8, 8), np.uint8))
    assert np.isnan(jpeg_quality(path))


def test_split_leakage_finds_clusters_and_patients_across_splits():
    clusters = pd.DataFrame({"cluster_id": [0, 0, 1, 1], "rel_path": ["a", "b", "c", "d"],
                             "label": ["Normal"] * 4})
    split = pd.DataFrame({"rel_path": list("abcdef"), "split": ["train", "test", "test", "test", "train", "val"],
                          "patient_id": ["p1", "p2", "p3", "p3", "p9", "p9"]})
    out = split_leakage(clusters, split)
    assert out["clusters"]["cluster_id"].tolist() == [0]
    assert out["clusters"]["splits"].iloc[0] == "test, train"
    assert out["patients"]["patient_id"].tolist() == ["p9"]
    assert out["summary"] == {"leaking_clusters": 1, "leaking_cluster_films": 2,
                              "test_films_with_train_duplicate": 1, "leaking_patients": 1,
                              "leaking_patient_films": 2}
