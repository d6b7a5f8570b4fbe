"""Candidate near-duplicate pairs from film hashes, found through a hash index, not all pairs.

A pair of films is a candidate when (see :mod:`cxrlib.data.duplicates`) its pHashes differ in
at most ``max_phash`` bits, its dHashes in at most ``max_dhash`` bits, or one film's pHash is
within ``max_window`` bits of a sub-window pHash of the other. Each of the three is a Hamming
range search (:mod:`cxrlib.data.hash_index`), near-linear in the number of films.

Films whose 128 px thumbnails are byte-identical (hard links, exact copies) have identical
hashes and identical confirmation results, so the search and the confirmation run once per
distinct *content*; the pairs found are then listed for every film carrying it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from cxrlib.data.film_scan import FilmSignatures
from cxrlib.data.hash_index import near_matches, near_pairs


@dataclass
class Candidates:
    """Candidate pairs of distinct contents, with the distances the confirmation needs.

    Attributes:
        a, b: content numbers (``a < b``), indices into ``Contents.first``.
        phash, dhash: Hamming distances of the whole-film hashes.
        w_ab, k_ab: the smallest distance of ``a``'s pHash to a window pHash of ``b``, and
            that window's index; ``w_ba``, ``k_ba`` the same the other way round.
    """

    a: np.ndarray
    b: np.ndarray
    phash: np.ndarray
    dhash: np.ndarray
    w_ab: np.ndarray
    k_ab: np.ndarray
    w_ba: np.ndarray
    k_ba: np.ndarray


@dataclass
class Contents:
    """Films grouped by identical thumbnail.

    Attributes:
        of_film: content number of each film (``-1`` for a film left out of the search).
        first: the first film (row) of each content, increasing.
        films: the rows of each content, in row order.
    """

    of_film: np.ndarray
    first: np.ndarray
    films: list[np.ndarray]


def group_contents(sig: FilmSignatures) -> Contents:
    """Number the distinct thumbnails of the decodable films, in order of first appearance."""
    skipped = {s["rel_path"] for s in sig.skipped}
    seen: dict[bytes, int] = {}
    of_film = np.full(len(sig.rel_paths), -1, np.int64)
    for i, (rel, thumb) in enumerate(zip(sig.rel_paths, sig.thumbs)):
        if rel in skipped:  # an undecodable film has no pixels to match
            continue
        key = hashlib.blake2b(np.ascontiguousarray(thumb).tobytes(), digest_size=16).digest()
        of_film[i] = seen.setdefault(key, len(seen))
    rows = np.flatnonzero(of_film >= 0)
    order = rows[np.argsort(of_film[rows], kind="stable")]
    bounds = np.searchsorted(of_film[order], np.arange(len(seen) + 1))
    films = [order[bounds[c]:bounds[c + 1]] for c in range(len(seen))]
    first = np.array([f[0] for f in films], np.int64)
    return Contents(of_film, first, films)


def _window_distance(ph: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.bitwise_count(np.bitwise_xor(ph[:, None], windows))
    return d.min(axis=1).astype(np.int64), d.argmin(axis=1).astype(np.int64)


def candidate_pairs(sig: FilmSignatures, contents: Contents, *, max_phash: int, max_dhash: int,
                    max_window: int) -> Candidates:
    """The candidate pairs of distinct contents (see the module docstring)."""
    reps = contents.first
    ph, dh, win = sig.phash[reps], sig.dhash[reps], sig.window_phash[reps]
    k = win.shape[1] if win.ndim == 2 else 0
    found = [np.stack(near_pairs(ph, max_phash)), np.stack(near_pairs(dh, max_dhash))]
    if k:
        q, hit = near_matches(ph, win.ravel(), max_window)
        owner = hit // k
        found.append(np.stack([np.minimum(q, owner), np.maximum(q, owner)])[:, q != owner])
    pairs = np.unique(np.concatenate(found, axis=1), axis=1) if len(reps) else np.zeros((2, 0), np.int64)
    a, b = pairs[0].astype(np.int64), pairs[1].astype(np.int64)
    if k:
        w_ab, k_ab = _window_distance(ph[a], win[b])
        w_ba, k_ba = _window_distance(ph[b], win[a])
    else:
        w_ab = w_ba = np.full(len(a), 99, np.int64)
        k_ab = k_ba = np.zeros(len(a), np.int64)
    distance = lambda h: np.bitwise_count(np.bitwise_xor(h[a], h[b])).astype(np.int64)  # noqa: E731
    return Candidates(a, b, distance(ph), distance(dh), w_ab, k_ab, w_ba, k_ba)


def self_window(sig: FilmSignatures, contents: Contents) -> tuple[np.ndarray, np.ndarray]:
    """For each content, the distance of its pHash to its own nearest window pHash (and which):
    what a pair of two films of the same content compares."""
    reps = contents.first
    if sig.window_phash.ndim != 2 or not len(reps):
        return np.full(len(reps), 99, np.int64), np.zeros(len(reps), np.int64)
    return _window_distance(sig.phash[reps], sig.window_phash[reps])
