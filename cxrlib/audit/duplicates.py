"""Near-duplicate films and the leakage they cause across a run's splits.

Method (measured on ../shared/datasets/cxr3, 1800 films; see ``bench/audit.py``):

1. **Candidates by hash.** Every film's pHash, dHash and 24 window pHashes come from one cached
   pass (:func:`cxrlib.audit.film_scan.scan_films`). A pair is a candidate when its pHashes
   differ in at most ``max_phash`` bits, its dHashes in at most ``max_dhash`` bits, or one film's
   pHash is within ``max_window`` bits of a sub-window of the other (a crop). Rescaled and
   re-encoded copies differ by 0-2 pHash bits; distinct films of different patients by 26 bits
   at the median and rarely under 8. Chest films all share the same coarse layout, so a dHash
   alone is weak: it is only trusted at a very small distance.
2. **Confirmation.** Hashes only propose pairs; two checks decide:

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

from cxrlib.audit.film_scan import WINDOWS, FilmSignatures, hamming, scan_films

COARSE = 64
# Measured on cxr3 (300 distinct candidate pairs + the hardest one found; 90 planted crops of
# 8-10%, some re-encoded at JPEG quality 25): the coarse 64 px match (sigma 3) gives cropped
# copies >= 0.76 and distinct films a median of 0.46; the fine 128 px match (sigma 1, shares
# refined in 1.25% steps) then gives cropped copies a median of 0.74-0.81 (crops anchored at
# an edge or the centre >= 0.69; off-grid crops down to 0.45) and distinct films up to 0.49 over
# all 1800 films; distinct 256 px synthetic drawings of one class up to 0.56. The threshold 0.6
# favours precision: some off-grid or heavily re-encoded crops are missed.
# Copies: fine-detail correlation of rescaled cxr3 copies >= 0.91, JPEG quality 20 re-encodes
# median 0.935 (min 0.77), distinct cxr3 candidates <= 0.48, distinct synthetic films <= 0.82.
COARSE_CROP_GATE = 0.65
FINE_SIGMA = 1.0
PAIR_COLUMNS = ["rel_path_a", "rel_path_b", "label_a", "label_b", "kind", "phash_distance",
                "dhash_distance", "window_distance", "correlation", "crop_score"]
CLUSTER_COLUMNS = ["cluster_id", "rel_path", "path", "label", "patient_id", "source", "cluster_size"]


def thumb_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally sized thumbnails (1 = identical up to contrast)."""
    x = a.astype(np.float64).ravel() - a.mean()
    y = b.astype(np.float64).ravel() - b.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def detail_correlation(a: np.ndarray, b: np.ndarray, sigma: float = 1.0) -> float:
    """Correlation of the fine detail (image minus its Gaussian blur) of two equal-size thumbnails.

    Two films of the same layout (two patients, or two synthetic drawings) correlate in their
    coarse structure; only a copy also repeats the fine texture and noise.
    """
    return thumb_correlation(_high_pass(a, sigma), _high_pass(b, sigma))


def _high_pass(img: np.ndarray, sigma: float) -> np.ndarray:
    f = img.astype(np.float32)
    return f - cv2.GaussianBlur(f, (0, 0), sigma)


def crop_match(crop: np.ndarray, whole: np.ndarray,
               shares: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
               sigma: float = 3.0) -> tuple[float, float, float]:
    """How well thumbnail ``crop`` matches a sub-window of thumbnail ``whole``.

    Both are films squashed to a square; a crop keeping share ``(cx, cy)`` of the original's
    sides therefore appears in ``whole`` resized to ``(cx * S, cy * S)``. The best normalised
    cross-correlation (``TM_CCOEFF_NORMED``) over the candidate shares and all positions is
    taken on high-pass-filtered images (minus a Gaussian blur of ``sigma`` pixels), so the
    layout every chest film shares does not count as a match.

    Args:
        crop: square grey thumbnail of the possibly cropped film.
        whole: square grey thumbnail (same size) of the possibly original film.
        shares: candidate x and y shares; default 0.7-1.0 in steps of 0.05 on both axes.
        sigma: high-pass scale in pixels of ``whole``.

    Returns:
        ``(score, cx, cy)``: the best score in [-1, 1] and the shares where it was found.
    """
    size = whole.shape[0]
    if shares is None:
        grid = tuple(np.round(np.arange(0.7, 1.001, 0.05), 3))
        shares = (grid, grid)
    target = _high_pass(whole, sigma)
    best = (-1.0, 1.0, 1.0)
    for cx in shares[0]:
        for cy in shares[1]:
            tw, th = max(8, round(cx * size)), max(8, round(cy * size))
            if tw > size or th > size:
                continue
            template = _high_pass(cv2.resize(crop, (tw, th), interpolation=cv2.INTER_AREA),
                                  sigma * min(cx, cy))
            if not np.ptp(template) > 0:
                continue
            score = float(cv2.matchTemplate(target, template, cv2.TM_CCOEFF_NORMED).max())
            if score > best[0]:
                best = (score, cx, cy)
    return best


