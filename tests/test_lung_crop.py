"""The lung-crop step: both lungs stay inside the crop, the pixels are the crop resized, the step
is part of the run id, and masks and heatmaps are carried between the film and the model input."""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from cxrlib.core.classes import CLASSES
from cxrlib.core.config import LUNG_CROP_MARGIN, PreprocessConfig, RunConfig
from cxrlib.data.synthetic import lung_boxes, synthetic_film
from cxrlib.lungs import LungSegmentation, draw_lung_outline
from cxrlib.lungs.network import asset_digest
from cxrlib.preprocessing import (input_box, input_lung_fields, mask_to_input, preprocess_film,
                                  preprocess_preview, preprocess_reference)

CROP = PreprocessConfig(steps=("white_balance", "lung_crop"), size=64, lung_model=asset_digest())


def _lungs(h: int, w: int) -> list[np.ndarray]:
    """Each synthetic lung ellipse of :func:`lung_boxes` as its own mask, at ``h`` x ``w``."""
    out = []
    for cx, cy, ax, ay in lung_boxes(100):
        one = np.zeros((h, w), np.uint8)
        cv2.ellipse(one, (round(cx * w / 100), round(cy * h / 100)),
                    (round(ax * w / 100), round(ay * h / 100)), 0, 0, 360, 1, -1)
        out.append(one.astype(bool))
    return out


def _film(label: str, h: int, w: int, seed: int) -> np.ndarray:
    return cv2.resize(synthetic_film(label, 128, np.random.default_rng(seed)), (w, h),
                      interpolation=cv2.INTER_AREA)


def test_box_of_a_known_mask_holds_both_lungs_with_the_margin_by_hand():
    h, w = 120, 100
    left, right = _lungs(h, w)
    seg = LungSegmentation(left | right, 0.99, False, "predicted")
    film = _film("Normal", h, w, 0)
    x0, y0, x1, y1 = input_box(film, CROP.replace(lung_crop_margin=0.1), seg)
    ys, xs = np.nonzero(left | right)
    bw, bh = xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()
    assert (x0, y0) == (max(0, int(np.floor(xs.min() - 0.1 * bw))), max(0, int(np.floor(ys.min() - 0.1 * bh))))
    assert (x1, y1) == (min(w, int(np.ceil(xs.max() + 1 + 0.1 * bw))), min(h, int(np.ceil(ys.max() + 1 + 0.1 * bh))))
    for lung in (left, right):  # every pixel of each lung inside the crop
        assert lung[y0:y1, x0:x1].sum() == lung.sum()
    # the model input is exactly the white-balanced grey film cut to that box and resized
    grey = preprocess_preview(film, PreprocessConfig(steps=("white_balance",)))
    expected = cv2.resize(np.ascontiguousarray(grey[y0:y1, x0:x1]), (64, 64), interpolation=cv2.INTER_AREA)
    got = preprocess_film(film, CROP.replace(lung_crop_margin=0.1), seg)
    assert np.array_equal(got, expected)
    assert np.array_equal(preprocess_reference(film, CROP.replace(lung_crop_margin=0.1), seg), got)


@pytest.mark.parametrize("label", CLASSES)
@pytest.mark.parametrize("shape", [(96, 96), (200, 150)])
def test_the_segmenters_crop_keeps_both_lungs(label, shape):
    """The learned segmenter on synthetic films: each lung (almost) wholly inside the crop, and
    the crop smaller than the film (the borders leave the model input)."""
    film = _film(label, *shape, seed=shape[0])
    x0, y0, x1, y1 = input_box(film, CROP)
    for lung in _lungs(*shape):
        assert lung[y0:y1, x0:x1].sum() >= 0.99 * lung.sum()
    assert (x1 - x0) * (y1 - y0) < 0.8 * shape[0] * shape[1]
    assert preprocess_film(film, CROP).shape == (64, 64)
    assert preprocess_preview(film, CROP).shape == (y1 - y0, x1 - x0)


def test_lung_crop_is_part_of_the_run_id_and_canonical():
    from cxrlib.runs.registry import run_id

    plain = PreprocessConfig(steps=("white_balance",))
    crop = PreprocessConfig(steps=("lung_crop", "white_balance"), lung_model=asset_digest())
    assert crop.steps == ("white_balance", "lung_crop")  # the crop runs last, so it is listed last
    assert crop.lung_crop_margin == LUNG_CROP_MARGIN
    # the config takes the segmenter's digest as a value: it never reads the weights itself
    with pytest.raises(ValueError, match="lung_model"):
        PreprocessConfig(steps=("lung_crop",))
    ids = {run_id(RunConfig(preprocess=p), "fp") for p in
           (plain, crop, crop.replace(lung_crop_margin=0.1))}
    assert len(ids) == 3
    # without the step its settings change nothing: defaults, one run id
    assert PreprocessConfig(steps=("white_balance",), lung_crop_margin=0.2, lung_model="x") == plain
    assert RunConfig.from_dict(RunConfig(preprocess=crop).to_dict()).preprocess == crop
    with pytest.raises(ValueError):
        PreprocessConfig(steps=("lung_crop",), lung_crop_margin=-0.1, lung_model=asset_digest())
    # a run cropped by another lung model is refused rather than fed other pixels
    stale = crop.replace(lung_model="lung_unet:0000000000000000")
    with pytest.raises(ValueError, match="lung model"):
        input_box(_film("Normal", 64, 64, 1), stale)


