"""Splits: grouped splits never share a group and stay stratified; random splits are the
published stratified ones; leakage is counted correctly."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlib.core.config import SplitConfig
from cxrlib.data.splits import group_keys, leakage, split_manifest, split_table, val_is_test


def uneven_manifest(seed: int, n_per_class=(300, 200, 100)) -> pd.DataFrame:
    """Classes of different sizes; groups of geometric sizes (1 to ~15 films), some huge."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, n in zip(("COVID-19", "Normal", "Viral Pneumonia"), n_per_class):
        i = g = 0
        while i < n:
            size = int(min(n - i, rng.geometric(0.35) if rng.random() > 0.03 else 20))
            for _ in range(size):
                rows.append({"rel_path": f"{label}/{i}.png", "label": label,
                             "patient_id": f"{label[:3]}-p{g}", "group_id": f"{label[:3]}-g{g}"})
                i += 1
            g += 1
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # scrambled order


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 2024])
@pytest.mark.parametrize("fractions", [(0.2, 0.1), (0.2, 0.0), (0.1, 0.1)])
def test_grouped_split_never_shares_a_group_and_is_stratified(seed, fractions):
    manifest = uneven_manifest(seed)
    cfg = SplitConfig(kind="grouped", test_fraction=fractions[0], val_fraction=fractions[1], seed=seed)
    split = split_manifest(manifest, cfg)

    assert split.index.equals(manifest.index)
    sides_per_group = pd.DataFrame({"g": manifest["group_id"], "s": split}).groupby("g")["s"].nunique()
    assert sides_per_group.max() == 1
    expected = {"train": 1 - sum(fractions), "val": fractions[1], "test": fractions[0]}
    if fractions[1] == 0:
        assert "val" not in set(split)
    share = pd.crosstab(manifest["label"], split, normalize="index")
    for side, target in expected.items():
        if target == 0:
            continue
        # Each class's share on each side within 3 points of the target (groups are indivisible).
        np.testing.assert_allclose(share[side].to_numpy(), target, atol=0.03)
    assert split.attrs["val_is_test"] is (fractions[1] == 0)


def test_grouped_split_is_deterministic_and_independent_of_row_order():
    manifest = uneven_manifest(3)
    cfg = SplitConfig(seed=11)
    first = split_manifest(manifest, cfg)
    shuffled = manifest.sample(frac=1.0, random_state=99)
    again = split_manifest(shuffled, cfg)
    pd.testing.assert_series_equal(first, again.loc[first.index])
    other_seed = split_manifest(manifest, SplitConfig(seed=12))
    assert (other_seed != first).any()


def test_group_keys_join_every_film_that_shares_any_id():
    # r0 and r1 share patient p1 under two group ids; r2 shares g2 with r1; r3 has no id.
    manifest = pd.DataFrame({"rel_path": ["r0", "r1", "r2", "r3", "r4"], "label": ["A"] * 5,
                             "patient_id": ["p1", "p1", "", None, "p9"],
                             "group_id": ["g1", "g2", "g2", None, ""],
                             "dup_cluster": ["", "", "", "", ""]})
    keys = group_keys(manifest)
    assert keys[0] == keys[1] == keys[2] == "group_id:g1"  # the smallest id of the component
    assert keys[3] == "image:r3" and keys[4] == "patient_id:p9"
    # A duplicate cluster joins otherwise unrelated films.
    joined = group_keys(manifest.assign(dup_cluster=["", "", "", "c7", "c7"]))
    assert joined[3] == joined[4] and joined[4] != keys[4]
    # Keys do not depend on the row order.
    shuffled = group_keys(manifest.iloc[[4, 2, 0, 3, 1]])
    assert shuffled.sort_index().tolist() == keys.tolist()


