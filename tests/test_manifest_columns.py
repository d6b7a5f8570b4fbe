"""Every column a user's manifest.csv brings reaches the dataset manifest (for subgroups)."""
from __future__ import annotations

import csv

import cv2
import numpy as np

from cxrlib.data.datasets import scan_dataset
from cxrlib.data.rows import MANIFEST_COLUMNS


def test_extra_manifest_columns_are_carried(tmp_path):
    rows = []
    for k, label in enumerate(["COVID-19", "Normal", "Normal"]):
        folder = tmp_path / label
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"f{k}.png"), np.full((64, 80), 40 * k, np.uint8))
        rows.append({"file": f"{label}/f{k}.png", "label": label, "patient_id": f"p{k}",
                     "view": ["PA", "AP", ""][k], "notes": ["adult", "pediatric", "pediatric"][k],
                     "sex": ["F", "M", "F"][k], "width": "999", "source_repo": f"repo{k % 2}"})
    rows.append({"file": "Normal/missing.png", "label": "Normal", "patient_id": "p9", "view": "PA",
                 "notes": "", "sex": "", "width": "1", "source_repo": "repo0"})
    with open(tmp_path / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ds = scan_dataset(tmp_path)
    m = ds.manifest.set_index("rel_path")
    assert list(ds.manifest.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert m.loc["COVID-19/f0.png", "view"] == "PA" and m.loc["Normal/f2.png", "view"] == ""
    assert m["notes"].tolist() == ["adult", "pediatric", "pediatric"]
    assert m["sex"].tolist() == ["F", "M", "F"]
    assert m["source_repo"].tolist() == ["repo0", "repo1", "repo0"]
    assert m["source"].tolist() == ["repo0", "repo1", "repo0"]  # source_repo is the source too
    assert m["width"].tolist() == [80, 80, 80]  # the file's header, never the manifest's claim
    assert m["manifest_width"].tolist() == ["999", "999", "999"]  # kept under another name
    assert "file" not in ds.manifest.columns and "label" in ds.manifest.columns
