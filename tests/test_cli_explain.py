"""``python -m cxrlib explain``: overlays at native resolution, the CSV, and one batch in memory."""
from __future__ import annotations

import shutil
import weakref

import cv2
import numpy as np
import pandas as pd
import pytest
from app_fixtures import app_workspace, trained_run  # noqa: F401 (fixtures: the shared tiny run)

from cxrlib.cli import main
from cxrlib.lungs.network import asset_digest


@pytest.fixture
def folder(tmp_path, synthetic_dataset):
    """Seven films in two sub-folders (two share a name), one resized to 120 x 100 (so overlays
    must follow each film's own size), a broken file and a hidden one."""
    root = tmp_path / "films"
    films = sorted(synthetic_dataset.glob("*/*.png"))
    for i, src in enumerate(films[::10][:7]):
        dest = root / ("a" if i % 2 else "b") / ("same.png" if i in (0, 1) else src.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
    big = next(root.glob("b/*.png"))
    cv2.imwrite(str(big), cv2.resize(cv2.imread(str(big), cv2.IMREAD_GRAYSCALE), (100, 120)))
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / ".hidden.png").write_bytes(b"")
    return root


def _csv(out):
    return pd.read_csv(out / "explanations.csv", keep_default_na=False)


def test_explain_a_folder_writes_overlays_and_the_table(trained_run, folder, tmp_path, capsys):
    from cxrlib.evaluation.predict import predict_paths
    from cxrlib.explain import deletion_score, get_cam
    from cxrlib.explain.batch import lung_segmenter
    from cxrlib.preprocessing.pipeline import preprocess_film, to_model_input

    out = tmp_path / "out"
    assert main(["explain", trained_run.id[:8], str(folder), "--method", "gradcam++",
                 "--out", str(out), "--batch-size", "3", "--deletion-steps", "4"]) == 0
    captured = capsys.readouterr()
    assert "7 explained, 0 flat (no overlay), 1 unreadable, 1 left out" in captured.out
    assert "unreadable: " in captured.err and "broken.png" in captured.err
    table = _csv(out)
    classes = list(trained_run.classes)
    assert list(table.columns) == ["path", "overlay", "width", "height", "method", "layer",
                                   "target", "predicted", *[f"p_{c}" for c in classes], "flat",
                                   "deletion_score", "in_lung_share", "lung_mask", "error",
                                   "warning"]
    assert len(table) == 8 and (table["method"] == "gradcam++").all()
    good = table[table["error"] == ""]
    assert len(good) == 7 and len(set(good["overlay"])) == 7  # same.png twice: two overlays
    for row in good.itertuples():
        film = cv2.imread(row.path, cv2.IMREAD_GRAYSCALE)
        png = cv2.imread(str(out / row.overlay))
        assert png.shape == (*film.shape, 3) == (int(row.height), int(row.width), 3)
        assert row.overlay.startswith(("a/", "b/")) and row.overlay.endswith("-gradcam++.png")
    assert {(int(r.width), int(r.height)) for r in good.itertuples()} >= {(100, 120), (96, 96)}
    # Probabilities and classes are the predict command's, computed independently.
    predicted = predict_paths(trained_run, list(good["path"])).set_index("path")
    cols = [f"p_{c}" for c in classes]
    np.testing.assert_allclose(good.set_index("path")[cols].astype(float).to_numpy(),
                               predicted.loc[good["path"], cols].to_numpy(), atol=1e-5)
    assert (good["target"] == good["predicted"]).all()
    assert (good["predicted"].to_numpy() == predicted.loc[good["path"], "pred"].to_numpy()).all()
    # The deletion score of one film, straight from the library.
    row = good.iloc[0]
    model = trained_run.load_model()
    x = to_model_input(preprocess_film(cv2.imread(row.path, cv2.IMREAD_GRAYSCALE),
                                       trained_run.config.preprocess)[None])
    heat, probs = get_cam("gradcam++", model)(x)
    assert row["layer"] == get_cam("gradcam++", model).layer
    assert float(row["deletion_score"]) == pytest.approx(
        deletion_score(model, x[0], heat[0], int(probs[0].argmax()), steps=4), abs=1e-6)
    # Lungs: filled when the segmenter's weights are installed, else empty and said so.
    if lung_segmenter()[0] is None:
        assert (good["in_lung_share"] == "").all()
        assert good["lung_mask"].str.startswith("none").all() and "in_lung_share left empty" in captured.err
    else:  # the shipped weights: the share of this film, recomputed from the library's parts
        from cxrlib.lungs import cam_in_lung_share, segment_lungs
        from cxrlib.preprocessing.geometry import input_box, mask_to_input

        film = cv2.imread(row.path, cv2.IMREAD_GRAYSCALE)
        cfg = trained_run.config.preprocess
        lung = mask_to_input(segment_lungs(film).mask, input_box(film, cfg, None), cfg.size)
        assert 0 < float(row["in_lung_share"]) < 1  # some of the heat in the lungs, not all
        assert float(row["in_lung_share"]) == pytest.approx(cam_in_lung_share(heat[0], lung), abs=1e-6)
        assert good["lung_mask"].str.startswith("predicted").all()  # no dataset masks here
    broken = table[table["error"] != ""].iloc[0]
    assert broken["overlay"] == "" and broken["p_Normal"] == "" and broken["deletion_score"] == ""