def test_a_patient_with_two_group_ids_never_straddles_the_grouped_split():
    # 40 patients, each with two films under two different group ids (as when a source's
    # duplicate groups and its patient ids disagree): the old key (group_id first) split them.
    rows = [{"rel_path": f"{p}-{k}", "label": "AB"[p % 2], "patient_id": f"p{p}",
             "group_id": f"g{p}-{k}"} for p in range(40) for k in range(2)]
    manifest = pd.DataFrame(rows)
    split = split_manifest(manifest, SplitConfig(test_fraction=0.25, val_fraction=0.25, seed=3))
    sides = pd.DataFrame({"patient": manifest["patient_id"], "split": split}).groupby("patient")["split"].nunique()
    assert (sides == 1).all()
    assert leakage(manifest, split)["patients_on_several_sides"] == 0


def test_grouped_split_without_group_columns_splits_images():
    manifest = pd.DataFrame({"label": ["A"] * 50 + ["B"] * 50})
    split = split_manifest(manifest, SplitConfig(test_fraction=0.2, val_fraction=0.1))
    counts = pd.crosstab(manifest["label"], split)
    assert counts.loc["A"].to_dict() == {"test": 10, "train": 35, "val": 5}


def test_random_split_is_the_published_stratified_split():
    manifest = uneven_manifest(5)
    cfg = SplitConfig(kind="random", test_fraction=0.2, val_fraction=0.0, seed=42)
    split = split_manifest(manifest, cfg)
    pd.testing.assert_series_equal(split, split_manifest(manifest, cfg))
    # Independent computation: scikit-learn's stratified train_test_split with the same seed.
    from sklearn.model_selection import train_test_split

    _, test = train_test_split(np.arange(len(manifest)), test_size=0.2, random_state=42,
                               stratify=manifest["label"])
    assert set(np.flatnonzero(split.to_numpy() == "test")) == set(test)
    assert set(split) == {"train", "test"}
    assert val_is_test(cfg)

    three = split_manifest(manifest, SplitConfig(kind="random", test_fraction=0.1, val_fraction=0.1))
    counts = three.value_counts()
    assert abs(counts["val"] - 0.1 * len(manifest)) <= 2 and abs(counts["test"] - 0.1 * len(manifest)) <= 2
    # Images are independent: with groups of several films some group lands on two sides.
    assert leakage(manifest, three)["groups_on_several_sides"] > 0


def test_leakage_on_a_hand_made_manifest():
    manifest = pd.DataFrame({
        "label": ["A", "A", "A", "B", "B", "B", "B"],
        "patient_id": ["p1", "p1", "p2", "p3", "p3", "", "p4"],
        "group_id": ["g1", "g1", "g2", "g3", "g3", "g2", "g4"],
    })
    split = pd.Series(["train", "test", "train", "val", "val", "test", "test"])
    report = leakage(manifest, split)
    assert report["patients_on_several_sides"] == 1 and report["patient_examples"] == ["p1"]
    assert report["patient_images"] == 2
    assert report["patients_total"] == 4  # the empty id is not a patient
    assert report["groups_on_several_sides"] == 2
    assert report["group_examples"] == ["group_id:g1", "group_id:g2"]
    assert report["group_images"] == 4 and report["groups_total"] == 4


def test_split_table_columns():
    manifest = pd.DataFrame({"rel_path": ["a.png", "b.png"], "label": ["A", "B"],
                             "patient_id": ["p1", "p2"], "group_id": ["", "g2"]})
    table = split_table(manifest, pd.Series(["train", "test"]))
    assert list(table.columns) == ["rel_path", "split", "label", "patient_id", "group_id",
                                   "dup_cluster", "group"]
    assert table["group_id"].tolist() == ["", "g2"]
    assert table["group"].tolist() == ["patient_id:p1", "group_id:g2"]


def test_random_split_of_a_tiny_set_falls_back_to_unstratified():
    # 10 images, 3 classes: a 2-image test side cannot hold every class, which scikit-learn's
    # stratified split refuses with a ValueError; the split must still be made.
    manifest = pd.DataFrame({"label": list("AABBCCAABB")})
    split = split_manifest(manifest, SplitConfig(kind="random", test_fraction=0.2, val_fraction=0.1, seed=1))
    assert split.value_counts().to_dict() == {"train": 7, "test": 2, "val": 1}
    assert split.equals(split_manifest(manifest, SplitConfig(kind="random", test_fraction=0.2,
                                                             val_fraction=0.1, seed=1)))
