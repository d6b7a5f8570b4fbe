"""Which test films a reviewer should look at first, and how far the reviewing has come."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cxrlib.evaluation.core import test_rows
from cxrlib.evaluation.records import sample_records


def review_queue(predictions: pd.DataFrame, classes: Sequence[str], *,
                 in_lung_share: pd.DataFrame | None = None,
                 threshold: float | None = None) -> pd.DataFrame:
    """A run's test films in the order most worth a radiologist's time.

    First the errors, most confident first (:func:`cxrlib.evaluation.sample_records`: a
    confident error is the likeliest label problem or shortcut). Then, when an audit measured
    where the CAM falls (``in_lung_share``), the correct films whose CAM lies least inside the
    lungs: right for what may be the wrong reason. Then the rest, most confident first.

    Args:
        predictions: the run's predictions; only ``split == "test"`` rows are queued when the
            column is there.
        classes: the task's classes.
        in_lung_share: optional ``rel_path`` and ``in_lung_share`` columns (the audit's
            attention table); films it does not cover keep the confidence order after the others.
        threshold: the binary task's decision threshold, as for the metrics.

    Returns:
        The columns of :func:`sample_records` plus ``in_lung_share`` (NaN when unknown),
        ``position`` (1-based) and ``reason`` (why the film is where it is).
    """
    records = sample_records(test_rows(predictions), classes, threshold=threshold)
    share = pd.Series(np.nan, index=records.index)
    if in_lung_share is not None and len(in_lung_share) and "rel_path" in records:
        lookup = in_lung_share.drop_duplicates("rel_path").set_index("rel_path")["in_lung_share"]
        share = records["rel_path"].map(lookup).astype(float)
    records["in_lung_share"] = share
    errors = records[~records["correct"]]
    hits = records[records["correct"]]
    measured = hits[hits["in_lung_share"].notna()].sort_values("in_lung_share", kind="stable")
    rest = hits[hits["in_lung_share"].isna()]
    queue = pd.concat([errors, measured, rest], ignore_index=True)
    queue["position"] = np.arange(1, len(queue) + 1)
    queue["reason"] = _reasons(queue)
    return queue


def _reasons(queue: pd.DataFrame) -> list[str]:
    out = []
    for row in queue.itertuples():
        if not row.correct:
            out.append(f"error: {row.true} called {row.predicted} at {row.confidence:.0%}")
        elif np.isfinite(row.in_lung_share):
            out.append(f"correct, {row.in_lung_share:.0%} of the CAM inside the lungs")
        else:
            out.append(f"correct at {row.confidence:.0%}")
    return out


def review_progress(queue: pd.DataFrame, reviews: pd.DataFrame,
                    reviewer: str | None = None) -> dict:
    """How many films of the queue have been reviewed.

    Args:
        queue: :func:`review_queue` of a run.
        reviews: that run's reviews.
        reviewer: also count this reviewer's own films.

    Returns:
        ``queue`` (films in it), ``reviewed`` (films with at least one review),
        ``mine`` (films ``reviewer`` reviewed; ``None`` without a reviewer), ``reviewers``.
    """
    films = set(queue["rel_path"].astype(str)) if "rel_path" in queue else set()
    seen = reviews[reviews["rel_path"].astype(str).isin(films)] if len(reviews) else reviews
    mine = None
    if reviewer is not None:
        mine = int(seen.loc[seen["reviewer"] == reviewer, "rel_path"].nunique()) if len(seen) else 0
    return {"queue": len(films), "reviewed": int(seen["rel_path"].nunique()) if len(seen) else 0,
            "mine": mine, "reviewers": int(seen["reviewer"].nunique()) if len(seen) else 0}
