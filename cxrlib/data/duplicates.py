"""Near-duplicate films and the leakage they cause across a run's splits.

Method (measured on ../shared/datasets/cxr3, 1800 films; see ``bench/audit.py``):

1. **Candidates by hash.** Every film's pHash, dHash and 24 window pHashes come from one cached
   pass (:func:`cxrlib.data.film_scan.scan_films`). A pair is a candidate when its pHashes
   differ in at most ``max_phash`` bits, its dHashes in at most ``max_dhash`` bits, or one film's
   pHash is within ``max_window`` bits of a sub-window of the other (a crop). Rescaled and
   re-encoded copies differ by 0-2 pHash bits; distinct films of different patients by 26 bits
   at the median and rarely under 8. Chest films all share the same coarse layout, so a dHash
   alone is weak: it is only trusted at a very small distance.
2. **Confirmation** (:mod:`cxrlib.data.similarity`). Hashes only propose pairs; two checks decide:

   * *copy*: the normalised correlation of the 64 x 64 thumbnails is at least
     ``min_correlation`` (rescaled / re-encoded copies: >= 0.99; distinct cxr3 candidate
     pairs: at most 0.965), and so is the correlation of their fine detail at 128 px
     (``min_detail``): films that share a layout but not their texture (synthetic drawings,
     two films of one patient in one position) are not copies.
   * *crop*: a template match of one film inside the other, on high-pass-filtered thumbnails
     (the Gaussian-blurred image subtracted, so the shared chest layout no longer correlates),
     at the scale and anchor of the matching window +- 5% (64 px), refined at 128 px with a
     finer high-pass. Score >= ``min_crop_score``.
     A template match rather than ORB keypoints + RANSAC: the crops in public CXR sets are
     axis-aligned cut-outs of the same picture, and radiographs are smooth and heavily
     compressed, so ORB finds few stable corners on small thumbnails, while a normalised
     template match is deterministic, needs no full-resolution decode, and costs
     milliseconds per pair.
3. **Clusters** are the connected components of the confirmed pairs (union-find).
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import pandas as pd

from cxrlib.data.candidates import candidate_pairs, group_contents, self_window
from cxrlib.data.film_scan import FilmSignatures, scan_films
from cxrlib.data.similarity import (COARSE, PairCheck, crop_match, detail_correlation,  # noqa: F401
                                     thumb_correlation)

PAIR_COLUMNS = ["rel_path_a", "rel_path_b", "label_a", "label_b", "kind", "phash_distance",
                "dhash_distance", "window_distance", "correlation", "crop_score"]
CLUSTER_COLUMNS = ["cluster_id", "rel_path", "path", "label", "patient_id", "source", "cluster_size"]


def find_duplicate_pairs(manifest: pd.DataFrame, *, signatures: FilmSignatures | None = None,
                         fingerprint: str | None = None, max_phash: int = 8, max_dhash: int = 2,
                         max_window: int = 6, min_correlation: float = 0.98,
                         min_detail: float = 0.88, min_crop_score: float = 0.6,
                         progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Confirmed near-duplicate pairs of films (see the module docstring for the method).

    Candidates come from a multi-index hash search (:mod:`cxrlib.data.candidates`), not from
    every pair: 21 600 films take seconds, not hours. The pairs are exactly those the all-pairs
    comparison finds. Films that could not be decoded (``signatures.skipped``) pair with none.

    Args:
        manifest: a dataset manifest (``path``, ``rel_path``, ``label``; rows in any order).
        signatures: a precomputed :func:`scan_films` result for this manifest (else computed,
            and cached by ``fingerprint``).
        fingerprint: the dataset fingerprint (cache key for the decoding pass).
        max_phash / max_dhash / max_window: candidate thresholds in bits.
        min_correlation: 64 px thumbnail correlation a copy must reach.
        min_detail: 128 px fine-detail correlation (:func:`detail_correlation`) a copy must
            reach too.
        min_crop_score: high-pass template-match score that confirms a crop.
        progress: ``progress(done, total)`` during the decoding pass.

    Returns:
        One row per confirmed pair, sorted by the rows of the two films: :data:`PAIR_COLUMNS`;
        ``kind`` is ``"copy"`` or ``"crop"``.
    """
    sig = signatures or scan_films(manifest, fingerprint=fingerprint, progress=progress)
    n = len(sig.rel_paths)
    labels = manifest["label"].astype(str).tolist() if "label" in manifest else [""] * n
    contents = group_contents(sig)
    small = np.stack([cv2.resize(sig.thumbs[r], (COARSE, COARSE), interpolation=cv2.INTER_AREA)
                      for r in contents.first]) if len(contents.first) else np.zeros((0, COARSE, COARSE), np.uint8)
    limits = dict(min_correlation=min_correlation, min_detail=min_detail,
                  min_crop_score=min_crop_score, max_window=max_window)
    check = PairCheck(sig, contents, small, **limits)
    found: list[tuple] = []
    cand = candidate_pairs(sig, contents, max_phash=max_phash, max_dhash=max_dhash,
                           max_window=max_window)
    for a, b, ph, dh, w_ab, k_ab, w_ba, k_ba in zip(cand.a, cand.b, cand.phash, cand.dhash,
                                                    cand.w_ab, cand.k_ab, cand.w_ba, cand.k_ba):
        for i, j, part_first in _film_pairs(contents.films[a], contents.films[b]):
            # as for every pair of rows i < j: i is the crop of j when its whole-film hash lies
            # closer to j's windows than j's to i's (ties: the earlier row is the crop)
            if part_first:
                part_is_a = w_ab <= w_ba
            else:
                part_is_a = w_ab < w_ba
            kind, corr, crop = check.pair(a, b, min(w_ab, w_ba), part_is_a, k_ab if part_is_a else k_ba)
            if kind:
                found.append((i, j, kind, ph, dh, min(w_ab, w_ba), corr, crop))
    w_self, k_self = self_window(sig, contents)
    for c, films in enumerate(contents.films):
        if len(films) > 1:
            kind, corr, crop = check.pair(c, c, w_self[c], True, k_self[c])
            if kind:
                found += [(i, j, kind, 0, 0, int(w_self[c]), corr, crop)
                          for i, j in zip(*(films[t] for t in np.triu_indices(len(films), 1)))]
    found.sort(key=lambda r: (r[0], r[1]))
    rows = [(sig.rel_paths[i], sig.rel_paths[j], labels[i], labels[j], kind, int(ph), int(dh),
             int(w), corr, crop) for i, j, kind, ph, dh, w, corr, crop in found]
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def _film_pairs(films_a: np.ndarray, films_b: np.ndarray):
    """``(i, j, a_first)`` for every film of content a with every film of content b, i < j."""
    for fa in films_a:
        for fb in films_b:
            yield (fa, fb, True) if fa < fb else (fb, fa, False)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def clusters_from_pairs(manifest: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Union-find the pairs into clusters; one row per film that has a near-duplicate.

    Returns:
        :data:`CLUSTER_COLUMNS`, largest clusters first; ``cluster_id`` counts from 0.
    """
    index = {p: i for i, p in enumerate(manifest["rel_path"].astype(str))}
    uf = _UnionFind(len(index))
    for a, b in zip(pairs["rel_path_a"], pairs["rel_path_b"]):
        uf.union(index[a], index[b])
    members: dict[int, list[int]] = {}
    for i in {index[p] for p in pd.concat([pairs["rel_path_a"], pairs["rel_path_b"]])}:
        members.setdefault(uf.find(i), []).append(i)
    groups = sorted((sorted(m) for m in members.values()), key=lambda m: (-len(m), m[0]))
    rows = []
    for cid, group in enumerate(groups):
        for i in group:
            rec = manifest.iloc[i]
            rows.append((cid, str(rec["rel_path"]), str(rec.get("path", "")), str(rec.get("label", "")),
                         _text(rec.get("patient_id")), _text(rec.get("source")), len(group)))
    return pd.DataFrame(rows, columns=CLUSTER_COLUMNS)


def find_duplicates(manifest: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """Near-duplicate clusters of a dataset: films that are copies, rescales or crops of each other.

    Args:
        manifest: a dataset manifest (``path``, ``rel_path``, ``label``, ``patient_id``, ``source``).
        **kwargs: passed to :func:`find_duplicate_pairs` (thresholds, ``fingerprint``, ``signatures``).

    Returns:
        One row per film in a cluster of two or more: ``cluster_id``, ``rel_path``, ``path``,
        ``label``, ``patient_id``, ``source``, ``cluster_size``; largest clusters first. Films
        without a near-duplicate are not listed.
    """
    manifest = manifest.reset_index(drop=True)
    return clusters_from_pairs(manifest, find_duplicate_pairs(manifest, **kwargs))


DUPLICATES_VERSION = 1  # bump when the search's results change, to retire cached clusters


def duplicate_clusters(dataset, *, progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
    """The near-duplicate cluster of every film that has one, cached per dataset content.

    The group key of the grouped split uses this (:func:`cxrlib.data.identity.group_keys`), so a
    near-duplicate pair found here never straddles a split. A cluster is named after its
    smallest ``rel_path`` (``"dup:<rel_path>"``), so names do not depend on row order.

    Args:
        dataset: a :class:`cxrlib.data.datasets.Dataset` (its fingerprint keys the cache).
        progress: ``progress(done, total)`` while films are decoded (first time only).

    Returns:
        ``{rel_path: cluster name}`` for the films in a cluster of two or more.
    """
    from cxrlib.core.fsutil import read_json, write_json_atomic  # noqa: PLC0415
    from cxrlib.core.paths import cache_dir  # noqa: PLC0415

    cache = cache_dir("audit") / f"clusters-v{DUPLICATES_VERSION}-{dataset.fingerprint}.json"
    try:
        cached = read_json(cache)
    except ValueError:  # a damaged cache file is recomputed
        cached = None
    if isinstance(cached, dict):
        return cached
    clusters = find_duplicates(dataset.manifest, fingerprint=dataset.fingerprint, progress=progress)
    names = {}
    for _, group in clusters.groupby("cluster_id"):
        name = "dup:" + min(group["rel_path"].astype(str))
        names.update(dict.fromkeys(group["rel_path"].astype(str), name))
    write_json_atomic(cache, names)
    return names


def split_leakage(clusters: pd.DataFrame, split_table: pd.DataFrame) -> dict:
    """Near-duplicate clusters and patients that fall in more than one split of a run.

    Uses the one leakage computation (:func:`cxrlib.data.splits.leaking_ids`).

    Args:
        clusters: :func:`find_duplicates` output.
        split_table: ``Run.split_table()`` (``rel_path``, ``split``, ``patient_id``; optional
            ``label``).

    Returns:
        ``clusters`` (``cluster_id``, ``films``, ``splits``, ``labels``, ``rel_paths``),
        ``patients`` (``patient_id``, ``films``, ``splits``) and ``summary`` counts.
    """
    from cxrlib.data.splits import leaking_ids  # noqa: PLC0415

    split_of = dict(zip(split_table["rel_path"].astype(str), split_table["split"].astype(str)))
    c = clusters.assign(split=clusters["rel_path"].map(split_of)).dropna(subset=["split"])
    leaks = leaking_ids(c["cluster_id"].astype(str), c["split"])
    rows, test_with_train = [], 0
    for cid, films, splits in leaks.itertuples(index=False):
        g = c[c["cluster_id"].astype(str) == cid]
        rows.append((int(cid), films, splits, ", ".join(sorted(set(g["label"]))), " | ".join(g["rel_path"])))
        if "train" in splits:
            test_with_train += int((g["split"] == "test").sum())
    leaking = pd.DataFrame(rows, columns=["cluster_id", "films", "splits", "labels", "rel_paths"])
    leaking = leaking.sort_values("cluster_id").reset_index(drop=True)
    pat = leaking_ids(split_table["patient_id"], split_table["split"]).rename(columns={"id": "patient_id"})
    return {"clusters": leaking, "patients": pat,
            "summary": {"leaking_clusters": len(leaking), "leaking_cluster_films": int(leaking["films"].sum()),
                        "test_films_with_train_duplicate": test_with_train,
                        "leaking_patients": len(pat), "leaking_patient_films": int(pat["films"].sum())}}


def _text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)
