"""Explain page: original and overlay at the film's size, probabilities that match the model,
faithfulness, PNG download, uploads (PNG, DICOM) and a clear error for a bad upload."""
from __future__ import annotations

import cv2
import numpy as np
from app_fixtures import app, app_workspace, metric, texts, trained_run  # noqa: F401

from cxrlib.explain import deletion_insertion, get_cam
from cxrlib import preprocessing as preprocess
from cxrlib.data.synthetic import synthetic_film

PAGE = "views/explain.py"


def test_overlay_probabilities_and_faithfulness(app, trained_run):
    at = app(PAGE)
    assert texts(at.title) == ["Explain"]
    film_name = at.selectbox(key="ex_film_Test").value
    captions = texts(at.caption)
    assert f"Original · {film_name} · 96×96 px" in captions
    assert any(c.startswith("gradcam on ") and "alpha 0.4 · jet" in c for c in captions)
    assert len(at.image) == 2
    # the probabilities shown are the model's own on the preprocessed film
    model = trained_run.load_model()
    path = trained_run.predictions().set_index("rel_path").loc[film_name, "path"]
    grey = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    x = preprocess.to_model_input(
        preprocess.preprocess_film(grey, trained_run.config.preprocess)[None])
    probs = np.asarray(model(x))[0]
    for cls, p in zip(trained_run.classes, probs):
        assert metric(at, f"P({cls})") == f"{p:.1%}"
    # the verdict names the class the model predicts and the film's label, green when they agree
    pred = trained_run.classes[int(probs.argmax())]
    truth = trained_run.predictions().set_index("rel_path").loc[film_name, "label"]
    verdict = f"Predicted **{pred}**; labelled **{truth}**."
    assert verdict in texts(at.success if pred == truth else at.error)
    # the deletion score of this film's Grad-CAM, computed here straight from cxrlib.explain on
    # the model (no app cache): same method, default layer, predicted class, 20 steps
    heat, _ = get_cam("gradcam", model)(x)
    scores = deletion_insertion(model, x, heat[0], None, steps=20)
    assert scores["target"] == int(probs.argmax())
    assert metric(at, "Faithfulness (deletion)") == f"{scores['faithfulness']:+.3f}"
    assert [d.label for d in at.download_button] == ["Download the overlay (PNG)"]


def test_contour_mode_and_alpha_change_the_overlay(app):
    at = app(PAGE)
    original, overlay = (i.value for i in at.image)
    at.slider(key="ex_alpha").set_value(0.8).run()
    assert at.image[0].value == original and at.image[1].value != overlay
    assert any("alpha 0.8" in c for c in texts(at.caption))
    at.toggle(key="ex_contour").set_value(True).run()
    assert any(c.startswith("gradcam on") and c.endswith("contours") for c in texts(at.caption))


def _png(arr) -> bytes:
    return cv2.imencode(".png", arr)[1].tobytes()


def test_upload_png_and_dicom(app, tmp_path):
    at = app(PAGE)
    at.radio(key="ex_source").set_value("Upload (PNG / JPEG / DICOM)").run()
    assert "Upload a film to explain it." in texts(at.info)
    film = synthetic_film("COVID-19", 128, np.random.default_rng(5))
    at.file_uploader[0].upload("mine.png", _png(film), "image/png").run()
    assert "Original · mine.png · 128×128 px" in texts(at.caption)

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
    assert "Original · film.dcm · 100×120 px" in texts(at.caption)


def test_bad_upload_is_a_clear_error(app):
    at = app(PAGE)
    at.radio(key="ex_source").set_value("Upload (PNG / JPEG / DICOM)").run()
    at.file_uploader[0].upload("broken.png", b"\x89PNG\r\n\x1a\nrubbish", "image/png").run()
    assert not at.exception
    assert any(e.startswith("Could not read this film:") for e in texts(at.error))
    assert not at.image and not [c for c in texts(at.caption) if c.startswith("gradcam")]


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
    assert not at.image
    _upload(at, "cut.jpg", bf.truncated_jpeg_with_eoi(), "image/jpeg")
    assert texts(at.error) == ["Could not read this film: corrupt JPEG data: the decoder would "
                               "invent part of the picture (libjpeg: Corrupt JPEG data: premature "
                               "end of data segment)"]
    _upload(at, "tall.png", bf.tall_strip_png())
    assert "Original · tall.png · 40×20000 px · shown padded (very long film)" in texts(at.caption)
    assert len(at.image) == 2


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
    assert "Original · mono1.dcm · 64×64 px" in texts(at.caption)
    box = at.selectbox(key="ex_target")
    assert box.value == "the predicted class" and box.index == 0
    at.slider(key="ex_alpha").set_value(0.6).run()  # any rerun after the upload
    box = at.selectbox(key="ex_target")
    assert box.value == "the predicted class" and box.index == 0
    assert box.options == ["the predicted class", "COVID-19", "Normal", "Viral Pneumonia"]
    box.set_value("Normal").run()
    assert any(c.startswith("gradcam on") for c in texts(at.caption)) and not at.exception
