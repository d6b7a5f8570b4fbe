"""Explain page: original and overlay at the film's size, probabilities that match the model,
faithfulness, PNG download, uploads (PNG, DICOM) and a clear error for a bad upload."""
from __future__ import annotations

import cv2
import numpy as np
from app_fixtures import (app, app_workspace, metric, shown_texts, texts,  # noqa: F401
                          heat_values, png_of, trained_run, viewer, viewer_maps)

from cxrlib.core.config import ExplainConfig
from cxrlib.explain import deletion_insertion, get_cam, method_label
from cxrlib import preprocessing as preprocess
from cxrlib.data.synthetic import synthetic_film

PAGE = "views/explain.py"


def test_overlay_probabilities_and_faithfulness(app, trained_run):
    at = app(PAGE)
    assert texts(at.title) == ["Explain"]
    film_name = at.selectbox(key="ex_film_Test").value
    captions = shown_texts(at.caption)
    shown = [c for c in captions if c.startswith(f"Original · {film_name} · 96×96 px")]
    default = ExplainConfig().method  # the page starts on the measured default (issue 25)
    assert shown and f" · {method_label(default)} on " in shown[0]
    assert "alpha 0.5 · inferno" in shown[0]
    assert len(viewer_maps(at)) == 1 and len(viewer(at)["panels"]) == 2
    # the probabilities shown are the model's own on the preprocessed film
    model = trained_run.load_model()
    path = trained_run.predictions().set_index("rel_path").loc[film_name, "path"]
    grey = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    x = preprocess.to_model_input(
        preprocess.preprocess_film(grey, trained_run.config.preprocess)[None])
    probs = np.asarray(model(x))[0]
    for cls, p in zip(trained_run.classes, probs):  # the model's score, not a bare "100.0 %"
        assert metric(at, f"Model score · {cls}") == f"{p:.3f}"
    assert any("not calibrated probabilities" in c for c in captions)
    # the verdict names the class the model predicts and the film's label, green when they agree
    pred = trained_run.classes[int(probs.argmax())]
    truth = trained_run.predictions().set_index("rel_path").loc[film_name, "label"]
    verdict = f"Predicted **{pred}**; labelled **{truth}**."
    assert verdict in texts(at.success if pred == truth else at.error)
    # the deletion score of this film's map, computed here straight from cxrlib.explain on
    # the model (no app cache): same method, default layer, predicted class, 20 steps
    heat, _ = get_cam(default, model)(x)
    scores = deletion_insertion(model, x, heat[0], None, steps=20)
    assert scores["target"] == int(probs.argmax())
    # measured on request only (issue 22: it was 4 of an Explain action's 5 CPU seconds)
    assert metric(at, "Faithfulness (deletion)") == "—"
    at.toggle(key="ex_faith").set_value(True).run()
    assert metric(at, "Faithfulness (deletion)") == f"{scores['faithfulness']:+.3f}"
    assert [d.label for d in at.download_button] == ["Download the overlay (PNG)"]


def _alphas(at) -> set[int]:
    return set(np.unique(png_of(viewer_maps(at)[0]["layer"])[..., 3]).tolist())


def test_contour_mode_and_alpha_change_the_overlay(app):
    at = app(PAGE)
    assert _alphas(at) == {0, 128}  # alpha 0.5 where drawn, nothing below the threshold
    at.slider(key="ex_alpha").set_value(0.8).run()
    assert _alphas(at) == {0, 204}
    assert any("alpha 0.8" in c for c in shown_texts(at.caption))
    filled = (png_of(viewer_maps(at)[0]["layer"])[..., 3] > 0).mean()
    at.toggle(key="ex_contour").set_value(True).run()
    lines = png_of(viewer_maps(at)[0]["layer"])[..., 3] > 0
    assert viewer(at)["bar"]["contour"] and 0 < lines.mean() < filled  # lines, not a filled map
    thick = cv2.erode(lines.astype(np.uint8), np.ones((3, 3), np.uint8))
    assert thick.any()  # thick enough to see: 3 layer pixels and more
    assert any(c.startswith("Original") and c.endswith("contours at 20, 40, 60, 80 %")
               for c in shown_texts(at.caption))
    at.slider(key="ex_threshold").set_value(0.55).run()  # the helper's hunt: lines at 20 %
    assert viewer(at)["bar"]["levels"] == [0.6, 0.8]  # and 40 % were still drawn
    assert any(c.endswith("below 55% not drawn · contours at 60, 80 %")
               for c in shown_texts(at.caption))


