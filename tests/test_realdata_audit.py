"""Audit on the shared cxr3 films: planted duplicates, the metadata shortcut, lung fields."""
from __future__ import annotations

import zlib

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrlib.audit import lung_fields_of, metadata_baseline, segment_lungs
from cxrlib.data.duplicates import find_duplicates
from cxrlib.core.config import PreprocessConfig
from cxrlib.data.imageio import read_film
from cxrlib.lungs.network import asset_digest
from cxrlib.preprocessing import preprocess_film
from cxrlib.preprocessing.steps import to_grey

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def cxr3_manifest(cxr3):
    from cxrlib.data.datasets import scan_dataset

    return scan_dataset(cxr3).manifest


def test_planted_copies_among_real_films_are_found(cxr3_manifest, tmp_path, workspace):
    base = cxr3_manifest.groupby("label").sample(60, random_state=1).reset_index(drop=True)
    planted, rows = {}, []
    for k, rec in base.iloc[::30].reset_index(drop=True).iterrows():
        grey = to_grey(read_film(rec["path"]).pixels)
        h, w = grey.shape
        variant = k % 3
        if variant == 0:
            img, ext = cv2.resize(grey, (int(w * 0.6), int(h * 0.5)), interpolation=cv2.INTER_AREA), ".png"
        elif variant == 1:
            img, ext = grey, ".jpg"
        else:
            img, ext = grey[int(0.1 * h):, int(0.05 * w):int(0.95 * w)], ".png"
        path = tmp_path / f"planted_{k}{ext}"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 30])
        planted[path.name] = rec["rel_path"]
        rows.append({**rec.to_dict(), "path": str(path), "rel_path": path.name})
    manifest = pd.concat([base, pd.DataFrame(rows)], ignore_index=True)
    clusters = find_duplicates(manifest)
    cluster_of = dict(zip(clusters["rel_path"], clusters["cluster_id"]))
    for copy, original in planted.items():
        assert cluster_of.get(copy) is not None and cluster_of.get(copy) == cluster_of.get(original), copy
    # every cluster holds a planted copy: no two distinct real films were paired
    assert set(clusters["cluster_id"]) == {cluster_of[c] for c in planted}
    assert (clusters.groupby("cluster_id").size() == 2).all()


def test_metadata_alone_predicts_the_class_on_cxr3(cxr3_manifest, workspace):
    # a grouped split: every group_id on one side (hash of the id, about 25% test)
    groups = cxr3_manifest["group_id"].astype(str)
    split = np.where([zlib.crc32(g.encode()) % 4 == 0 for g in groups], "test", "train")
    table = pd.DataFrame({"rel_path": cxr3_manifest["rel_path"], "split": split})
    result = metadata_baseline(cxr3_manifest, table)
    # README "Known biases": 224 px Kermany copies, 1024 px NIH PNG originals, web COVID films
    assert result.accuracy >= 0.8, result.accuracy
    assert result.confounded and "confounded" in result.verdict.text


def test_audit_lung_fields_on_real_films_with_the_lung_crop(cxr3, cxr3_manifest):
    """Real films through a lung-cropped preprocessing: the human masks of cxr3-lungs win where
    they exist and are carried into the crop (by hand here); the crop keeps those lungs; the
    other films get predicted masks of a plausible size."""
    from cxrlib.lungs import MaskIndex, lung_box, read_mask_levels

    masks_dir = cxr3.parent / "cxr3-lungs"
    if not (masks_dir / "manifest.csv").exists():
        pytest.skip(f"real-data tier skipped: {masks_dir} not found")
    index = MaskIndex(masks_dir)
    has = cxr3_manifest["rel_path"].map(lambda r: index.find(r) is not None)
    sample = pd.concat([cxr3_manifest[has].groupby("label").sample(2, random_state=3),
                        cxr3_manifest[~has].groupby("label").sample(1, random_state=3)])
    cfg = PreprocessConfig(steps=("white_balance", "lung_crop"), lung_model=asset_digest())
    films = [read_film(p).pixels for p in sample["path"]]
    images = np.stack([preprocess_film(f, cfg) for f in films])
    segs = lung_fields_of(sample, sample["rel_path"], images, cfg, masks=index)
    for film, rel, own, seg in zip(films, sample["rel_path"], has[sample.index], segs):
        assert seg.mask.shape == (224, 224)
        box = lung_box(segment_lungs(film).mask, cfg.lung_crop_margin)
        x0, y0, x1, y1 = box
        if own:
            lung, ignore = read_mask_levels(index.find(rel), film.shape[:2])
            human = lung | ignore
            assert seg.source == "dataset" and not seg.flagged
            assert human[y0:y1, x0:x1].sum() >= 0.99 * human.sum(), rel  # the crop keeps the lungs
            cut = np.ascontiguousarray(human[y0:y1, x0:x1]).astype(np.uint8) * 255
            expected = cv2.resize(cut, (224, 224), interpolation=cv2.INTER_AREA) >= 128
            assert np.array_equal(seg.mask, expected), rel
        else:
            assert seg.source == "predicted"
            assert 0.2 < seg.mask.mean() < 0.9, (rel, seg.mask.mean())  # lungs fill most of the crop