def test_a_folder_is_streamed_one_batch_of_films_at_a_time(trained_run, folder, tmp_path,
                                                           monkeypatch, capsys):
    """Every decoded film is tracked by a weak reference: when a film is read, at most one batch
    of films (this one included) is still alive."""
    import cxrlib.data.imageio.decode as decode  # read_films, the one batch reader, reads here

    real, alive, most = decode.read_film, [], []

    def tracked(path, *args, **kwargs):
        film = real(path, *args, **kwargs)
        alive.append(weakref.ref(film.pixels))
        most.append(sum(r() is not None for r in alive))
        return film

    monkeypatch.setattr(decode, "read_film", tracked)
    assert main(["explain", trained_run.id, str(folder), "--out", str(tmp_path / "o"),
                 "--batch-size", "2", "--deletion-steps", "0"]) == 0
    assert len(most) == 7 and max(most) <= 2 and max(most) == 2, most
    table = _csv(tmp_path / "o")
    assert (table[table["error"] == ""]["deletion_score"] == "").all()  # --deletion-steps 0


def test_flat_maps_get_no_overlay(trained_run, folder, tmp_path, monkeypatch, capsys):
    from cxrlib.explain.gradient_methods import GradCAM

    # A method whose raw maps are negative everywhere (as Grad-CAM++ on a pre-activation layer).
    monkeypatch.setattr(GradCAM, "combine", lambda self, a, g, x, t: -np.abs(a).sum(axis=-1) - 1)
    assert main(["explain", trained_run.id, str(folder / "a"), "--out", str(tmp_path / "o"),
                 "--method", "gradcam"]) == 0
    captured = capsys.readouterr()
    assert "0 explained, 3 flat (no overlay)" in captured.out and "layer" in captured.err
    table = _csv(tmp_path / "o")
    assert table["flat"].tolist() == [True] * 3 and (table["overlay"] == "").all()
    assert not list((tmp_path / "o").rglob("*.png"))


def test_bad_arguments_are_usage_errors(trained_run, folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["explain", trained_run.id, str(folder), "--out", str(tmp_path), "--method", "lime"])
    assert exc.value.code == 2 and "gradcam++" in capsys.readouterr().err
    assert main(["explain", trained_run.id, str(folder), "--out", str(tmp_path),
                 "--target", "Bogus"]) == 2
    assert "not a class of this run" in capsys.readouterr().err
    assert main(["explain", trained_run.id, str(folder), "--out", str(tmp_path),
                 "--colormap", "rainbow"]) == 2
    assert "viridis" in capsys.readouterr().err
    assert main(["explain", trained_run.id, str(folder), "--out", str(tmp_path),
                 "--layer", "no_such_layer"]) == 4
    assert "valid layers" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["explain", trained_run.id, str(tmp_path / "empty"), "--out", str(tmp_path)]) == 4
    assert "no image files found" in capsys.readouterr().err


def test_overlay_names_mirror_folders_and_stay_unique(tmp_path):
    from cxrlib.cli.explain import output_names

    (tmp_path / "in" / "x").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    files = [tmp_path / "in" / "x" / "a.png", tmp_path / "in" / "a.png",
             tmp_path / "other" / "a.png", tmp_path / "b.jpg"]
    inputs = [tmp_path / "in", files[2], files[3]]
    assert output_names(inputs, files) == ["x/a", "a", "a-2", "b"]


def test_a_crop_runs_films_are_segmented_once(trained_run, folder, tmp_path, monkeypatch):
    """Explaining films of a lung-crop run needs each film's predicted mask for the crop and for
    its lung field: the segmenter runs once per film, not twice."""
    from types import SimpleNamespace

    from cxrlib.explain.batch import BatchSettings, explain_files, lung_segmenter
    from cxrlib.lungs import segmenter

    if lung_segmenter()[0] is None:
        pytest.skip("the lung segmenter's weights are not installed")
    cfg = trained_run.config.preprocess
    crop = cfg.replace(steps=(*cfg.steps, "lung_crop"), lung_model=asset_digest())
    source = SimpleNamespace(config=SimpleNamespace(preprocess=crop), classes=trained_run.classes,
                             load_model=trained_run.load_model)
    real, segmented = segmenter.segment_batch, []

    def counting(batch, *args, **kwargs):
        segmented.append(len(batch))
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(segmenter, "segment_batch", counting)
    files = sorted((folder / "a").glob("*.png"))
    rows = list(explain_files(source, files, [f.stem for f in files], tmp_path / "o",
                              BatchSettings(deletion_steps=0, batch_size=2)))
    assert len(files) == 3 and sum(segmented) == len(files)
    assert [r["error"] for r in rows] == [""] * 3
    assert all(r["lung_mask"].startswith("predicted") for r in rows)


def test_a_warning_from_the_library_is_one_warning_line(trained_run, synthetic_dataset, tmp_path, capsys):
    """A Radiography-style film whose own mask is broken: explain goes on with a predicted lung
    field and says so in one ``warning:`` line, not a Python UserWarning with a source line."""
    images, masks = tmp_path / "COVID" / "images", tmp_path / "COVID" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    shutil.copy(sorted(synthetic_dataset.glob("*/*.png"))[0], images / "a.png")
    (masks / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not a mask")
    assert main(["explain", trained_run.id[:8], str(images), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "warning: lung mask" in err and "a.png" in err
    assert "UserWarning" not in err
