"""Per-class summary of a dataset: images, patients, sizes, sources and formats."""
from __future__ import annotations

import pandas as pd


def dataset_stats(dataset) -> pd.DataFrame:
    """Per-class summary for the dataset page and the CLI.

    Returns:
        One row per class (model order): ``label``, ``images``, ``patients``, ``groups``,
        ``width_min/max/mean``, ``height_min/max/mean``, ``aspect_min/max`` (width / height),
        ``sources`` and ``formats`` (``"name (count)"`` joined by ``"; "``, most frequent first),
        and ``unreadable`` (files of that class in ``dataset.problems``).
    """
    m, p = dataset.manifest, dataset.problems
    labels = dataset.classes() + sorted(set(p["label"]) - set(dataset.classes()) - {"", None})
    rows = []
    for label in labels:
        sub = m[m["label"] == label]
        aspect = sub["width"] / sub["height"]
        rows.append({
            "label": label, "images": len(sub), "patients": sub["patient_id"].nunique(),
            "groups": sub["group_id"].nunique(),
            "width_min": sub["width"].min(), "width_max": sub["width"].max(),
            "width_mean": sub["width"].mean(), "height_min": sub["height"].min(),
            "height_max": sub["height"].max(), "height_mean": sub["height"].mean(),
            "aspect_min": aspect.min(), "aspect_max": aspect.max(),
            "sources": _counts(sub["source"]), "formats": _counts(sub["format"]),
            "unreadable": int((p["label"] == label).sum())})
    return pd.DataFrame(rows)


def _counts(values: pd.Series) -> str:
    counts = values.value_counts()
    return "; ".join(f"{name} ({n})" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
