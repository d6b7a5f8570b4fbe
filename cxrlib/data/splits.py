"""Train / validation / test splits of a dataset manifest, and how much they leak.

Two kinds (see :class:`cxrlib.core.config.SplitConfig`):

* ``grouped`` (default): every *group* (``group_id``, else ``patient_id``, else the image alone)
  lands on exactly one side, and each side's class mix follows the whole set's. Groups are
  assigned greedily, largest first, each to the side whose per-class counts it brings closest
  to their targets (a chi-square-like cost), so the stratification holds even when group sizes
  are very uneven. Ties among equal-sized groups are broken by a shuffle seeded from the config.
* ``random``: the published random stratified split (scikit-learn ``train_test_split``), images
  treated as independent: one patient's films can fall on both sides. :func:`leakage` counts it.

With ``val_fraction == 0`` there is no validation side: as published, the test split doubles as
validation (:func:`val_is_test`), which makes its metrics optimistic.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.core.config import SplitConfig

SIDES = ("train", "val", "test")
SPLIT_COLUMNS = ("rel_path", "split", "label", "patient_id", "group_id")


def val_is_test(split_cfg: SplitConfig) -> bool:
    """True when there is no validation side and the test split doubles as validation."""
    return split_cfg.val_fraction == 0


def group_keys(manifest: pd.DataFrame) -> pd.Series:
    """The grouping key of every image: ``group_id``, else ``patient_id``, else the image itself.

    Args:
        manifest: a dataset manifest (columns ``group_id`` and/or ``patient_id`` optional).

    Returns:
        A string Series aligned with ``manifest.index``; images with no id get a unique key.
    """
    keys = pd.Series([""] * len(manifest), index=manifest.index, dtype=object)
    for column in ("patient_id", "group_id"):  # group_id wins where both are given
        if column in manifest.columns:
            values = manifest[column].fillna("").astype(str).str.strip()
            keys = values.where(values != "", keys)
    lonely = keys == ""
    keys[lonely] = [f"__image__{i}" for i in np.flatnonzero(lonely.to_numpy())]
    return keys.astype(str)


def split_manifest(manifest: pd.DataFrame, split_cfg: SplitConfig) -> pd.Series:
    """Assign every image of ``manifest`` to ``"train"``, ``"val"`` or ``"test"``.

    A pure function of the manifest's rows (their order does not matter for ``grouped``) and
    ``split_cfg``. With ``val_fraction == 0`` no image is ``"val"``.

    Args:
        manifest: rows with at least ``label``; ``group_id`` / ``patient_id`` used when grouped.
        split_cfg: kind, fractions and seed.

    Returns:
        A Series named ``split`` aligned with ``manifest.index``, with ``attrs["val_is_test"]``.

    Raises:
        ValueError: when the manifest has no ``label`` column.
    """
    if "label" not in manifest.columns:
        raise ValueError("manifest needs a 'label' column to be split")
    if len(manifest) == 0:
        result = pd.Series([], index=manifest.index, dtype=object, name="split")
    elif split_cfg.kind == "grouped":
        result = _grouped_split(manifest, split_cfg)
    else:
        result = _random_split(manifest, split_cfg)
    result.attrs["val_is_test"] = val_is_test(split_cfg)
    return result


def _grouped_split(manifest: pd.DataFrame, cfg: SplitConfig) -> pd.Series:
    labels = manifest["label"].astype(str).to_numpy()
    classes, label_idx = np.unique(labels, return_inverse=True)
    keys = group_keys(manifest).to_numpy()
    # Sort groups by name first so the result does not depend on the manifest's row order.
    group_names, group_idx = np.unique(keys, return_inverse=True)
    counts = np.zeros((len(group_names), len(classes)), np.int64)
    np.add.at(counts, (group_idx, label_idx), 1)

    fractions = np.array([1.0 - cfg.test_fraction - cfg.val_fraction, cfg.val_fraction, cfg.test_fraction])
    sides = np.flatnonzero(fractions > 0)
    targets = fractions[sides, None] * counts.sum(axis=0)[None, :]  # (sides, classes)
    filled = np.zeros_like(targets)

    rng = np.random.default_rng(cfg.seed)
    tie_break = rng.permutation(len(group_names))
    sizes = counts.sum(axis=1)
    order = np.lexsort((tie_break, -sizes))  # largest first, seeded order among equals
    assigned = np.empty(len(group_names), np.int64)
    weights = 1.0 / np.maximum(targets, 1e-9)
    for g in order:
        v = counts[g][None, :]
        # Change of sum((filled - target)^2 / target) if this group joins each side.
        delta = ((2.0 * (filled - targets) + v) * v * weights).sum(axis=1)
        best = int(np.argmin(delta))
        assigned[g] = sides[best]
        filled[best] += counts[g]
    names = np.array(SIDES, dtype=object)[assigned[group_idx]]
    return pd.Series(names, index=manifest.index, dtype=object, name="split")


def _random_split(manifest: pd.DataFrame, cfg: SplitConfig) -> pd.Series:
    from sklearn.model_selection import train_test_split  # noqa: PLC0415 (keeps import light)

    labels = manifest["label"].astype(str).to_numpy()
    positions = np.arange(len(manifest))

    def _cut(idx: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        strata = labels[idx]
        _, class_counts = np.unique(strata, return_counts=True)
        n_test = int(np.ceil(fraction * idx.size))  # as train_test_split rounds a fraction
        # Stratifying needs 2 images of every class and room for each class on both sides;
        # a tiny set that has not is split unstratified rather than failing.
        stratified = (class_counts.min() >= 2 and class_counts.size <= n_test
                      and class_counts.size <= idx.size - n_test)
        return train_test_split(idx, test_size=fraction, random_state=cfg.seed, shuffle=True,
                                stratify=strata if stratified else None)

    rest, test = _cut(positions, cfg.test_fraction)
    names = np.full(len(manifest), "train", dtype=object)
    names[test] = "test"
    if cfg.val_fraction > 0:
        _, val = _cut(rest, cfg.val_fraction / (1.0 - cfg.test_fraction))
        names[val] = "val"
    return pd.Series(names, index=manifest.index, dtype=object, name="split")


def split_table(manifest: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """The table a run stores as ``split.csv``: rel_path, split, label, patient_id, group_id.

    Missing id columns become empty strings; ``group_id`` falls back to ``patient_id``.
    """
    table = pd.DataFrame(index=manifest.index)
    table["rel_path"] = manifest["rel_path"] if "rel_path" in manifest else manifest.get("path", "")
    table["split"] = split.reindex(manifest.index)
    table["label"] = manifest["label"]
    for column in ("patient_id", "group_id"):
        table[column] = manifest[column].fillna("").astype(str) if column in manifest else ""
    table["group_id"] = table["group_id"].where(table["group_id"] != "", table["patient_id"])
    return table.reset_index(drop=True)


def _on_several_sides(ids: pd.Series, split: pd.Series, examples: int) -> tuple[int, list[str], int]:
    ids = ids.fillna("").astype(str)
    frame = pd.DataFrame({"id": ids, "split": split}).loc[ids != ""]
    n_sides = frame.groupby("id")["split"].nunique()
    leaky = n_sides[n_sides > 1].index
    images = int(frame["id"].isin(leaky).sum())
    return len(leaky), sorted(leaky)[:examples], images


def leakage(manifest: pd.DataFrame, split: pd.Series, *, examples: int = 5) -> dict:
    """How many patients and groups have images on more than one side of ``split``.

    Args:
        manifest: rows with ``patient_id`` and/or ``group_id`` (missing or empty ids are ignored).
        split: side of each row, aligned with ``manifest.index``.
        examples: how many example ids to list per kind.

    Returns:
        ``{"patients_on_several_sides", "patients_total", "patient_examples",
        "patient_images", "groups_on_several_sides", "groups_total", "group_examples",
        "group_images"}``; ``*_images`` counts the images of the leaking ids.
    """
    split = split.reindex(manifest.index)
    report: dict = {}
    for kind, column in (("patient", "patient_id"), ("group", "group_id")):
        if kind == "group":
            keys = group_keys(manifest)
            ids = keys.where(~keys.str.startswith("__image__"), "")
        else:
            ids = manifest[column] if column in manifest else pd.Series("", index=manifest.index)
        n, sample, images = _on_several_sides(ids, split, examples)
        total = int(ids.fillna("").astype(str).replace("", np.nan).nunique())
        report[f"{kind}s_on_several_sides"] = n
        report[f"{kind}s_total"] = total
        report[f"{kind}_examples"] = sample
        report[f"{kind}_images"] = images
    return report


def split_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Images per class (rows) and side (columns) of a split table, with totals."""
    counts = pd.crosstab(table["label"], table["split"], margins=True, margins_name="total")
    return counts.reindex(columns=[c for c in (*SIDES, "total") if c in counts.columns])
