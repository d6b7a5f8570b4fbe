"""DICOM results (SEG, SC, SR) of ``explain --dicom-out`` on DICOM films, re-read with pydicom and,
when Debian's dicom3tools is installed, checked by its validator ``dciodvfy``."""
from __future__ import annotations

import shutil
import subprocess

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from app_fixtures import app_workspace, trained_run  # noqa: F401 (fixtures: the shared tiny run)

from cxrlib.cli import main

CR = "1.2.840.10008.5.1.4.1.1.1"
PATIENT = "Testpatient^Planted"


@pytest.fixture
def dicom_films(tmp_path, synthetic_dataset):
    """Three synthetic films as CR DICOM files of one study (one RLE-compressed, one of another
    size so results must follow each film's own resolution), and one PNG."""
    from pydicom.uid import RLELossless, generate_uid

    from cxrlib.dicom.films import film_to_dicom

    root = tmp_path / "films"
    root.mkdir()
    study = generate_uid()
    pngs = sorted(synthetic_dataset.glob("*/*.png"))[::15][:4]
    for i, src in enumerate(pngs[:3]):
        grey = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
        if i == 2:
            grey = cv2.resize(grey, (90, 110))
        ds = film_to_dicom(grey, patient_id="PID-1", patient_name=PATIENT, study_uid=study,
                           accession="ACC-1", study_date="20260102", instance_number=i + 1,
                           transfer_syntax=RLELossless if i == 1 else None)
        ds.save_as(root / f"film{i}.dcm", enforce_file_format=True)
    shutil.copy(pngs[3], root / "plain.png")
    return root


def test_explain_dicom_out_writes_seg_sc_and_sr_that_reference_the_film(
        trained_run, dicom_films, tmp_path, capsys):
    from cxrlib.dicom.report import read_report
    from cxrlib.dicom.results import RESEARCH_ONLY
    from cxrlib.evaluation.predict import predict_paths
    from cxrlib.explain.batch import lung_segmenter

    out, dcm = tmp_path / "out", tmp_path / "dicom"
    assert main(["explain", trained_run.id[:8], str(dicom_films), "--out", str(out),
                 "--dicom-out", str(dcm), "--deletion-steps", "0", "--method", "gradcam"]) == 0
    captured = capsys.readouterr()
    has_lungs = lung_segmenter()[0] is not None
    n_objects = 3 * (4 if has_lungs else 3)  # flat maps would give fewer; checked below
    table = pd.read_csv(out / "explanations.csv", keep_default_na=False).set_index("path")
    assert not table["flat"].astype(str).eq("True").any()
    assert f"{n_objects} DICOM result objects -> {dcm}" in captured.out
    assert "1 film(s) are not DICOM" in captured.err
    predicted = predict_paths(trained_run, sorted(map(str, dicom_films.glob("*.dcm")))).set_index("path")
    classes = list(trained_run.classes)
    for i in range(3):
        path = dicom_films / f"film{i}.dcm"
        film = pydicom.dcmread(path)
        folder = dcm / f"film{i}"
        sr = pydicom.dcmread(folder / "report-sr.dcm")
        sc = pydicom.dcmread(folder / "overlay-sc.dcm")
        heat = pydicom.dcmread(folder / "heatmap-seg.dcm")
        objects = [sr, sc, heat]
        for obj in objects:  # same study and patient; new series and instance; the product named
            assert obj.StudyInstanceUID == film.StudyInstanceUID
            assert (obj.PatientName, obj.PatientID, obj.AccessionNumber) == (PATIENT, "PID-1", "ACC-1")
            assert obj.SeriesInstanceUID != film.SeriesInstanceUID
            assert obj.SOPInstanceUID != film.SOPInstanceUID
            assert obj.Manufacturer == "CXR Explorer" and obj.SoftwareVersions == "0.1.0"
        assert len({o.SOPInstanceUID for o in objects}) == 3
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == film.SOPInstanceUID
        ref = heat.ReferencedSeriesSequence[0]
        assert ref.SeriesInstanceUID == film.SeriesInstanceUID
        assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == film.SOPInstanceUID
        evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
        assert evidence.StudyInstanceUID == film.StudyInstanceUID
        assert (evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
                .ReferencedSOPInstanceUID == film.SOPInstanceUID)
        # the SR holds predict's probabilities (an independent forward pass) and the run
        report = read_report(sr)
        row = predicted.loc[str(path)]
        np.testing.assert_allclose([report[f"Probability of {c}"] for c in classes],
                                   [row[f"p_{c}"] for c in classes], atol=1e-6)
        assert report["Predicted class"] == row["pred"]
        assert report["Run id"] == trained_run.id and report["Model family"] == "tiny"
        assert report["CAM method"] == "gradcam" and report["Intended use"] == RESEARCH_ONLY
        # the SC is the overlay PNG, pixel for pixel, at the film's size
        png = cv2.cvtColor(cv2.imread(str(out / table.loc[str(path), "overlay"])), cv2.COLOR_BGR2RGB)
        assert sc.pixel_array.shape == (film.Rows, film.Columns, 3)
        np.testing.assert_array_equal(sc.pixel_array, png)
        assert heat.pixel_array.shape == (film.Rows, film.Columns)
        assert heat.SegmentationType == "FRACTIONAL" and heat.pixel_array.max() > 0
        if has_lungs:
            from cxrlib.data.imageio import read_film
            from cxrlib.lungs import segment_lungs

            seg = pydicom.dcmread(folder / "lung-mask-seg.dcm")
            assert seg.SegmentationType == "BINARY"
            mask = segment_lungs(read_film(path).pixels).mask  # the film as the product reads it
            np.testing.assert_array_equal(seg.pixel_array.astype(bool), mask)
            assert "Lung mask quality" in report and "CAM in-lung share" in report