def test_the_heatmap_has_a_colour_bar_and_leaves_low_values_transparent(app):
    """Issue 26: no colour bar, and at the default opacity the whole film was tinted."""
    at = app(PAGE)
    assert viewer(at)["bar"]["title"] == "share of the maximum class evidence"
    panel = viewer_maps(at)[0]
    layer = png_of(panel["layer"])
    heat = cv2.resize((heat_values(panel) * 255).round().astype(np.uint8), layer.shape[1::-1],
                      interpolation=cv2.INTER_LINEAR)
    below, above = heat < round(0.2 * 255) - 1, heat > round(0.2 * 255) + 1
    assert below.any() and (layer[..., 3][below] == 0).all()  # below the threshold: not drawn
    assert (layer[..., 3][above] > 0).all()
    at.slider(key="ex_threshold").set_value(0.0).run()
    assert (png_of(viewer_maps(at)[0]["layer"])[..., 3] > 0).all()


def test_compare_methods_side_by_side_with_their_in_lung_shares(app):
    at = app(PAGE)
    at.multiselect(key="ex_compare").set_value(["gradcam", "eigencam", "layercam"]).run()
    assert not at.exception, [e.value for e in at.exception]
    titles = [p["title"] for p in viewer(at)["panels"]]  # one film: the panels zoom together
    assert titles[0] == ["Original"] and [t[0] for t in titles[1:]] == [
        "Grad-CAM", "EigenCAM", "LayerCAM"]
    assert all(" in the lungs" in t[1] or "flat map" in t[1] for t in titles[1:])


def test_next_film_and_the_address(app):
    at = app(PAGE)
    box = at.selectbox(key="ex_film_Test")
    first, options = box.value, box.options
    [b for b in at.button if b.label == "Next film"][0].click().run()
    second = at.selectbox(key="ex_film_Test").value
    assert second != first and at.query_params.get("film") == second
    [b for b in at.button if b.label == "Previous film"][0].click().run()
    assert at.selectbox(key="ex_film_Test").value == first
    at.selectbox(key="ex_method").set_value("eigencam").run()
    address = dict(at.query_params)
    assert address["film"] == first and address["method"] == "eigencam"


def test_a_shared_explain_link_opens_the_same_film_and_method(app, trained_run, synthetic_dataset):
    from app_fixtures import reloaded

    preds = trained_run.predictions()
    film = preds.loc[preds["split"] == "test", "rel_path"].tolist()[3]
    address = {"run": trained_run.id, "film": film, "method": "layercam"}
    fresh = reloaded(PAGE, address, synthetic_dataset)  # a reload: a new session
    assert fresh.selectbox(key="ex_film_Test").value == film
    assert fresh.selectbox(key="ex_method").value == "layercam"
    assert not fresh.warning or not [w for w in texts(fresh.warning) if "Session State" in w]


def _png(arr) -> bytes:
    return cv2.imencode(".png", arr)[1].tobytes()


def test_upload_png_and_dicom(app, tmp_path):
    at = app(PAGE)
    at.radio(key="ex_source").set_value("Upload (PNG / JPEG / DICOM)").run()
    assert "Upload a film to explain it." in texts(at.info)
    film = synthetic_film("COVID-19", 128, np.random.default_rng(5))
    at.file_uploader[0].upload("mine.png", _png(film), "image/png").run()
    assert any(c.startswith("Original · mine.png · 128×128 px") for c in shown_texts(at.caption))

    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = 120, 100
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.linspace(0, 4095, 120 * 100).reshape(120, 100).astype(np.uint16)).tobytes()
    path = tmp_path / "film.dcm"
    ds.save_as(path, enforce_file_format=True)
    at.file_uploader[0].upload("film.dcm", path.read_bytes(), "application/dicom").run()
    assert any(c.startswith("Original · film.dcm · 100×120 px") for c in shown_texts(at.caption))


def test_bad_upload_is_a_clear_error(app):
    at = app(PAGE)
    at.radio(key="ex_source").set_value("Upload (PNG / JPEG / DICOM)").run()
    at.file_uploader[0].upload("broken.png", b"\x89PNG\r\n\x1a\nrubbish", "image/png").run()
    assert not at.exception
    assert any(e.startswith("Could not read this film:") for e in texts(at.error))
    assert viewer(at) is None and not [c for c in texts(at.caption) if c.startswith("Original")]


