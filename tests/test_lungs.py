"""cxrlib.lungs: the segmenter learns known lung shapes; Dice, masks, boxes and shares against hand
computations; dataset masks win over predicted ones; the weights asset; the CLI's errors."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrlib.cli import main
from cxrlib.core import paths
from cxrlib.data.synthetic import lung_boxes
from cxrlib.lungs import (LungSegmentation, MaskIndex, cam_in_lung_share, dataset_mask, dice,
                          find_dataset_mask, lung_box, lung_fields, mask_quality, read_mask_levels)
from cxrlib.lungs.augment import AugmentConfig, augment_pair
from cxrlib.lungs.data import split_rows
from cxrlib.lungs.evaluate import choose_threshold

STILL = AugmentConfig(brightness=0.0, contrast=(1.0, 1.0), gamma=(1.0, 1.0), jpeg_p=0.0)


def film_and_mask(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic film with two dark lung fields at random places and sizes, and their mask.

    Positions vary by up to 10 % of the side, so a network that learned one average mask
    cannot score well: it has to find the lungs.
    """
    lungs = np.zeros((h, w), np.uint8)
    for cx, cy, ax, ay in lung_boxes(100):
        centre = (round((cx / 100 + rng.uniform(-0.1, 0.1)) * w), round((cy / 100 + rng.uniform(-0.1, 0.1)) * h))
        axes = (round(ax / 100 * w * rng.uniform(0.8, 1.15)), round(ay / 100 * h * rng.uniform(0.8, 1.15)))
        cv2.ellipse(lungs, centre, axes, rng.uniform(-8, 8), 0, 360, 1, -1)
    body = np.zeros((h, w), np.uint8)
    cv2.ellipse(body, (w // 2, h // 2), (int(0.47 * w), int(0.49 * h)), 0, 0, 360, 1, -1)
    film = np.full((h, w), rng.uniform(5, 30), np.float32)
    film[body > 0] = rng.uniform(150, 195)
    film[lungs > 0] = rng.uniform(45, 75)
    film += rng.normal(0, 6, film.shape)
    return np.clip(film, 0, 255).astype(np.uint8), lungs.astype(bool)


def synthetic_tensors(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(films, target, weight)`` of ``n`` synthetic films at 32 px, as the segmenter trains."""
    from cxrlib.lungs.data import _area
    from cxrlib.lungs.prepare import prepare_film

    rng = np.random.default_rng(7)
    pairs = [film_and_mask(rng, 64, 64) for _ in range(n)]
    films = np.stack([prepare_film(f, 32) for f, _ in pairs])
    target = np.stack([_area(m, 32) for _, m in pairs])
    return films, target, np.full_like(target, 255)


@pytest.fixture(scope="module")
def tiny_asset(tmp_path_factory):
    """A plain U-Net (8-16-32 filters, 32 px) trained for seconds on synthetic films, saved as an asset."""
    from cxrlib.lungs.network import build_lung_unet, save_asset
    from cxrlib.lungs.train import LungTrainConfig, fit_segmenter

    cfg = LungTrainConfig(size=32, encoder="plain", filters=(8, 16, 32), epochs=20, batch_size=8,
                          learning_rate=3e-3, seed=3)
    films, target, weight = synthetic_tensors(64)
    model = build_lung_unet(**cfg.arch())
    history = fit_segmenter(model, (films[:56], target[:56], weight[:56]),
                            (films[56:], target[56:], weight[56:]), cfg)
    folder = tmp_path_factory.mktemp("tiny_lungs")
    save_asset(model, folder, cfg.arch(), {"quality_threshold": 0.5, "history": history,
                                           "groups": {"train": ["g-train"], "val": []}})
    return folder / "lung_unet.json"


# ------------------------------------------------------------------------- the network learns
def test_tiny_network_finds_synthetic_lungs_on_held_out_films(tiny_asset):
    from cxrlib.lungs import segment_batch, segment_lungs

    rng = np.random.default_rng(99)  # films never seen in training, at other sizes than 32 px
    pairs = [film_and_mask(rng, 72, 60) for _ in range(12)] + [film_and_mask(rng, 50, 90) for _ in range(4)]
    segs = segment_batch([f for f, _ in pairs], batch_size=5, weights=tiny_asset)
    scores = [dice(s.mask, m) for s, (_, m) in zip(segs, pairs)]
    assert all(s.mask.shape == m.shape and s.mask.dtype == bool for s, (_, m) in zip(segs, pairs))
    assert all(s.source == "predicted" for s in segs)
    assert np.mean(scores) >= 0.9, scores
    # Finding the lungs, not drawing the average lungs: the mean training mask scores lower.
    average = np.mean([cv2.resize(m.astype(np.float32), (60, 72)) for _, m in pairs[:12]], axis=0) > 0.5
    assert np.mean([dice(average, m) for _, m in pairs[:12]]) < np.mean(scores[:12]) - 0.05
    # One film, RGB, gives the same mask as in the batch.
    rgb = np.repeat(pairs[0][0][..., None], 3, axis=2)
    assert np.array_equal(segment_lungs(rgb, weights=tiny_asset).mask, segs[0].mask)


def test_the_fit_keeps_its_best_validation_epoch_not_its_last():
    """The segmenter's loop runs on the classifier's epoch driver and best-weights keeper
    (cxrlib.models.epochs): after a fit whose validation Dice collapses (a rate far too high),
    the model scores the best epoch's Dice, counted here by hand, not the last one's."""
    from cxrlib.lungs.network import build_lung_unet
    from cxrlib.lungs.train import LungTrainConfig, fit_segmenter

    cfg = LungTrainConfig(size=32, encoder="plain", filters=(8, 16, 32), epochs=4, batch_size=8,
                          learning_rate=0.3, seed=3)
    films, target, weight = synthetic_tensors(40)
    model = build_lung_unet(**cfg.arch())
    seen = []
    history = fit_segmenter(model, (films[:32], target[:32], weight[:32]),
                            (films[32:], target[32:], weight[32:]), cfg,
                            progress=lambda done, total, text: seen.append(text))
    scores = [h["val_dice"] for h in history]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and max(scores) > scores[-1], scores
    pred = np.asarray(model(films[32:, ..., None].astype(np.float32) / 255.0))[..., 0] > 0
    truth = target[32:] > 127
    inter, total = (pred & truth).sum((1, 2)), pred.sum((1, 2)) + truth.sum((1, 2))
    by_hand = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0).mean()
    assert by_hand == pytest.approx(max(scores), abs=1e-5)
    assert f"(best {max(scores[:2]):.4f})" in seen[2 * (len(seen) // 4) - 1]  # epoch 2's line


def test_asset_round_trip_and_a_mismatched_asset(tiny_asset, tmp_path):
    from cxrlib.lungs.network import LungModelError, load_asset, read_asset_meta

    model, meta = load_asset(tiny_asset)
    assert meta["arch"]["filters"] == [8, 16, 32] and meta["weights_dtype"] == "float16"
    stored = np.load(tiny_asset.with_suffix(".npz"))
    assert all(stored[v.path].dtype == np.float16 for v in model.weights)
    assert np.array_equal(model.weights[0].numpy(), stored[model.weights[0].path].astype(np.float32))
    wrong = dict(meta, arch={**meta["arch"], "filters": [8, 16, 64]})
    (tmp_path / "lung_unet.json").write_text(json.dumps(wrong))
    (tmp_path / "lung_unet.npz").write_bytes(tiny_asset.with_suffix(".npz").read_bytes())
    with pytest.raises(LungModelError, match="does not fit"):
        load_asset(tmp_path)
    with pytest.raises(LungModelError, match="not found"):
        read_asset_meta(tmp_path / "nothing.json")


def test_importing_lungs_does_not_import_tensorflow():
    code = "import sys, cxrlib.lungs; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=paths.PROJECT_ROOT)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------ measures
def test_dice_against_hand_counts():
    pred, truth = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    pred[0, :4] = True           # 4 pixels
    truth[0, 2:4] = True         # 3 pixels, 2 shared with pred
    truth[1, 0] = True
    assert dice(pred, truth) == pytest.approx(2 * 2 / (4 + 3))
    ignore = np.zeros((4, 4), bool)
    ignore[0, 0] = ignore[1, 0] = True  # drops one pred-only and one truth-only pixel
    assert dice(pred, truth, ignore) == pytest.approx(2 * 2 / (3 + 2))
    assert dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert dice(pred, ~pred) == 0.0
    # A 2 x 2 prediction is resized to the 4 x 4 truth (nearest): each pixel becomes a 2 x 2 block.
    small = np.array([[1, 0], [0, 0]], bool)
    block = np.zeros((4, 4), bool)
    block[:2, :2] = True
    assert dice(small, block) == 1.0
    assert dice(small, truth) == pytest.approx(2 * 1 / (4 + 3))  # shares truth's pixel (1, 0)


def test_mask_levels_127_is_ignored_in_dice_and_kept_as_lung_field(tmp_path):
    values = np.zeros((10, 12), np.uint8)
    values[2:8, 1:5] = 255
    values[2:8, 7:11] = 255
    values[4:6, 2:4] = 127  # a device over the left lung
    cv2.imwrite(str(tmp_path / "m.png"), values)
    lung, ignore = read_mask_levels(tmp_path / "m.png")
    assert lung.sum() == 48 - 4 and ignore.sum() == 4
    field = dataset_mask(tmp_path / "m.png")
    assert field.sum() == 48 and field[4, 2]
    pred = values == 255  # the prediction leaves the device out: no penalty inside "ignore"
    assert dice(pred, lung, ignore) == 1.0 and dice(pred, field) == pytest.approx(2 * 44 / (44 + 48))
    # Radiography DB masks are 0/255 at another size than the film: resized with nearest.
    lung2, ignore2 = read_mask_levels(tmp_path / "m.png", (20, 24))
    assert lung2.shape == (20, 24) and lung2.sum() == 4 * 44 and ignore2.sum() == 16
    assert dataset_mask(tmp_path / "missing.png") is None and dataset_mask(None) is None


def test_cam_in_lung_share_hand_values():
    mask = np.zeros((4, 4), bool)
    mask[:, :2] = True
    heat = np.zeros((4, 4))
    heat[0, 0], heat[0, 3] = 3.0, 1.0
    assert cam_in_lung_share(heat, mask) == pytest.approx(0.75)
    assert cam_in_lung_share(heat * mask, mask) == 1.0
    assert np.isnan(cam_in_lung_share(np.zeros((4, 4)), mask))
    # A 2 x 2 heatmap resized (bilinear) to the 4 x 4 mask: a uniform one gives the lung's area share.
    assert cam_in_lung_share(np.ones((2, 2)), mask) == pytest.approx(0.5)
    left = np.array([[1.0, 0.0], [1.0, 0.0]])  # bilinear columns 1, .75, .25, 0 -> (1 + .75) / 2
    assert cam_in_lung_share(left, mask) == pytest.approx(1.75 / 2.0)


def test_lung_box_holds_both_lungs_with_its_margin():
    mask = np.zeros((100, 120), bool)
    mask[10:20, 20:40] = True  # one lung: rows 10-19, columns 20-39
    mask[30:60, 70:90] = True  # the other: rows 30-59, columns 70-89
    assert lung_box(mask, 0.0) == (20, 10, 90, 60)
    assert lung_box(mask, 0.1) == (13, 5, 97, 65)  # 10 % of 70 wide, of 50 high
    x0, y0, x1, y1 = lung_box(mask, 0.5)
    assert (x0, y0, x1, y1) == (0, 0, 120, 85)  # clipped to the film
    assert mask[y0:y1, x0:x1].sum() == mask.sum()
    assert lung_box(np.zeros((5, 7), bool)) == (0, 0, 7, 5)
    with pytest.raises(ValueError):
        lung_box(mask, -0.1)


def test_mask_quality_hand_values_and_threshold_choice():
    prob = np.zeros((20, 20), np.float32)
    prob[2:10, 2:8] = 0.9    # one lung of 48 pixels at 0.9
    prob[2:10, 12:18] = 1.0  # another of 48 at 1.0
    prob[12:16, :] = 0.3     # below 0.5: not in the mask, not in its confidence
    assert mask_quality(prob) == pytest.approx((48 * 0.9 + 48 * 1.0) / 96)
    prob[12, 0] = 0.6
    assert mask_quality(prob) == pytest.approx((48 * 0.9 + 48 * 1.0 + 0.6) / 97)
    assert mask_quality(np.zeros((5, 5))) == 0.0
    quality = np.array([0.2, 0.5, 0.8, 0.9, 0.95])
    assert choose_threshold(quality, np.array([0.5, 0.8, 0.95, 0.97, 0.96])) == pytest.approx(0.5, abs=1e-9)
    assert choose_threshold(quality, np.full(5, 0.97)) == pytest.approx(np.percentile(quality, 2))


# ------------------------------------------------------------------------ data and augmentation
def test_augmentation_moves_film_and_mask_together_and_never_flips():
    film = np.zeros((64, 64), np.uint8)
    film[16:48, 8:24] = 200  # a bright "lung" on the left only
    target = (film > 0).astype(np.float32)
    out = [augment_pair(film, target, np.ones_like(target), np.random.default_rng(s), STILL) for s in range(20)]
    for f, t, w in out:
        assert dice(f > 100, t > 0.5) > 0.9  # same geometric transform on both
        assert np.argwhere(t > 0.5)[:, 1].mean() < 32  # still on the left: no horizontal flip
        assert w.min() >= 0.99  # nothing became "ignore"
    assert len({f.tobytes() for f, _, _ in out}) == 20  # each seed its own transform
    again = augment_pair(film, target, np.ones_like(target), np.random.default_rng(5), STILL)
    assert all(np.array_equal(a, b) for a, b in zip(again, out[5]))  # and the same one again


def test_split_keeps_groups_whole_and_never_trains_on_nc():
    rows = pd.DataFrame({"label": ["COVID-19"] * 40 + ["Normal"] * 40,
                         "group_id": [f"g{i // 2}" for i in range(80)],
                         "nc": [i < 16 for i in range(80)]})
    split = split_rows(rows, seed=1)
    assert (split[rows["nc"]] != "train").all() and set(split[rows["nc"]]) == {"val", "test"}
    assert split.groupby(rows["group_id"]).nunique().max() == 1
    assert 0.6 < (split[~rows["nc"]] == "train").mean() < 0.85


# --------------------------------------------------------------- dataset masks take precedence
def test_dataset_masks_win_over_predicted_ones(tmp_path, tiny_asset):
    rng = np.random.default_rng(1)
    (tmp_path / "COVID" / "images").mkdir(parents=True)
    (tmp_path / "COVID" / "masks").mkdir()
    film, truth = film_and_mask(rng, 96, 96)
    cv2.imwrite(str(tmp_path / "COVID" / "images" / "a.png"), film)
    cv2.imwrite(str(tmp_path / "COVID" / "images" / "b.png"), film)
    small = cv2.resize(truth.astype(np.uint8) * 255, (64, 64), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(tmp_path / "COVID" / "masks" / "a.png"), small)  # the Radiography DB's 0/255
    found = find_dataset_mask(tmp_path / "COVID" / "images" / "a.png")
    assert found == tmp_path / "COVID" / "masks" / "a.png"
    assert find_dataset_mask(tmp_path / "COVID" / "images" / "b.png") is None

    other = tmp_path / "lungs" / "COVID-19"  # a --masks folder in the cxr3-lungs layout
    other.mkdir(parents=True)
    drawn = np.zeros((96, 96), np.uint8)
    drawn[10:50, 10:40] = 255
    cv2.imwrite(str(other / "b.png"), drawn)
    index = MaskIndex(tmp_path / "lungs")
    paths_ = [tmp_path / "COVID" / "images" / n for n in ("a.png", "b.png")]
    segs = lung_fields([film, film, film], [*paths_, None], masks=index,
                       rel_paths=["COVID-19/a.jpg", "COVID-19/b.jpg", ""], weights=tiny_asset)
    assert [s.source for s in segs] == ["dataset", "dataset", "predicted"]
    near = np.arange(96) * 64 // 96  # nearest neighbour: output pixel i reads input pixel floor(i * 64 / 96)
    assert np.array_equal(segs[0].mask, small[near][:, near] > 0)
    assert dice(segs[0].mask, truth) > 0.95 and segs[0].quality == 1.0 and not segs[0].flagged
    assert np.array_equal(segs[1].mask, drawn > 0)
    assert isinstance(segs[2], LungSegmentation) and segs[2].mask.shape == (96, 96)


def test_mask_index_reads_the_manifest_and_the_radiography_layout(tmp_path):
    (tmp_path / "x" / "masks").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "x" / "masks" / "f1.png"), np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "renamed.png"), np.zeros((4, 4), np.uint8))
    (tmp_path / "manifest.csv").write_text("file,mask\nCOVID-19/film 7.jpg,renamed.png\n")
    index = MaskIndex(tmp_path)
    assert index.find("x/images/f1.png") == tmp_path / "x" / "masks" / "f1.png"
    assert index.find("COVID-19/film 7.jpg") == tmp_path / "renamed.png"
    assert index.find("elsewhere/f1.jpeg") == tmp_path / "x" / "masks" / "f1.png"  # unique name
    assert index.find("nothing.jpg") is None
    with pytest.raises(NotADirectoryError, match="not found"):
        MaskIndex(tmp_path / "absent")


def test_a_masks_folder_that_is_a_file_says_so(tmp_path):
    """The audit's "lung masks folder" set to an existing file said "not found"."""
    (tmp_path / "hostname").write_text("x\n")
    with pytest.raises(NotADirectoryError) as caught:
        MaskIndex(tmp_path / "hostname")
    assert str(caught.value) == f"masks folder {tmp_path / 'hostname'} is a file, not a folder"


# ----------------------------------------------------------------------------------------- CLI
def test_cli_argument_errors(tmp_path, capsys, workspace):
    with pytest.raises(SystemExit) as exc:
        main(["lungs"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["lungs", "predict", "a.png"])  # --out is required
    assert exc.value.code == 2
    assert main(["lungs", "train", "--data", str(tmp_path), "--masks", str(tmp_path), "--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert main(["lungs", "eval", "--data", str(tmp_path / "absent"), "--masks", str(tmp_path)]) == 4
    assert "error:" in capsys.readouterr().err
    assert main(["lungs", "predict", str(tmp_path / "absent.png"), "--out", str(tmp_path / "o")]) == 4
    assert "absent.png" in capsys.readouterr().err


def test_cli_predict_and_eval_with_tiny_weights(tmp_path, capsys, tiny_asset):
    rng = np.random.default_rng(5)
    for label in ("COVID-19", "Normal"):
        for folder in (tmp_path / "films" / label, tmp_path / "masks" / label):
            folder.mkdir(parents=True)
        for i in range(3):
            film, mask = film_and_mask(rng, 80, 70)
            cv2.imwrite(str(tmp_path / "films" / label / f"{i}.jpg"), film)
            cv2.imwrite(str(tmp_path / "masks" / label / f"{i}.png"), mask.astype(np.uint8) * 255)
    assert main(["lungs", "predict", str(tmp_path / "films" / "Normal"), "--out", str(tmp_path / "out"),
                 "--weights", str(tiny_asset)]) == 0
    written = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in written] == ["0.png", "1.png", "2.png"]
    assert set(np.unique(cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED))) <= {0, 255}
    assert cv2.imread(str(written[0])).shape[:2] == (80, 70)
    capsys.readouterr()
    assert main(["lungs", "eval", "--data", str(tmp_path / "films"), "--masks", str(tmp_path / "masks"),
                 "--weights", str(tiny_asset)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["n"] == 6 and set(result["dice_per_class"]) == {"COVID-19", "Normal"}
    assert result["dice_mean"] > 0.85 and "held-out" in out[0]


def test_one_rule_for_a_films_own_mask_and_an_unreadable_one_falls_back(tmp_path, tiny_asset):
    """The --masks folder (the user's explicit choice) wins over the mask the dataset names, which
    wins over a Radiography masks/ sibling; the lung-model data and the lung fields use the same
    rule. A named mask that cannot be decoded leaves that film's lungs predicted, with a warning,
    instead of stopping the audit."""
    rng = np.random.default_rng(2)
    film, _ = film_and_mask(rng, 96, 96)
    (tmp_path / "COVID" / "images").mkdir(parents=True)
    (tmp_path / "COVID" / "masks").mkdir()
    path = tmp_path / "COVID" / "images" / "a.png"
    cv2.imwrite(str(path), film)
    sibling, named, chosen = (np.zeros((96, 96), np.uint8) for _ in range(3))
    sibling[10:30, 10:30], named[40:60, 40:60], chosen[60:90, 5:25] = 255, 255, 255
    cv2.imwrite(str(tmp_path / "COVID" / "masks" / "a.png"), sibling)
    cv2.imwrite(str(tmp_path / "named.png"), named)
    (tmp_path / "folder" / "COVID").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "folder" / "COVID" / "a.png"), chosen)
    index = MaskIndex(tmp_path / "folder")
    rel = "COVID/a.png"
    assert find_dataset_mask(path, masks=index, rel_path=rel, named=tmp_path / "named.png") == \
        tmp_path / "folder" / "COVID" / "a.png"
    assert find_dataset_mask(path, rel_path=rel, named=tmp_path / "named.png") == tmp_path / "named.png"
    assert find_dataset_mask(path, rel_path=rel, named="") == tmp_path / "COVID" / "masks" / "a.png"
    segs = lung_fields([film] * 2, [path] * 2, masks=index, rel_paths=[rel, "elsewhere/b.png"],
                       mask_paths=[str(tmp_path / "named.png")] * 2, weights=tiny_asset)
    assert np.array_equal(segs[0].mask, chosen > 0) and np.array_equal(segs[1].mask, named > 0)

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a mask")
    with pytest.warns(UserWarning, match="broken.png"):
        seg, = lung_fields([film], [None], mask_paths=[str(tmp_path / "broken.png")],
                           weights=tiny_asset)
    assert seg.source == "predicted" and seg.mask.shape == (96, 96)
    # a mask with no lung at all, or lung everywhere (a 1 x 1 white mask resized to the film),
    # describes no lungs: the audit said "lungs cover 0 %" or counted every pixel as lung
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros((96, 96), np.uint8))
    cv2.imwrite(str(tmp_path / "dot.png"), np.full((1, 1), 255, np.uint8))
    for name in ("empty.png", "dot.png"):
        with pytest.warns(UserWarning, match=name):
            seg, = lung_fields([film], [None], mask_paths=[str(tmp_path / name)], weights=tiny_asset)
        assert seg.source == "predicted", name


def test_a_masks_folder_obeys_the_data_roots_and_its_manifest_is_contained(tmp_path, monkeypatch):
    """``--masks`` is data the installation reads: it must lie inside CXR_DATA_ROOTS, its
    manifest.csv may not point outside it, and a manifest.csv it cannot parse is a warning
    (it gave a csv traceback or a codec error naming no file)."""
    from cxrlib.data.roots import FolderNotAllowed

    masks = tmp_path / "masks"
    (masks / "COVID").mkdir(parents=True)
    cv2.imwrite(str(masks / "COVID" / "a.png"), np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "outside.png"), np.zeros((4, 4), np.uint8))
    (masks / "manifest.csv").write_text("file,mask\nCOVID/b.jpg,../outside.png\nCOVID/c.jpg,COVID/a.png\n")
    index = MaskIndex(masks)
    assert index.find("COVID/b.jpg") is None and index.find("COVID/c.jpg") == masks / "COVID" / "a.png"
    monkeypatch.setenv("CXR_DATA_ROOTS", str(tmp_path / "elsewhere"))
    with pytest.raises(FolderNotAllowed):
        MaskIndex(masks)
    monkeypatch.delenv("CXR_DATA_ROOTS")
    (masks / "manifest.csv").write_bytes("file,mask\nCOVID/é.jpg,COVID/a.png\n".encode("latin-1"))
    with pytest.warns(UserWarning, match="manifest.csv"):
        index = MaskIndex(masks)
    assert index.find("COVID/a.jpg") == masks / "COVID" / "a.png"  # the folder itself still indexed
    (masks / "manifest.csv").write_text("file,mask\n" + "x" * 200_000 + ",COVID/a.png\n")
    with pytest.warns(UserWarning, match="manifest.csv"):
        MaskIndex(masks)


def test_lung_model_rows_read_the_licence_the_scan_carried(tmp_path):
    """Behind a wrapper folder the manifest's ``file`` paths are relative to it, not to the
    opened folder: the licences were looked up by the scan's rel_path, found nothing, and CC
    BY-NC films counted as trainable."""
    from cxrlib.lungs.data import paired_rows

    root = tmp_path / "set"
    for i, label in enumerate(("COVID-19", "Normal")):
        (root / "inner" / label).mkdir(parents=True)
        (root / "inner" / "masks" / label).mkdir(parents=True)
        cv2.imwrite(str(root / "inner" / label / f"{i}.png"), np.full((40, 40), 90, np.uint8))
        cv2.imwrite(str(root / "inner" / "masks" / label / f"{i}.png"), np.full((40, 40), 255, np.uint8))
    pd.DataFrame({"file": ["COVID-19/0.png", "Normal/1.png"], "label": ["COVID-19", "Normal"],
                  "license": ["CC BY-NC 4.0", "CC BY 4.0"]}).to_csv(root / "inner" / "manifest.csv", index=False)
    rows = paired_rows(root, root / "inner" / "masks").set_index("rel_path")
    assert rows["nc"].to_dict() == {"inner/COVID-19/0.png": True, "inner/Normal/1.png": False}


def test_lungs_predict_lists_an_unreadable_film_and_does_the_others(tmp_path, capsys, tiny_asset):
    """One undecodable film among several: it is listed with its reason and the others get
    their masks (one bad file stopped the command,
    with no mask written); as ``predict`` does, it is listed on stderr and the command succeeds."""
    from cxrlib.cli import main

    rng = np.random.default_rng(6)
    (tmp_path / "films").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "films" / f"{i}.png"), film_and_mask(rng, 64, 64)[0])
    (tmp_path / "films" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    rc = main(["lungs", "predict", str(tmp_path / "films"), "--out", str(tmp_path / "out"),
               "--weights", str(tiny_asset)])
    err = capsys.readouterr().err
    assert rc == 0 and f"unreadable: {tmp_path / 'films' / '3.png'}: corrupt PNG" in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["0.png", "1.png", "2.png"]


def test_lungs_eval_leaves_out_a_pair_it_cannot_read_and_scores_the_rest(tmp_path, tiny_asset):
    from cxrlib.lungs.evaluate import evaluate_rows
    from cxrlib.lungs.segmenter import load_segmenter

    rng = np.random.default_rng(7)
    rows = []
    for i in range(3):
        film, mask = film_and_mask(rng, 64, 64)
        cv2.imwrite(str(tmp_path / f"f{i}.png"), film)
        cv2.imwrite(str(tmp_path / f"m{i}.png"), mask.astype(np.uint8) * 255)
        rows.append({"path": str(tmp_path / f"f{i}.png"), "rel_path": f"f{i}.png", "label": "Normal",
                     "group_id": f"g{i}", "mask_path": str(tmp_path / f"m{i}.png")})
    (tmp_path / "m1.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.warns(UserWarning, match="m1.png"):
        table = evaluate_rows(pd.DataFrame(rows), load_segmenter(tiny_asset))
    assert table["rel_path"].tolist() == ["f0.png", "f2.png"] and table["dice"].notna().all()


def test_lungs_predict_and_eval_that_can_read_nothing_say_so_in_one_line(tmp_path, capsys, tiny_asset):
    from cxrlib.cli import main

    (tmp_path / "films" / "COVID-19").mkdir(parents=True)
    (tmp_path / "films" / "COVID-19" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    rc = main(["lungs", "predict", str(tmp_path / "films"), "--out", str(tmp_path / "out"),
               "--weights", str(tiny_asset)])
    err = capsys.readouterr().err
    assert rc == 4 and "none of the 1 films could be read" in err and "Traceback" not in err


def test_lungs_predict_never_replaces_files_already_in_out_unless_asked(tmp_path, capsys, tiny_asset):
    """A folder of human masks as --out: masks of the same names would have replaced them."""
    from cxrlib.cli import main

    rng = np.random.default_rng(8)
    (tmp_path / "films").mkdir()
    cv2.imwrite(str(tmp_path / "films" / "a.png"), film_and_mask(rng, 64, 64)[0])
    (tmp_path / "human").mkdir()
    (tmp_path / "human" / "a.png").write_bytes(b"the radiologist's mask")
    argv = ["lungs", "predict", str(tmp_path / "films"), "--out", str(tmp_path / "human"),
            "--weights", str(tiny_asset)]
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
    assert (tmp_path / "human" / "a.png").read_bytes() == b"the radiologist's mask"
    assert main([*argv, "--overwrite"]) == 0
    assert cv2.imread(str(tmp_path / "human" / "a.png"), cv2.IMREAD_UNCHANGED).shape == (64, 64)
    (tmp_path / "odd" / "a.png").mkdir(parents=True)  # a folder of a mask's name
    capsys.readouterr()
    assert main([*argv[:4], str(tmp_path / "odd"), *argv[5:], "--overwrite"]) == 4
    assert "it is a folder, not a file" in capsys.readouterr().err


def test_lungs_eval_that_can_read_no_pair_says_so_in_one_line(tmp_path, capsys, tiny_asset):
    from cxrlib.cli import main

    for label in ("COVID-19", "Normal"):
        (tmp_path / "films" / label).mkdir(parents=True)
        (tmp_path / "masks" / label).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "films" / label / "a.png"), np.full((40, 40), 90, np.uint8))
        (tmp_path / "masks" / label / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    rc = main(["lungs", "eval", "--data", str(tmp_path / "films"), "--masks", str(tmp_path / "masks"),
               "--weights", str(tiny_asset), "--all"])
    err = capsys.readouterr().err
    assert rc == 4 and "could be read" in err and "Traceback" not in err
