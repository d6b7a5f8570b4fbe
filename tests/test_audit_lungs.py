"""The audit's lung fields: the learned segmenter's (or a dataset's own) masks in the model input's
geometry; the gallery shows exactly the mask each share was computed with; films whose mask is
flagged are left out of the shares and the masked evaluation, and counted."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from app_fixtures import app_workspace, trained_run  # noqa: F401

from cxrlib.audit import audit_run, cam_in_lung_share, lung_mask_counts, masks_used
from cxrlib.audit.attention import lung_fields_of
from cxrlib.core.config import PreprocessConfig
from cxrlib.data.synthetic import lung_boxes, synthetic_film
from cxrlib.lungs import MaskIndex, segment_lungs
from cxrlib.preprocessing import preprocess_film, to_model_input


def _truth(size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for cx, cy, ax, ay in lung_boxes(size):
        cv2.ellipse(mask, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def test_gallery_shows_the_scored_mask_and_flagged_films_are_counted(trained_run):
    """Every test film recomputed here from its file: its lung field (the tiny run's model input
    is the 96 px film itself, so the field needs no carrying), its Grad-CAM and its share."""
    from cxrlib.explain import get_cam

    report = audit_run(trained_run, steps=("attention", "masked"))
    test = trained_run.predictions().query("split == 'test'").set_index("rel_path")
    cfg = trained_run.config.preprocess
    fields = {rel: segment_lungs(cv2.imread(p, cv2.IMREAD_GRAYSCALE)) for rel, p in test["path"].items()}
    flagged = {rel for rel, s in fields.items() if s.flagged}
    assert 0 < len(flagged) < len(fields)  # the synthetic set has both: the test sees both paths
    assert report.lung_masks == {"films": len(fields), "dataset": 0, "predicted": len(fields),
                                 "flagged": len(flagged)}
    table = report.attention.set_index("rel_path")
    assert set(table.index[table["mask_flagged"]]) == flagged
    summary = report.attention_summary.set_index("label")
    kept = table.loc[~table.index.isin(flagged), "in_lung_share"].dropna()
    assert summary.loc["all", "flagged"] == len(flagged) and summary.loc["all", "scored"] == len(kept)
    assert summary.loc["all", "mean"] == pytest.approx(kept.mean())
    assert summary.loc["all", "masks"] == "predicted"
    assert report.masked["n"].tolist() == [len(fields) - len(flagged)] * 3
    assert set(report.masked["masks"]) == {"predicted"}

    cam = get_cam("gradcam", trained_run.load_model())
    assert report.gallery_films and len(report.gallery_films) == len(report.gallery)
    for g in report.gallery_films:
        assert g.rel_path not in flagged
        film = preprocess_film(cv2.imread(test.loc[g.rel_path, "path"], cv2.IMREAD_GRAYSCALE), cfg)
        assert np.array_equal(g.image, film)
        assert g.mask.shape == (cfg.size, cfg.size)  # at the size the share was computed at
        assert np.array_equal(g.mask, fields[g.rel_path].mask)  # and exactly that mask
        heat = np.clip(cam(to_model_input(film[None]))[0][0], 0, None)
        assert g.in_lung_share == pytest.approx(heat[g.mask].sum() / heat.sum(), abs=1e-5)
        assert g.in_lung_share == pytest.approx(table.loc[g.rel_path, "in_lung_share"])


def test_dataset_masks_win_and_an_unreadable_film_falls_back(tmp_path):
    """The manifest's ``mask_path`` and a masks folder win over predicted masks; each is carried
    to the model size by hand here (resize to the film, area squash, >= half)."""
    rng = np.random.default_rng(5)
    films = [synthetic_film(label, 120, rng) for label in ("Normal", "Viral Pneumonia", "COVID-19", "Normal")]
    for i, film in enumerate(films):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), film)
    human = np.zeros((60, 60), np.uint8)  # a mask file at another size than its film
    human[10:50, 5:25] = 255
    cv2.imwrite(str(tmp_path / "own.png"), human)
    (tmp_path / "masks" / "Viral").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "masks" / "Viral" / "f1.png"), 255 - human)
    (tmp_path / "f3.png").write_bytes(b"no longer a PNG")  # changed since its tensors were cached
    manifest = pd.DataFrame({"rel_path": ["Normal/f0.png", "Viral/f1.png", "COVID/f2.png", "Normal/f3.png"],
                             "path": [str(tmp_path / f"f{i}.png") for i in range(4)],
                             "mask_path": [str(tmp_path / "own.png"), "", None, ""]})
    cfg = PreprocessConfig(steps=(), size=48)
    images = np.stack([cv2.resize(f, (48, 48), interpolation=cv2.INTER_AREA) for f in films])
    segs = lung_fields_of(manifest, manifest["rel_path"], images, cfg,
                          masks=MaskIndex(tmp_path / "masks"), chunk=3)
    assert [s.source for s in segs] == ["dataset", "dataset", "predicted", "predicted"]

    def carried(mask_file_pixels):
        at_film = cv2.resize(mask_file_pixels, (120, 120), interpolation=cv2.INTER_NEAREST) >= 192
        return cv2.resize(at_film.astype(np.uint8) * 255, (48, 48), interpolation=cv2.INTER_AREA) >= 128

    assert np.array_equal(segs[0].mask, carried(human)) and segs[0].quality == 1.0
    assert np.array_equal(segs[1].mask, carried(255 - human))
    predicted = segment_lungs(films[2])
    assert np.array_equal(segs[2].mask, carried(predicted.mask.astype(np.uint8) * 255))
    assert segs[2].flagged == predicted.flagged
    assert np.array_equal(segs[3].mask, segment_lungs(images[3]).mask)  # its model input's mask
    assert lung_mask_counts(segs) == {"films": 4, "dataset": 2, "predicted": 2,
                                      "flagged": sum(s.flagged for s in segs)}
    assert masks_used([s.source for s in segs]) == "dataset (2), predicted (2)"
    assert masks_used(["predicted"] * 3) == "predicted" and masks_used([]) == "none"


def test_in_lung_share_inside_outside_and_half():
    mask = _truth(96)
    inside = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1) * mask
    outside = (~cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)).astype(np.float32)
    assert cam_in_lung_share(inside, mask) == pytest.approx(1.0)
    assert cam_in_lung_share(outside, mask) == pytest.approx(0.0)
    half = np.ones((10, 10), np.float32)
    m = np.zeros((10, 10), bool)
    m[:, :5] = True  # equal mass in and out
    assert cam_in_lung_share(half, m) == pytest.approx(0.5)
    assert np.isnan(cam_in_lung_share(np.zeros((10, 10)), m))


def test_input_lung_share_carries_the_film_mask_into_the_input_box():
    """The one share of an explained film: the Explain page and the audit count it alike."""
    from cxrlib.preprocessing.geometry import input_lung_share

    film_mask = np.zeros((80, 120), bool)
    film_mask[:, 20:60] = True  # a lung band in the film's left half
    box = (20, 0, 100, 80)  # the model sees x in [20, 100): the band is its left half
    heat = np.zeros((40, 40), np.float32)
    heat[:, :10] = 3.0  # all the CAM in the first quarter of the input: inside the band
    heat[:, 30:] = 1.0  # a third of that weight in the last quarter: outside it
    assert input_lung_share(heat, film_mask, box, 40) == pytest.approx(30 / 40)
    assert np.isnan(input_lung_share(np.zeros((40, 40)), film_mask, box, 40))
