"""Per-film records of a run's predictions, for sample grids (most confident errors first)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cxrlib.evaluation.core import decide, from_predictions


def sample_records(predictions: pd.DataFrame, classes: Sequence[str], *, only_errors: bool = False,
                   threshold: float | None = None) -> pd.DataFrame:
    """One row per image for a sample-prediction grid, most confident errors first.

    The prediction is recomputed from the ``p_<class>`` columns with the same rule as
    :func:`evaluate` (argmax, or ``threshold`` for the binary task), so the grid agrees with the
    metrics shown beside it. Confidence is the probability of the predicted class.

    Args:
        predictions: a run's predictions (``path``, ``label``, ``p_<class>``...; ``rel_path``
            and ``patient_id`` are carried along when present).
        classes: the task's classes.
        only_errors: keep misclassified images only.
        threshold: as for :func:`evaluate`.

    Returns:
        Columns ``path``, [``rel_path``, ``patient_id``,] ``true``, ``predicted``,
        ``confidence``, ``correct`` and the ``p_<class>`` columns; errors first, each part by
        confidence descending (ties by path).
    """
    y, probs, _ = from_predictions(predictions, classes)
    pred = decide(probs, threshold)
    names = np.asarray(classes, dtype=object)
    paths_ = predictions["path"].astype(str).to_numpy() if "path" in predictions.columns else [""] * y.size
    out = pd.DataFrame({"path": paths_})
    for col in ("rel_path", "patient_id"):
        if col in predictions.columns:
            out[col] = predictions[col].to_numpy()
    out["true"] = names[y]
    out["predicted"] = names[pred]
    out["confidence"] = probs[np.arange(y.size), pred]
    out["correct"] = y == pred
    for i, name in enumerate(classes):
        out[f"p_{name}"] = probs[:, i]
    if only_errors:
        out = out[~out["correct"]]
    out = out.sort_values(["correct", "confidence", "path"], ascending=[True, False, True], kind="stable")
    return out.reset_index(drop=True)