def test_the_crop_uses_the_predicted_mask_never_a_dataset_mask():
    film = _film("Normal", 64, 64, 2)
    human = LungSegmentation(np.ones((64, 64), bool), 1.0, False, "dataset")
    with pytest.raises(ValueError, match="predicted"):
        input_box(film, CROP, human)
    assert input_box(film, PreprocessConfig(), human) == (0, 0, 64, 64)  # no crop: the whole film


def test_mask_to_input_cuts_and_squashes_by_hand():
    mask = np.zeros((40, 80), bool)
    mask[10:30, 20:40] = True  # the left half of the box (20..60) below
    got = mask_to_input(mask, (20, 10, 60, 30), 10)
    expected = np.zeros((10, 10), bool)
    expected[:, :5] = True
    assert np.array_equal(got, expected)
    whole = np.zeros((40, 40), bool)
    whole[10:30, 10:20] = True  # the whole film squashed 2:1 across, 1:1 down
    assert np.array_equal(mask_to_input(mask, (0, 0, 80, 40), 40), whole)


def test_dataset_masks_are_carried_into_the_crop_box(tmp_path):
    """A film with its own mask file: the field is that mask, cut to the box the *predicted* mask
    gives and squashed to the model size; a film without one gets the predicted field."""
    film = _film("Normal", 120, 100, 3)
    left, right = _lungs(120, 100)
    human = (left | right)
    human[:, :50] = False  # the human mask differs from any prediction: only the right lung
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), human.astype(np.uint8) * 255)
    own, other = input_lung_fields([film, film], [None, None], CROP, mask_paths=[str(path), None])
    assert own.source == "dataset" and not own.flagged and other.source == "predicted"
    x0, y0, x1, y1 = input_box(film, CROP)
    cut = human[y0:y1, x0:x1].astype(np.uint8) * 255
    expected = cv2.resize(cut, (64, 64), interpolation=cv2.INTER_AREA) >= 128
    assert np.array_equal(own.mask, expected)
    assert other.mask.shape == (64, 64) and other.mask[:, :20].any()  # both lungs predicted


def test_overlay_in_a_box_leaves_the_rest_of_the_film_as_it_was():
    from cxrlib.explain import overlay

    film = _film("Normal", 80, 60, 4)
    heat = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    box = (10, 20, 50, 70)
    drawn = overlay(film, heat, box=box)
    rgb = cv2.cvtColor(film, cv2.COLOR_GRAY2RGB)
    inside = np.zeros(film.shape, bool)
    inside[20:70, 10:50] = True
    assert np.array_equal(drawn[~inside], rgb[~inside])
    assert np.array_equal(drawn[20:70, 10:50], overlay(film[20:70, 10:50], heat))
    assert np.array_equal(overlay(film, heat, box=(0, 0, 60, 80)), overlay(film, heat))


def test_lung_outline_is_the_masks_boundary():
    image = np.full((50, 60), 90, np.uint8)
    mask = np.zeros((50, 60), bool)
    mask[10:40, 15:45] = True
    drawn = draw_lung_outline(image, mask, colour=(0, 255, 0), thickness=1)
    green = np.all(drawn == (0, 255, 0), axis=2)
    ring = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.array_equal(green, ring)  # exactly the mask's outermost pixels
    assert (image == 90).all()  # the input is not drawn on
    with pytest.raises(ValueError):
        draw_lung_outline(image, mask[:10])


def test_cli_steps_and_margin_flags():
    from cxrlib.cli.train import _add_train_args, config_from_args

    parser = argparse.ArgumentParser()
    _add_train_args(parser)
    args = parser.parse_args(["--data", "x", "--steps", "lung_crop,white_balance",
                              "--lung-crop-margin", "0.1"])
    cfg = config_from_args(args).preprocess
    assert cfg.steps == ("white_balance", "lung_crop") and cfg.lung_crop_margin == 0.1
    assert config_from_args(parser.parse_args(["--data", "x"])).preprocess.steps == ("white_balance",)


def test_a_crop_runs_films_are_segmented_once_for_both_box_and_field(monkeypatch):
    """The lung field of a lung-crop run's film needs its predicted mask twice (for the crop box
    and, without a dataset mask, as the field): the segmenter runs once per film, and the
    fields are those of the films segmented one by one."""
    from cxrlib.lungs import segment_lungs, segmenter

    films = [_film(label, 120, 100, 10 + i) for i, label in enumerate(CLASSES)]
    expected = [mask_to_input(segment_lungs(f).mask, input_box(f, CROP), CROP.size) for f in films]
    real, segmented = segmenter.segment_batch, []

    def counting(batch, *args, **kwargs):
        segmented.append(len(batch))
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(segmenter, "segment_batch", counting)
    fields = input_lung_fields(films, [None] * len(films), CROP)
    assert sum(segmented) == len(films)
    for field, mask in zip(fields, expected):
        assert field.source == "predicted" and np.array_equal(field.mask, mask)
