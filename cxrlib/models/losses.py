"""Class weights for the class-weighted loss of the small CNN pipeline (published rule).

The loss itself is Keras's standard categorical cross-entropy with these weights given to
``fit(class_weight=...)``: per sample ``-w_y log p_y``, averaged over the batch, which for the
binary model's ``[s, 1 - s]`` output is the published weighted binary cross-entropy
``-(w_pos y log s + w_neg (1 - y) log(1 - s))``. Standard pieces only, so a saved model loads in
plain Keras without this package.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def class_weights(labels: Sequence[str] | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Per-class loss weights from the frequency of the *other* classes.

    ``w_c = (1 - P(c)) / (K - 1)``, ``P(c)`` the share of ``labels`` in class ``c``, ``K`` the
    number of classes. For the binary task this is exactly the published rule
    ``w_pos = P(negative)``, ``w_neg = P(positive)``; for K classes it is the mean frequency of
    the other classes, so a rare class weighs more (weights sum to 1; balanced data gives every
    class ``1 / K``, which only rescales the loss).

    Args:
        labels: class names of the training images.
        classes: the task's classes, in output order.

    Returns:
        ``float32 (K,)`` weights in ``classes`` order.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("class_weights needs at least one label")
    share = np.array([(labels == c).mean() for c in classes], dtype=np.float64)
    return ((1.0 - share) / (len(classes) - 1)).astype(np.float32)

