"""Real-data tier of cxrlib.lungs: the SHIPPED weights against the human masks of cxr3-lungs, on the
groups training did not use; a heatmap planted in the lungs; the eval command's JSON line."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cxrlib.cli import main
from cxrlib.lungs import cam_in_lung_share, dataset_mask, read_mask_levels, segment_batch
from cxrlib.lungs.network import read_asset_meta

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def lungs_dir(cxr3):
    folder = cxr3.parent / "cxr3-lungs"
    if not (folder / "manifest.csv").exists():
        pytest.skip(f"real-data tier skipped: {folder} not found")
    return folder


@pytest.fixture(scope="module")
def held_out(cxr3, lungs_dir):
    """(rows, per-film scores) of the films in groups the shipped weights never saw."""
    from cxrlib.lungs.data import paired_rows, unseen_by
    from cxrlib.lungs.evaluate import evaluate_rows
    from cxrlib.lungs.segmenter import load_segmenter

    meta = read_asset_meta()
    rows = paired_rows(cxr3, lungs_dir)
    rows = rows[unseen_by(rows, meta)].reset_index(drop=True)
    return rows, evaluate_rows(rows, load_segmenter())


def test_shipped_weights_score_dice_at_least_093_on_unseen_groups(held_out):
    rows, per_film = held_out
    meta = read_asset_meta()
    assert len(rows) == meta["rows"]["test"] > 50  # exactly the recorded held-out test groups
    assert not set(rows["rel_path"]) & set(meta["train_files"])
    assert not set(meta["train_files"]) & set(rows.loc[rows["nc"], "rel_path"])
    assert per_film["dice"].mean() >= 0.93, per_film.groupby("label")["dice"].mean()
    assert per_film.groupby("label")["dice"].mean().min() >= 0.90


def test_heatmap_planted_inside_the_human_mask_is_counted_inside(held_out):
    rows, _ = held_out
    rng = np.random.default_rng(0)
    for r in rows.sample(8, random_state=0).itertuples():
        truth = dataset_mask(r.mask_path)
        h, w = truth.shape
        # A CAM-like heatmap at 1/16 of the film: mass only in cells that lie wholly in the lungs.
        inside = cv2.resize(truth.astype(np.float32), (w // 16, h // 16), interpolation=cv2.INTER_AREA) > 0.999
        heat = inside * rng.uniform(0.2, 1.0, inside.shape)
        assert inside.sum() > 10
        assert cam_in_lung_share(heat, truth) > 0.95
        # A heatmap outside the lungs counts (nearly) nothing.
        outside = cv2.resize(truth.astype(np.float32), (w // 16, h // 16), interpolation=cv2.INTER_AREA) < 0.001
        assert cam_in_lung_share(outside.astype(np.float32), truth) < 0.05


def test_predicted_masks_hold_the_planted_heatmap_too(held_out):
    from cxrlib.data.imageio import read_film

    rows, _ = held_out
    sample = rows.sample(8, random_state=1)
    films = [read_film(p).pixels for p in sample["path"]]
    for film, mask_path, seg in zip(films, sample["mask_path"], segment_batch(films)):
        lung, _ = read_mask_levels(mask_path, film.shape[:2])
        h, w = lung.shape
        inside = cv2.resize(lung.astype(np.float32), (w // 16, h // 16), interpolation=cv2.INTER_AREA) > 0.999
        assert seg.source == "predicted" and cam_in_lung_share(inside.astype(np.float32), seg.mask) > 0.9


def test_eval_command_ends_with_the_json_line(cxr3, lungs_dir, held_out, capsys):
    _, per_film = held_out
    assert main(["lungs", "eval", "--data", str(cxr3), "--masks", str(lungs_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["n"] == len(per_film) and result["scope"] == "held-out groups"
    assert result["dice_mean"] == pytest.approx(per_film["dice"].mean(), abs=1e-4)
    assert set(result["dice_per_class"]) == {"COVID-19", "Normal", "Viral Pneumonia"}
    assert "held-out groups only" in out[0]
