"""Train / validation / test splits of a dataset manifest, and how much they leak.

Two kinds (see :class:`cxrlib.core.config.SplitConfig`):

* ``grouped`` (default): every *group* (:func:`cxrlib.data.identity.group_keys`: films joined
  by a shared patient id, group id or near-duplicate cluster) lands on exactly one side, and each side's class mix follows the whole set's. Groups are
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
from cxrlib.data.identity import ID_COLUMNS, group_keys

SIDES = ("train", "val", "test")
SPLIT_COLUMNS = ("rel_path", "split", "label", "patient_id", "group_id", "dup_cluster", "group")


def val_is_test(split_cfg: SplitConfig) -> bool:
    """True when there is no validation side and the test split doubles as validation."""
    return split_cfg.val_fraction == 0


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
    """The table a run stores as ``split.csv``: :data:`SPLIT_COLUMNS`.

    ``group`` is the group key the grouped split kept together; missing id columns become
    empty strings.
    """
    table = pd.DataFrame(index=manifest.index)
    table["rel_path"] = manifest["rel_path"] if "rel_path" in manifest else manifest.get("path", "")
    table["split"] = split.reindex(manifest.index)
    table["label"] = manifest["label"]
    for column in ID_COLUMNS:
        table[column] = manifest[column].fillna("").astype(str) if column in manifest else ""
    table["group"] = group_keys(manifest)
    return table.reset_index(drop=True)


def leaking_ids(ids: pd.Series, split: pd.Series) -> pd.DataFrame:
    """The ids whose films lie on more than one side of a split.

    Args:
        ids: one id per film (missing or empty ids are ignored).
        split: the side of each film, aligned with ``ids``.

    Returns:
        ``id``, ``films`` and ``splits`` (the sides, sorted, joined by ", "), most films first.
    """
    text = ids.astype("string").str.strip()
    frame = pd.DataFrame({"id": text, "split": split.reindex(ids.index)})
    frame = frame[frame["id"].notna() & (frame["id"] != "")]
    sides = frame.groupby("id")["split"].agg(lambda s: ", ".join(sorted(set(map(str, s)))))
    films = frame.groupby("id").size()
    out = pd.DataFrame({"id": sides.index.astype(str), "films": films.to_numpy(),
                        "splits": sides.to_numpy()})
    out = out[out["splits"].str.contains(",")]
    return out.sort_values(["films", "id"], ascending=[False, True]).reset_index(drop=True)


def leakage(table: pd.DataFrame, split: pd.Series, *, examples: int = 5) -> dict:
    """How many patients, groups and near-duplicate clusters have films on more than one side.

    Groups are :func:`cxrlib.data.identity.group_keys` (patients, sources' groups and duplicate
    clusters joined), exactly what the grouped split keeps together, so a grouped split reports
    zero here by construction and a random split reports what it leaks.

    Args:
        table: a manifest or split table (``patient_id``, ``group_id``, ``dup_cluster`` optional).
        split: side of each row, aligned with ``table.index``.
        examples: how many example ids to list per kind.

    Returns:
        For each kind (``patient``, ``group``, and ``cluster`` when ``dup_cluster`` is present):
        ``<kind>s_on_several_sides``, ``<kind>s_total``, ``<kind>_examples`` and
        ``<kind>_images`` (the films of the leaking ids).
    """
    split = split.reindex(table.index)
    keys = group_keys(table)
    kinds = {"patient": table.get("patient_id"), "group": keys.where(~keys.str.startswith("image:"))}
    if "dup_cluster" in table.columns:
        kinds["cluster"] = table["dup_cluster"]
    report: dict = {}
    for kind, ids in kinds.items():
        ids = pd.Series(None, index=table.index, dtype=object) if ids is None else ids
        leaks = leaking_ids(ids, split)
        text = ids.astype("string").str.strip()
        report[f"{kind}s_on_several_sides"] = len(leaks)
        report[f"{kind}s_total"] = int(text[text.notna() & (text != "")].nunique())
        report[f"{kind}_examples"] = sorted(leaks["id"])[:examples]
        report[f"{kind}_images"] = int(leaks["films"].sum())
    return report
