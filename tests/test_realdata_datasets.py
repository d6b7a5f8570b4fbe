"""Real-data tier: scan and decode ../shared/datasets/cxr3 and cxr3-fullres (skipped when absent)."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import cxrlib.data.datasets as datasets
from cxrlib.core.classes import CLASSES
from cxrlib.data.datasets import scan_dataset
from cxrlib.data.stats import dataset_stats
from cxrlib.data.imageio import read_film

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def scanned(cxr3):
    datasets._SCAN_CACHE.clear()
    datasets._HEADER_CACHE.clear()
    start = time.perf_counter()
    ds = scan_dataset(cxr3)
    return ds, time.perf_counter() - start


def test_cxr3_scan_agrees_with_its_manifest(cxr3, scanned):
    ds, seconds = scanned
    assert seconds < 30, f"scan took {seconds:.1f} s"
    truth = pd.read_csv(cxr3 / "manifest.csv", dtype=str, keep_default_na=False).set_index("file")
    m = ds.manifest.set_index("rel_path")
    assert ds.layout == "class_folders" and ds.problems.empty and ds.warnings == []
    assert sorted(m.index) == sorted(truth.index)
    assert (m["label"] == truth.loc[m.index, "label"]).all()
    assert m["label"].value_counts().to_dict() == {c: 600 for c in CLASSES}
    known = truth["patient_id"] != ""
    assert (m.loc[truth.index[known], "patient_id"] == truth.loc[known, "patient_id"]).all()
    assert (m.loc[truth.index, "group_id"] == truth["group_id"]).all()
    assert (m.loc[truth.index, "source"] == truth["source_repo"]).all()
    stats = dataset_stats(ds).set_index("label")
    per_class = truth[known].groupby("label")["patient_id"].nunique()
    unknown = truth[~known].groupby("label").size().reindex(per_class.index, fill_value=0)
    assert stats["patients"].to_dict() == (per_class + unknown).to_dict()  # empty id -> own file
    assert stats["width_max"].max() == 512 and stats["height_max"].max() == 512


def test_every_cxr3_film_decodes_at_its_header_size(scanned):
    ds, _ = scanned
    for row in ds.manifest.itertuples():
        film = read_film(row.path)
        assert film.pixels.dtype == np.uint8
        assert film.pixels.shape[:2] == (row.height, row.width), row.rel_path
        assert film.pixels.ndim == (3 if row.channels >= 3 else 2), row.rel_path


def test_fullres_headers_match_the_original_sizes(cxr3_fullres):
    ds = scan_dataset(cxr3_fullres)
    truth = pd.read_csv(cxr3_fullres / "manifest.csv", keep_default_na=False).set_index("file")
    m = ds.manifest.set_index("rel_path").loc[truth.index]
    assert len(m) == 30 and ds.problems.empty
    assert (m["width"] == truth["original_width"]).all() and (m["height"] == truth["original_height"]).all()
    big = m.sort_values("width").iloc[-1]
    assert read_film(big["path"]).pixels.shape[:2] == (big["height"], big["width"])