def _hinted_shares(share: float) -> tuple[float, ...]:
    return tuple(s for s in (share - 0.05, share - 0.025, share, share + 0.025, share + 0.05) if s <= 1.0)


def _confirm_crop(part_small: np.ndarray, whole_small: np.ndarray, part: np.ndarray,
                  whole: np.ndarray, shares) -> float:
    """Coarse match at 64 px over the hinted shares, refined at 128 px where it is promising;
    a pair that fails the coarse gate scores ``nan`` (not confirmed)."""
    coarse, cx, cy = crop_match(part_small, whole_small, shares, sigma=3.0)
    if coarse < COARSE_CROP_GATE:
        return float("nan")
    steps = np.arange(-0.025, 0.026, 0.0125)
    near = (tuple(c for c in cx + steps if c <= 1.0), tuple(c for c in cy + steps if c <= 1.0))
    return crop_match(part, whole, near, sigma=FINE_SIGMA)[0]


def find_duplicate_pairs(manifest: pd.DataFrame, *, signatures: FilmSignatures | None = None,
                         fingerprint: str | None = None, max_phash: int = 8, max_dhash: int = 2,
                         max_window: int = 6, min_correlation: float = 0.98,
                         min_detail: float = 0.88, min_crop_score: float = 0.6,
                         progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Confirmed near-duplicate pairs of films (see the module docstring for the method).

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
        One row per confirmed pair: :data:`PAIR_COLUMNS`; ``kind`` is ``"copy"`` or ``"crop"``.
    """
    sig = signatures or scan_films(manifest, fingerprint=fingerprint, progress=progress)
    n = len(sig.rel_paths)
    labels = manifest["label"].astype(str).tolist() if "label" in manifest else [""] * n
    small = np.stack([cv2.resize(t, (COARSE, COARSE), interpolation=cv2.INTER_AREA)
                      for t in sig.thumbs]) if n else np.zeros((0, COARSE, COARSE), np.uint8)
    rows = []
    for start in range(0, n, 256):
        stop = min(n, start + 256)
        ph = hamming(sig.phash[start:stop, None], sig.phash[None, :])
        dh = hamming(sig.dhash[start:stop, None], sig.dhash[None, :])
        # film i whole vs windows of film j, and windows of i vs film j whole
        w_ij = hamming(sig.phash[start:stop, None, None], sig.window_phash[None, :, :])
        w_ji = hamming(sig.window_phash[start:stop, None, :], sig.phash[None, :, None])
        win = np.minimum(w_ij.min(-1), w_ji.min(-1))
        cand = (ph <= max_phash) | (dh <= max_dhash) | (win <= max_window)
        for r, j in zip(*np.nonzero(cand)):
            i = start + r
            if j <= i:
                continue
            corr = thumb_correlation(small[i], small[j])
            kind, crop = None, float("nan")
            if corr >= min_correlation and detail_correlation(sig.thumbs[i], sig.thumbs[j]) >= min_detail:
                kind = "copy"
            elif win[r, j] <= max_window:
                if w_ij[r, j].min() <= w_ji[r, j].min():  # i is the crop of j
                    part, whole, k = i, j, int(w_ij[r, j].argmin())
                else:
                    part, whole, k = j, i, int(w_ji[r, j].argmin())
                (sx, _), (sy, _) = WINDOWS[k]
                crop = _confirm_crop(small[part], small[whole], sig.thumbs[part], sig.thumbs[whole],
                                     (_hinted_shares(sx), _hinted_shares(sy)))
                if crop >= min_crop_score:
                    kind = "crop"
            if kind:
                rows.append((sig.rel_paths[i], sig.rel_paths[j], labels[i], labels[j], kind,
                             int(ph[r, j]), int(dh[r, j]), int(win[r, j]), corr, crop))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


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