def test_dicom_out_refuses_to_replace_results_unless_overwrite(trained_run, dicom_films, tmp_path,
                                                               capsys):
    """An existing result is a refused output (exit 2, like every other user-named output),
    checked before any film is read; ``--overwrite`` replaces it (it used to be exit 4 and
    ``--overwrite`` was ignored: --dicom-out had a check of its own beside UserOutput)."""
    dcm = tmp_path / "dicom"
    (dcm / "film0").mkdir(parents=True)
    (dcm / "film0" / "report-sr.dcm").write_bytes(b"mine")
    argv = ["explain", trained_run.id[:8], str(dicom_films / "film0.dcm"), "--out",
            str(tmp_path / "out"), "--dicom-out", str(dcm), "--deletion-steps", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (dcm / "film0" / "report-sr.dcm").read_bytes() == b"mine"
    assert not (tmp_path / "out").exists()
    assert main(argv + ["--overwrite"]) == 0
    assert pydicom.dcmread(dcm / "film0" / "report-sr.dcm").Modality == "SR"
    assert not [p for p in (dcm / "film0").iterdir() if p.name.startswith(".")]  # no temporaries


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_dicom_out_never_lands_in_the_workspace_stores(trained_run, dicom_films, tmp_path, capsys,
                                                      overwrite):
    from cxrlib.core import paths

    dcm = paths.workspace() / "models" / "dicom-results"
    assert main(["explain", trained_run.id[:8], str(dicom_films / "film0.dcm"), "--out",
                 str(tmp_path / "out"), "--dicom-out", str(dcm), *overwrite]) == 2
    assert "workspace's own stores" in capsys.readouterr().err
    assert not dcm.exists() and not (tmp_path / "out").exists()


def test_dicom_out_that_is_a_file_is_refused_before_any_work(trained_run, dicom_films, tmp_path,
                                                            capsys):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    assert main(["explain", trained_run.id[:8], str(dicom_films / "film0.dcm"), "--out",
                 str(tmp_path / "out"), "--dicom-out", str(mine)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert mine.read_text() == "mine" and not (tmp_path / "out").exists()


def test_results_must_be_at_the_films_resolution():
    from cxrlib.dicom.films import film_to_dicom
    from cxrlib.dicom.results import lung_mask_seg

    ds = film_to_dicom(np.zeros((40, 50), np.uint8), patient_id="P")
    with pytest.raises(ValueError, match="40 x 50"):
        lung_mask_seg(ds, np.zeros((50, 40), bool))


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy (Debian dicom3tools) is not installed")
def test_dciodvfy_finds_no_errors(tmp_path):
    """The validator reports no error for any object (warnings: only the product's local
    coding scheme, which it cannot know)."""
    from cxrlib.dicom.films import film_to_dicom
    from cxrlib.dicom.report import build_results
    from cxrlib.dicom.results import FilmFindings

    rng = np.random.default_rng(0)
    film = film_to_dicom(rng.integers(0, 256, (64, 48), np.uint8), patient_id="P", study_date="20260101",
                        study_time="101500")
    mask = np.zeros((64, 48), bool)
    mask[10:50, 5:20] = True
    findings = FilmFindings(["COVID-19", "Normal"], [0.25, 0.75], "run1", "tiny", "gradcam",
                            "conv", 0.6, "predicted", False)
    objects = build_results(film, findings, heatmap=rng.random((64, 48)),
                            overlay=rng.integers(0, 256, (64, 48, 3), np.uint8), lung_mask=mask)
    for path in objects.write(tmp_path):
        text = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True).stderr
        lines = [line for line in text.splitlines() if line.startswith(("Error", "Warning"))]
        assert not [line for line in lines if line.startswith("Error")], (path.name, lines)
        assert all("99CXREXPL" in line for line in lines), (path.name, lines)


def test_settings_hide_credentials_and_verify_tls_by_default():
    from cxrlib.dicom.web import PacsSettings

    s = PacsSettings.from_env(env={"CXR_PACS_URL": "https://u:pw-secret@pacs.example.org/dicom-web/",
                                   "CXR_PACS_TOKEN": "tok-secret"})
    assert s.url == "https://pacs.example.org/dicom-web" and s.verify is True
    assert (s.username, s.password, s.token) == ("u", "pw-secret", "tok-secret")
    assert "secret" not in repr(s) and s.auth == "bearer token"
    assert PacsSettings.from_env(env={"CXR_PACS_URL": "https://h/x", "CXR_PACS_VERIFY": "/ca.pem"}).verify == "/ca.pem"
    with pytest.raises(ValueError, match="no PACS URL"):
        PacsSettings.from_env(env={})
    with pytest.raises(ValueError, match="CXR_PACS_TIMEOUT"):
        PacsSettings.from_env(env={"CXR_PACS_URL": "https://h/x", "CXR_PACS_TIMEOUT": "soon"})


def test_the_heatmap_seg_stores_the_heatmap_in_255_steps_and_the_sc_the_overlay():
    import io

    from cxrlib.dicom.films import film_to_dicom
    from cxrlib.dicom.results import heatmap_seg, overlay_sc, to_bytes
    from cxrlib.preprocessing.geometry import heatmap_to_film

    rng = np.random.default_rng(3)
    ds = film_to_dicom(np.zeros((70, 50), np.uint8), patient_id="P")
    small = rng.random((7, 7)).astype(np.float32)
    heat = heatmap_to_film(small, (70, 50), (10, 20, 40, 60))  # the model saw a box of the film
    assert heat.shape == (70, 50) and heat[:20].max() == 0 and heat[:, 40:].max() == 0
    assert heat[20:60, 10:40].max() <= small.max() + 1e-6
    seg = pydicom.dcmread(io.BytesIO(to_bytes(heatmap_seg(ds, heat, method="gradcam",
                                                          layer="conv", target="Normal"))))
    assert seg.MaximumFractionalValue == 255
    np.testing.assert_array_equal(seg.pixel_array, np.round(heat * 255))
    rgb = rng.integers(0, 256, (70, 50, 3), np.uint8)
    sc = pydicom.dcmread(io.BytesIO(to_bytes(overlay_sc(ds, rgb))))
    np.testing.assert_array_equal(sc.pixel_array, rgb)


def test_files_may_still_follow_the_options_and_mixing_them_with_a_study_is_refused(capsys):
    from cxrlib.cli import build_parser

    parser = build_parser()
    for command in ("predict", "explain"):
        args = parser.parse_args([command, "RUN", "--out", "o", "a.png", "folder"])
        assert args.inputs == ["a.png", "folder"] and args.pacs is None
    assert main(["predict", "RUN", "--study", "1.2.3", "--out", "p.csv", "a.png"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["explain", "RUN", "a.png", "--send", "--out", "o"]) == 2
    assert "--send stores results on a PACS" in capsys.readouterr().err


def test_an_unknown_orientation_stays_unknown():
    """A film without Patient Orientation gets none in its results (not an invented one)."""
    from cxrlib.dicom.films import film_to_dicom
    from cxrlib.dicom.report import build_results
    from cxrlib.dicom.results import FilmFindings

    film = film_to_dicom(np.zeros((40, 30), np.uint8), patient_id="P")
    oriented = build_results(film, FilmFindings(["a", "b"], [0.5, 0.5], "r", "tiny", "m", "l"),
                             heatmap=np.zeros((40, 30)), overlay=np.zeros((40, 30, 3), np.uint8))
    assert all(list(ds.PatientOrientation) == ["L", "F"] for ds in oriented.datasets()[:-1])
    del film.PatientOrientation
    objects = build_results(film, FilmFindings(["a", "b"], [0.5, 0.5], "r", "tiny", "m", "l"),
                            heatmap=np.zeros((40, 30)), overlay=np.zeros((40, 30, 3), np.uint8),
                            lung_mask=np.zeros((40, 30), bool))
    images = [ds for kind, ds in objects.items() if kind != "report"]
    assert len(images) == 3 and all(not ds.PatientOrientation for ds in images)


def test_a_film_without_uids_or_preamble_is_one_plain_line_and_the_others_get_results(
        trained_run, dicom_films, tmp_path, capsys):
    """A dataset's DICOM film without a Study / Series Instance UID (a hand-made or stripped file)
    was warned as "AttributeError: 'Dataset' object has no attribute 'StudyInstanceUID'", and one
    saved without the 128-byte preamble (read as a film) as pydicom's advice "Use force=True"."""
    import io

    bare = pydicom.dcmread(dicom_films / "film0.dcm")
    del bare.StudyInstanceUID, bare.SeriesInstanceUID
    bare.save_as(dicom_films / "bare.dcm", enforce_file_format=True)
    raw = io.BytesIO()
    pydicom.dcmread(dicom_films / "film1.dcm").save_as(raw, enforce_file_format=False)
    (dicom_films / "raw.dcm").write_bytes(raw.getvalue()[132:])  # no preamble, no file meta
    assert (dicom_films / "raw.dcm").read_bytes()[128:132] != b"DICM"
    out, dcm = tmp_path / "out", tmp_path / "dicom"
    assert main(["explain", trained_run.id[:8], str(dicom_films), "--out", str(out),
                 "--dicom-out", str(dcm), "--deletion-steps", "0", "--method", "gradcam"]) == 0
    err = capsys.readouterr().err
    assert (f"warning: no DICOM results for {dicom_films / 'bare.dcm'}: its header has no "
            "StudyInstanceUID or SeriesInstanceUID: a result must reference the film's study, "
            "series and instance") in err.splitlines(), err
    assert "Error" not in err and "force=True" not in err
    assert (dcm / "raw" / "report-sr.dcm").is_file() and not (dcm / "bare").exists()
