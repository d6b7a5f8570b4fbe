"""Near neighbours of 64-bit hashes by Hamming distance, without comparing every pair.

Multi-index hashing (Norouzi, Punjani & Fleet, "Fast search in Hamming space with multi-index
hashing", CVPR 2012): the 64 bits are cut into ``m`` disjoint sub-strings. If two hashes differ
in at most ``r`` bits, then by the pigeonhole principle at least one sub-string differs in at
most ``r // m`` bits. So each sub-string is a sorted key table, every query probes the keys
within ``r // m`` bits of its own sub-string in each table, and only the hashes found that way
are compared in full. The result is exact: every pair within ``r`` bits is found, none beyond.

Two details make it work on chest films:

* their hash bits are far from uniform (every film has the same layout, so some dHash bits are
  1 in 97 % of films); sub-strings are therefore dealt bits in order of falling entropy, so each
  gets a fair share of the informative ones;
* identical hash values (exact copies, hard links) form one table entry with a list of the
  films that carry it, so a dataset holding each film twelve times costs one search plus the
  (unavoidable) listing of the pairs found.

The sub-string width follows the table size (about ``log2(n)`` bits, as the paper advises), so a
probe finds few false candidates however large the set.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

_BITS = 64


def _bit_matrix(values: np.ndarray) -> np.ndarray:
    """``uint8 (N, 64)``: bit ``b`` of each value."""
    shifts = np.arange(_BITS, dtype=np.uint64)
    return ((values.astype(np.uint64)[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)


def _substrings(bits: np.ndarray, m: int) -> list[np.ndarray]:
    """Bit positions of ``m`` sub-strings, dealt in snake order of falling bit entropy."""
    p = bits.mean(axis=0) if len(bits) else np.full(_BITS, 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nan_to_num(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    parts: list[list[int]] = [[] for _ in range(m)]
    for rank, bit in enumerate(np.argsort(-entropy, kind="stable")):
        k = rank % (2 * m)
        parts[k if k < m else 2 * m - 1 - k].append(int(bit))
    return [np.array(sorted(part), dtype=np.int64) for part in parts]


def _keys(bits: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return (bits[:, positions].astype(np.int64) << np.arange(len(positions), dtype=np.int64)).sum(axis=1)


def _flip_masks(width: int, radius: int) -> np.ndarray:
    """Every ``width``-bit mask with at most ``radius`` bits set (the probes of one table)."""
    masks = [0]
    for k in range(1, radius + 1):
        masks += [sum(1 << b for b in combo) for combo in itertools.combinations(range(width), k)]
    return np.array(masks, dtype=np.int64)


def _n_substrings(n: int, radius: int) -> int:
    """About log2(n) bits per sub-string, and never more sub-strings than ``radius + 1``."""
    return int(max(1, min(radius + 1, round(_BITS / max(1.0, math.log2(max(n, 2)))))))


def _unique_pairs(queries: np.ndarray, base: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """All ``(q, b)`` index pairs of two arrays of DISTINCT values within ``radius`` bits."""
    if not len(queries) or not len(base):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    m = _n_substrings(len(base), radius)
    q_bits, b_bits = _bit_matrix(queries), _bit_matrix(base)
    found = []
    for positions in _substrings(b_bits, m):
        b_keys, q_keys = _keys(b_bits, positions), _keys(q_bits, positions)
        order = np.argsort(b_keys, kind="stable")
        table = b_keys[order]
        for mask in _flip_masks(len(positions), radius // m):
            probe = q_keys ^ mask
            lo = np.searchsorted(table, probe, "left")
            count = np.searchsorted(table, probe, "right") - lo
            total = int(count.sum())
            if not total:
                continue
            qi = np.repeat(np.arange(len(queries), dtype=np.int64), count)
            offset = np.repeat(lo - (np.cumsum(count) - count), count)
            bi = order[np.arange(total, dtype=np.int64) + offset]
            close = np.bitwise_count(queries[qi] ^ base[bi]) <= radius
            found.append(qi[close] * len(base) + bi[close])
    keys = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    return keys // len(base), keys % len(base)


def _postings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values, and for each the indices carrying it: ``(uniq, order, starts)`` such
    that ``order[starts[u]:starts[u + 1]]`` are the positions of ``uniq[u]``."""
    uniq, inverse = np.unique(values, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    return uniq, order, starts


def _expand(pu: np.ndarray, pv: np.ndarray, post_u, post_v) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(i, j)`` with ``i`` carrying value ``pu[k]`` and ``j`` carrying ``pv[k]``."""
    _, order_u, starts_u = post_u
    _, order_v, starts_v = post_v
    nu = starts_u[pu + 1] - starts_u[pu]
    nv = starts_v[pv + 1] - starts_v[pv]
    reps = nu * nv
    k = np.repeat(np.arange(len(pu), dtype=np.int64), reps)
    within = np.arange(int(reps.sum()), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
    a = order_u[starts_u[pu[k]] + within // nv[k]]
    b = order_v[starts_v[pv[k]] + within % nv[k]]
    return a, b


def near_pairs(hashes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of positions ``i < j`` whose hashes differ in at most ``radius`` bits.

    Args:
        hashes: ``uint64 (N,)``.
        radius: the largest Hamming distance kept.

    Returns:
        ``(i, j)``: int64 arrays, sorted by ``i`` then ``j``.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    post = _postings(hashes)
    pu, pv = _unique_pairs(post[0], post[0], radius)
    keep = pu <= pv  # each pair of distinct values once; a value with itself for its copies
    a, b = _expand(pu[keep], pv[keep], post, post)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keys = np.unique(lo[lo < hi] * max(len(hashes), 1) + hi[lo < hi])
    return keys // max(len(hashes), 1), keys % max(len(hashes), 1)


def near_matches(queries: np.ndarray, base: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(q, b)`` with ``queries[q]`` within ``radius`` bits of ``base[b]``.

    Args:
        queries: ``uint64 (Q,)``.
        base: ``uint64 (B,)``.
        radius: the largest Hamming distance kept.

    Returns:
        ``(q, b)``: int64 arrays, sorted by ``q`` then ``b``.
    """
    queries = np.asarray(queries, dtype=np.uint64)
    base = np.asarray(base, dtype=np.uint64)
    post_q, post_b = _postings(queries), _postings(base)
    pu, pv = _unique_pairs(post_q[0], post_b[0], radius)
    q, b = _expand(pu, pv, post_q, post_b)
    keys = np.unique(q * max(len(base), 1) + b)
    return keys // max(len(base), 1), keys % max(len(base), 1)
