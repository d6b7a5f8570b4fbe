"""Source balancing: every (class, source) cell of the training rows weighs the same in the loss.

In a multi-source set the classes are unevenly spread over the sources (in cxr3 every COVID-19
film comes from two repositories, the adult normals from one), so the loss is dominated by the
largest cells and a model is rewarded for fitting each big source's look. Weighting every
(class, source) cell equally is the group re-weighting of the group-robustness literature
(Sagawa et al., "Distributionally robust neural networks for group shifts", ICLR 2020, uses
(class, attribute) groups; Idrissi et al., "Simple data balancing achieves competitive
worst-group-accuracy", CLeaR 2022, show that plain re-weighting / sub-sampling of those groups
is a strong baseline).

A training row in a cell of ``n`` rows, among ``K`` non-empty cells and ``N`` rows, weighs
``N / (K * n)``: each cell sums to ``N / K``, and the weights average 1, so the loss keeps its
scale (the learning rate means the same). Sources come from the one rule
:func:`cxrlib.data.identity.film_sources` (the per-source table and leave-one-source-out use it).
"""
from __future__ import annotations

import numpy as np


def cell_weights(labels, sources) -> np.ndarray:
    """``float32 (N,)``: the weight of each training row (see the module docstring)."""
    labels = np.asarray(labels, dtype=object).astype(str)
    sources = np.asarray(sources, dtype=object).astype(str)
    if labels.shape != sources.shape:
        raise ValueError(f"{len(labels)} labels for {len(sources)} sources")
    if not len(labels):
        return np.zeros(0, np.float32)
    cells = np.char.add(np.char.add(labels.astype("U"), "\x00"), sources.astype("U"))
    _, code, counts = np.unique(cells, return_inverse=True, return_counts=True)
    return (len(labels) / (len(counts) * counts[code])).astype(np.float32)


def training_weights(tcfg, labels_onehot: np.ndarray, sources, train_rows: np.ndarray,
                     copies: int) -> np.ndarray | None:
    """The per-row loss weights of a head's training rows (repeated for the ``copies`` feature
    copies, which follow the originals in the same order), or None without ``source_balance``."""
    if not getattr(tcfg, "source_balance", False):
        return None
    if sources is None:
        raise ValueError("source balancing needs each film's source")
    w = cell_weights(np.asarray(labels_onehot)[train_rows].argmax(1), np.asarray(sources)[train_rows])
    return np.tile(w, copies)
