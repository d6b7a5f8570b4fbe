"""Duplicate finder: planted copies are found, distinct films are not paired; JPEG quality."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrlib.data.duplicates import find_duplicates, split_leakage
from cxrlib.data.imageio import jpeg_quality
from cxrlib.data.film_scan import hamming, phash, scan_films
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


def _skewed_hashes(rng, n: int) -> np.ndarray:
    """Hashes whose bits are as uneven as chest films' (some bits set in 3 % or 97 % of them),
    in clusters of near neighbours, with exact repeats."""
    p = rng.choice([0.03, 0.2, 0.5, 0.8, 0.97], 64)
    centres = (rng.random((n // 8, 64)) < p).astype(np.uint64)
    bits = centres[rng.integers(0, len(centres), n)]
    flips = rng.random((n, 64)) < 0.04
    bits = bits ^ flips.astype(np.uint64)
    values = (bits << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
    values[: n // 10] = values[n // 10: 2 * (n // 10)]  # exact copies
    return values


@pytest.mark.parametrize("radius", [0, 2, 6, 8])
def test_hash_index_finds_exactly_the_pairs_all_pairs_finds(radius):
    from cxrlib.data.hash_index import near_matches, near_pairs

    rng = np.random.default_rng(radius)
    h = _skewed_hashes(rng, 900)
    d = hamming(h[:, None], h[None, :])
    i, j = np.nonzero(np.triu(d <= radius, 1))
    a, b = near_pairs(h, radius)
    assert np.array_equal(a, i) and np.array_equal(b, j)
    base = _skewed_hashes(rng, 1500)
    q, k = np.nonzero(hamming(h[:, None], base[None, :]) <= radius)
    qa, kb = near_matches(h, base, radius)
    assert np.array_equal(qa, q) and np.array_equal(kb, k)


def test_hard_links_are_decoded_once_and_paired_with_all_their_copies(planted, tmp_path, workspace,
                                                                     monkeypatch):
    import os

    from cxrlib.data import film_scan

    manifest, truth = planted
    rows = [manifest]
    for name in ("texture_02.png", "synth_05.png"):  # three more names for each of two films
        src = manifest.loc[manifest["rel_path"] == name].iloc[0]
        for k in range(3):
            link = tmp_path / f"link{k}_{name}"
            os.link(src["path"], link)
            rows.append(pd.DataFrame([{**src.to_dict(), "path": str(link), "rel_path": link.name,
                                       "patient_id": f"p-link{k}-{name}"}]))
    big = pd.concat(rows, ignore_index=True)
    calls = []
    real = film_scan.read_film
    monkeypatch.setattr(film_scan, "read_film", lambda p: calls.append(p) or real(p))
    sig = scan_films(big, use_cache=False)
    assert len(calls) == len(manifest)  # every hard link was recognised, none decoded twice
    for name in ("texture_02.png", "synth_05.png"):
        rows_of = big.index[big["path"].map(os.path.realpath) == os.path.realpath(
            manifest.loc[manifest["rel_path"] == name, "path"].iloc[0])]
        assert len({sig.phash[r] for r in rows_of}) == 1
    clusters = find_duplicates(big, signatures=sig)
    sizes = clusters.groupby("cluster_id")["rel_path"].apply(set)
    assert {"texture_02.png", *(f"link{k}_texture_02.png" for k in range(3))} in list(sizes)
    assert {"synth_05.png", *(f"link{k}_synth_05.png" for k in range(3))} in list(sizes)
    cluster_of = dict(zip(clusters["rel_path"], clusters["cluster_id"]))
    for copy, original in truth.items():  # the planted copies are still found
        assert cluster_of[copy] == cluster_of[original]
    assert clusters["cluster_id"].nunique() == 5 and len(clusters) == 6 + 8