# ------------------------------------------------------------------ hostile uploads (issue 12)
def _upload(at, name: str, data: bytes, mime: str = "image/png"):
    at.file_uploader[0].upload(name, data, mime).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_strip_or_a_corrupt_jpeg_is_refused_and_a_long_film_shown_padded(app):
    import bad_files as bf

    at = app(PAGE)
    at.radio(key="ex_source").set_value("Upload (PNG / JPEG / DICOM)").run()
    _upload(at, "strip.png", bf.strip_png())
    assert texts(at.error) == ["Cannot explain this film: too small to classify: 20000 x 1 px "
                               "(the short side must be at least 32 px)."]
    assert viewer(at) is None
    _upload(at, "cut.jpg", bf.truncated_jpeg_with_eoi(), "image/jpeg")
    assert texts(at.error) == ["Could not read this film: corrupt JPEG data: the decoder would "
                               "invent part of the picture (libjpeg: Corrupt JPEG data: premature "
                               "end of data segment)"]
    _upload(at, "tall.png", bf.tall_strip_png())
    assert any(c.startswith("Original · tall.png · 40×20000 px") for c in shown_texts(at.caption))
    assert len(viewer_maps(at)) == 1  # the viewer keeps the film's shape: zoom to see it


def test_shown_padded_keeps_the_film_and_the_ratio_within_bounds():
    import app_services as svc

    strip = np.tile(np.arange(40, dtype=np.uint8), (20_000, 1))
    shown, padded = svc.for_display(strip)
    assert padded and shown.shape == (768, 96)  # long side 768, short side 768 / 8
    # the strip shrunk to 2 x 768 (40 * 768 / 20000 = 1.5 columns, rounded), centred on black
    expected = cv2.resize(strip, (2, 768), interpolation=cv2.INTER_AREA)
    assert np.array_equal(shown[:, 47:49], expected) and not shown[:, :47].any() and not shown[:, 49:].any()
    film = np.zeros((300, 200), np.uint8)
    assert svc.for_display(film)[0] is film and not svc.for_display(film)[1]


def test_monochrome1_upload_and_the_explain_class_box_after_an_upload(app, tmp_path):
    import bad_files as bf

    at = app(PAGE)
    at.radio(key="ex_source").set_value("Upload (PNG / JPEG / DICOM)").run()
    _upload(at, "mono1.dcm", bf.dicom(tmp_path, "MONOCHROME1"), "application/dicom")
    assert any(c.startswith("Original · mono1.dcm · 64×64 px") for c in shown_texts(at.caption))
    box = at.selectbox(key="ex_target")
    assert box.value == "the predicted class" and box.index == 0
    at.slider(key="ex_alpha").set_value(0.6).run()  # any rerun after the upload
    box = at.selectbox(key="ex_target")
    assert box.value == "the predicted class" and box.index == 0
    assert box.options == ["the predicted class", "COVID-19", "Normal", "Viral Pneumonia"]
    box.set_value("Normal").run()
    assert any("Grad-CAM on" in c for c in shown_texts(at.caption)) and not at.exception


def test_a_reload_keeps_the_dataset_folder_and_so_the_run(app, trained_run, synthetic_dataset,
                                                         monkeypatch, tmp_path):
    """Bug: the dataset folder was not in the address, so a reload (a new session) opened the
    default folder (CXR_DATA_DIR), where the run of ``?run=`` is not, and the user's run and film
    were lost. The folder is kept in ``?data=`` like the run."""
    from app_fixtures import reloaded

    at = app(PAGE)
    address = dict(at.query_params)
    assert address.get("data") == str(synthetic_dataset) and address.get("run") == trained_run.id
    elsewhere = tmp_path / "another-dataset"
    elsewhere.mkdir()
    monkeypatch.setenv("CXR_DATA_DIR", str(elsewhere))  # the folder a new session opens first
    fresh = reloaded(PAGE, address)  # a new session, no folder of its own
    assert fresh.session_state["data_dir"] == str(synthetic_dataset)
    assert fresh.session_state["run_id"] == trained_run.id


def test_the_film_is_kept_when_the_user_comes_back(app):
    """The helper's hunt of the new viewer: Next film, another page, back to Explain: the first
    film again (and the viewer's zoom, kept per film, with it)."""
    at = app(PAGE)
    first = at.selectbox(key="ex_film_Test").value
    [b for b in at.button if b.label == "Next film"][0].click().run()
    second = at.selectbox(key="ex_film_Test").value
    assert second != first
    revision = viewer(at)["revision"]
    at.switch_page("views/home.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="ex_film_Test").value == second
    assert viewer(at)["revision"] == revision  # the same film: the browser keeps its view
