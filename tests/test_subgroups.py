"""Subgroup metrics: attributes, bins, flags, and CIs that match a direct bootstrap."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from cxrlib.core.classes import CLASSES
from cxrlib.evaluation.subgroups import (MISSING, attribute, attach_manifest, default_columns,
                                         subgroup_analysis)


def _frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Predictions of 3 classes, 1-3 films per patient, three sites of different accuracy."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    site = np.array(["north", "south", "west"])[rng.integers(0, 3, n)]
    good = rng.random(n) < np.where(site == "west", 0.45, 0.92)
    pred = np.where(good, labels, (labels + rng.integers(1, 3, n)) % 3)
    probs = rng.dirichlet(np.ones(3), n) * 0.5
    probs[np.arange(n), pred] += 0.5
    patients = [f"p{i // 2 if i % 5 else i * 7}" for i in range(n)]
    frame = pd.DataFrame({"rel_path": [f"f{i}.png" for i in range(n)], "label": np.array(CLASSES)[labels],
                          "pred": np.array(CLASSES)[pred], "patient_id": patients, "site": site})
    for j, c in enumerate(CLASSES):
        frame[f"p_{c}"] = probs[:, j]
    return frame


def _direct_ci(frame: pd.DataFrame, *, n_boot: int, seed: int) -> tuple[float, float]:
    """Patients drawn with replacement (multinomial counts, as documented), every film of a
    drawn patient along, accuracy of each resample, 2.5 / 97.5 percentiles: written out."""
    correct = (frame["label"] == frame["pred"]).to_numpy(float)
    _, codes = np.unique(frame["patient_id"].to_numpy(str), return_inverse=True)
    n_patients = codes.max() + 1
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_patients, np.full(n_patients, 1 / n_patients), size=n_boot)
    weights = counts[:, codes]
    acc = (weights * correct).sum(axis=1) / weights.sum(axis=1)
    return tuple(np.quantile(acc, [0.025, 0.975]))


def test_subgroup_cis_match_a_direct_bootstrap():
    frame = _frame()
    analysis = subgroup_analysis(frame, CLASSES, ["site"], n_boot=2000, seed=5)
    table = analysis.table.set_index("value")
    for site, rows in frame.groupby("site"):
        row = table.loc[site]
        assert row["n"] == len(rows) and row["patients"] == rows["patient_id"].nunique()
        assert row["accuracy"] == pytest.approx((rows["label"] == rows["pred"]).mean())
        low, high = _direct_ci(rows, n_boot=2000, seed=5)
        # the CI is the wider of this bootstrap and Clopper-Pearson on the patients
        k, p = (rows["label"] == rows["pred"]).mean() * rows["patient_id"].nunique(), rows["patient_id"].nunique()
        cp = (beta.ppf(0.025, k, p - k + 1), beta.ppf(0.975, k + 1, p - k))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((min(low, cp[0]), max(high, cp[1])),
                                                                abs=1e-12)
        # and an independent resampling (patients by index draws) agrees to Monte Carlo error
        rng = np.random.default_rng(99)
        ids = rows["patient_id"].unique()
        ok = (rows["label"] == rows["pred"]).groupby(rows["patient_id"]).agg(["sum", "count"])
        draws = rng.integers(0, len(ids), (4000, len(ids)))
        hits, films = ok.loc[ids, "sum"].to_numpy()[draws].sum(1), ok.loc[ids, "count"].to_numpy()[draws].sum(1)
        assert np.quantile(hits / films, [0.025, 0.975]) == pytest.approx([low, high], abs=0.03)
        for c in CLASSES:
            of_class = rows[rows["label"] == c]
            assert row[f"recall_{c}"] == pytest.approx((of_class["pred"] == c).mean())
            assert row[f"pred_{c}"] == (rows["pred"] == c).sum()


def test_worst_first_and_flags():
    frame = _frame()
    analysis = subgroup_analysis(frame, CLASSES, ["site"], n_boot=500)
    table = analysis.table
    assert table["value"].tolist()[0] == "west" and table["accuracy"].is_monotonic_increasing
    overall = (frame["label"] == frame["pred"]).mean()
    assert analysis.overall["accuracy"] == pytest.approx(overall)
    flagged = table.set_index("value")["flagged"]
    assert flagged["west"] and not flagged["north"] and not flagged["south"]
    assert (table.loc[table["flagged"], "ci_high"] < overall).all()
    # a wrong subgroup of 3 patients: its bootstrap said [0, 0]; the exact interval on 3 patients
    # by hand is [0, 1 - 0.025 ** (1 / 3)]; too few patients to be flagged
    tiny = frame.copy()
    tiny["site"] = "big"
    tiny.loc[:2, "site"] = "tiny"
    tiny.loc[:2, "patient_id"] = ["a", "b", "c"]
    for i in range(3):  # predictions come from the probabilities: make these three wrong
        wrong = CLASSES[(CLASSES.index(tiny.loc[i, "label"]) + 1) % 3]
        for c in CLASSES:
            tiny.loc[i, f"p_{c}"] = 0.9 if c == wrong else 0.05
    row = subgroup_analysis(tiny, CLASSES, ["site"], n_boot=200).table.set_index("value").loc["tiny"]
    assert row["ci_low"] == 0.0 and row["ci_high"] == pytest.approx(1 - 0.025 ** (1 / 3))
    assert row["small"] and not row["flagged"]
    assert analysis.worst(1)[0]["value"] == "west"


def test_attributes_bins_and_derived(tmp_path):
    jpeg, png = tmp_path / "a.jpg", tmp_path / "b.png"
    img = (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)
    cv2.imwrite(str(jpeg), img, [cv2.IMWRITE_JPEG_QUALITY, 75])
    cv2.imwrite(str(png), img)
    frame = pd.DataFrame({"path": [str(jpeg), str(png), str(png)], "width": [224, 512, 2500],
                          "height": [224, 400, 2000], "view": ["PA", "", None],
                          "age": [3, 45, None]})
    assert attribute(frame, "width").tolist() == ["<256", "512-1024", ">=2048"]
    assert attribute(frame, "megapixels").tolist() == ["<0.1", "0.1-0.25", ">=4"]
    assert attribute(frame, "small_copy").tolist() == ["small copy (<= 256 px)", "larger", "larger"]
    assert attribute(frame, "jpeg_quality").tolist() == ["70-85", "not JPEG", "not JPEG"]
    assert attribute(frame, "view").tolist() == ["PA", MISSING, MISSING]
    assert attribute(frame, "age").tolist() == ["2-6", "40-65", MISSING]
    with pytest.raises(KeyError, match="no column 'sex'"):
        attribute(frame, "sex")
    many = pd.DataFrame({"score": np.arange(100.0)})
    assert attribute(many, "score").nunique() == 5  # quintiles of an unknown numeric column


def test_manifest_columns_are_attached_and_offered():
    preds = pd.DataFrame({"rel_path": ["a", "b"], "label": ["Normal", "Normal"], "pred": ["Normal"] * 2})
    manifest = pd.DataFrame({"rel_path": ["b", "a"], "notes": ["adult", "pediatric"],
                             "width": [100, 1000], "height": [100, 1000], "source": ["x", "y"]})
    joined = attach_manifest(preds, manifest)
    assert joined["notes"].tolist() == ["pediatric", "adult"]
    assert default_columns(joined) == ["source", "notes", "width", "height", "megapixels", "small_copy"]


def test_an_unknown_column_is_skipped_with_the_reason():
    analysis = subgroup_analysis(_frame(30), CLASSES, ["site", "hospital"], n_boot=50)
    assert set(analysis.table["column"]) == {"site"} and "hospital" in analysis.skipped


@pytest.mark.parametrize("films, patients", [(2, 1), (13, 8)])
def test_small_all_right_subgroups_get_an_honest_interval(films, patients):
    """Issue 26: 2 films of 1 patient, or 13 films of 8 patients, all right, had a CI of
    [1.0, 1.0]. Clopper-Pearson on the patients by hand: all p right gives [0.025 ** (1/p), 1]."""
    frame = _frame()
    frame["site"] = "big"
    frame.loc[:films - 1, "site"] = "few"
    frame.loc[:films - 1, "patient_id"] = [f"q{i % patients}" for i in range(films)]
    for i in range(films):  # every film of the subgroup right
        for c in CLASSES:
            frame.loc[i, f"p_{c}"] = 0.9 if c == frame.loc[i, "label"] else 0.05
    row = subgroup_analysis(frame, CLASSES, ["site"], n_boot=200).table.set_index("value").loc["few"]
    assert row["accuracy"] == 1.0 and row["patients"] == patients and row["small"] == (patients < 5)
    assert row["ci_low"] == pytest.approx(0.025 ** (1 / patients)) and row["ci_high"] == 1.0
    assert row["ci_low"] < 1.0
