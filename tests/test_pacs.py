"""The PACS tier: a real Orthanc with its DICOMweb plugin, started on 127.0.0.1 for this module.

Films of the bundled sample (``samples/cxr3-sample``) are converted to DICOM here (uncompressed
and RLE Lossless, and JPEG 2000 Lossless where an encoder is installed), stored by STOW-RS,
found by QIDO-RS, retrieved by WADO-RS, predicted and explained with the shared tiny run, and the
results stored back and retrieved again. Then the failure cases, each one line and nothing
written. Skipped with the reason when Orthanc is not installed (``make orthanc``).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from app_fixtures import app, app_workspace, trained_run  # noqa: F401 (fixtures: the shared tiny run)
from local_http import serve

from cxrlib.cli import main
from cxrlib.dicom.local_pacs import why_no_orthanc

pytestmark = [pytest.mark.pacs,
              pytest.mark.skipif(why_no_orthanc() is not None, reason=str(why_no_orthanc()))]

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "cxr3-sample"
N_FILMS = 8
PATIENT = "Plantedname^Radiology"
PATIENT_ID = "PACS-PID-7"
ACCESSION = "ACC-PACS-1"


def _syntaxes() -> list[str | None]:
    from pydicom.pixels import get_encoder
    from pydicom.uid import JPEG2000Lossless, RLELossless

    found = [None, RLELossless]
    if get_encoder(JPEG2000Lossless).is_available:
        found.append(JPEG2000Lossless)
    return found


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """A running Orthanc (module scope: started once, stopped after the module)."""
    from cxrlib.dicom.local_pacs import local_orthanc

    with local_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture(scope="module")
def study(pacs, tmp_path_factory):
    """N_FILMS sample films as one CR study on the PACS (stored by STOW-RS); also kept as local
    files for the independent computations. Plus a study with no CR/DX series."""
    from pydicom.uid import generate_uid

    from cxrlib.dicom.films import film_to_dicom
    from cxrlib.dicom.web import PacsClient

    local = tmp_path_factory.mktemp("local-films")
    files = sorted(SAMPLE.glob("*/*.jpg"))[::120 // N_FILMS][:N_FILMS]
    uid, syntaxes, datasets = generate_uid(), _syntaxes(), []
    for i, path in enumerate(files):
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        ds = film_to_dicom(grey, patient_id=PATIENT_ID, patient_name=PATIENT, study_uid=uid,
                           accession=ACCESSION, study_date="20260110", study_time="093000",
                           instance_number=i + 1, transfer_syntax=syntaxes[i % len(syntaxes)])
        ds.save_as(local / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        datasets.append(ds)
    other = film_to_dicom(np.zeros((64, 64), np.uint8), patient_id="NO-FILMS", modality="OT")
    other.SOPClassUID = other.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    client = PacsClient(pacs.settings())
    assert client.store(datasets + [other]) == N_FILMS + 1
    return {"uid": uid, "local": local, "other": other.StudyInstanceUID, "syntaxes": syntaxes}


@pytest.fixture
def env(pacs, monkeypatch):
    """The PACS's URL and credentials in the environment, as a user sets them."""
    monkeypatch.setenv("CXR_PACS_URL", pacs.url)
    monkeypatch.setenv("CXR_PACS_USER", pacs.username)
    monkeypatch.setenv("CXR_PACS_PASSWORD", pacs.password)
    return pacs


def test_search_retrieve_predict_explain_send_and_retrieve_the_results(
        trained_run, pacs, study, env, tmp_path, monkeypatch, capsys):
    from cxrlib.data.imageio import read_film
    from cxrlib.dicom.report import read_report
    from cxrlib.dicom.web import PacsClient
    from cxrlib.explain.batch import lung_segmenter
    from cxrlib.lungs import segment_lungs
    from cxrlib.lungs.measures import dice

    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    # QIDO-RS: the study is found by patient id, by accession and by date; names are not shown
    assert main(["pacs", "search", "--pacs", pacs.url, "--patient-id", PATIENT_ID, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [r["study_uid"] for r in found] == [study["uid"]] and found[0]["films"] == N_FILMS
    assert found[0]["modalities"] == "CR" and "Plantedname" not in json.dumps(found)
    client = PacsClient(pacs.settings())
    assert [s.study_uid for s in client.search_studies(accession=ACCESSION)] == [study["uid"]]
    assert study["uid"] in {s.study_uid for s in client.search_studies(date_from="2026-01-10",
                                                                       date_to="2026-01-10")}
    assert study["uid"] not in {s.study_uid for s in client.search_studies(date_from="2026-01-11")}
    # WADO-RS: the films come back as stored, in memory, in their own transfer syntax
    got = client.retrieve_films(study["uid"])
    assert len(got) == N_FILMS
    assert {str(d.file_meta.TransferSyntaxUID) for d in got} == {
        s or pydicom.uid.ExplicitVRLittleEndian for s in study["syntaxes"]}
    # predict: the retrieved films score as the local files do
    csv = tmp_path / "pred.csv"
    assert main(["predict", trained_run.id[:8], "--pacs", pacs.url, "--accession", ACCESSION,
                 "--out", str(csv)]) == 0
    pred = pd.read_csv(csv, keep_default_na=False).set_index("path")
    assert len(pred) == N_FILMS and (pred["error"] == "").all()
    # asked again, the table it wrote is the user's now: refused (exit 2) unless --overwrite
    before = csv.read_bytes()
    assert main(["predict", trained_run.id[:8], "--pacs", pacs.url, "--accession", ACCESSION,
                 "--out", str(csv)]) == 2
    assert csv.read_bytes() == before
    classes = list(trained_run.classes)
    cols = [f"p_{c}" for c in classes]
    from cxrlib.evaluation.predict import predict_paths

    local = predict_paths(trained_run, sorted(study["local"].glob("*.dcm")))
    local.index = [Path(p).stem for p in local["path"]]
    np.testing.assert_allclose(pred[cols].to_numpy(float), local.loc[pred.index, cols].to_numpy(float),
                               atol=1e-6)
    # explain and send the results back (STOW-RS)
    before = {s["0020000E"]["Value"][0] for s in client._client.search_for_series(study["uid"])}
    out, dcm = tmp_path / "out", tmp_path / "dicom"
    assert main(["explain", trained_run.id[:8], "--pacs", pacs.url, "--study", study["uid"],
                 "--out", str(out), "--dicom-out", str(dcm), "--send", "--deletion-steps", "0"]) == 0
    text = capsys.readouterr().out
    per_film = 4 if lung_segmenter()[0] is not None else 3
    assert f"{N_FILMS * per_film} DICOM result objects stored on the PACS" in text
    assert len(list(dcm.glob("*/*.dcm"))) == N_FILMS * per_film
    # the same --dicom-out again: refused (exit 2) before anything is explained or sent
    assert main(["explain", trained_run.id[:8], "--pacs", pacs.url, "--study", study["uid"],
                 "--dicom-out", str(dcm), "--send"]) == 2
    assert "already exists" in capsys.readouterr().err
    table = pd.read_csv(out / "explanations.csv", keep_default_na=False).set_index("path")
    # the results, retrieved again: SEG = the product's mask, SR = predict, SC = the PNG overlay
    series = [s for s in client._client.search_for_series(study["uid"])
              if s["0020000E"]["Value"][0] not in before]
    by_modality: dict[str, list] = {}
    for s in series:
        modality = s["00080060"]["Value"][0]
        by_modality.setdefault(modality, []).extend(
            client.retrieve_series(study["uid"], s["0020000E"]["Value"][0]))
    assert len(by_modality["SR"]) == N_FILMS and len(by_modality["OT"]) == N_FILMS
    assert len(by_modality["SEG"]) == N_FILMS * (per_film - 2)
    local_files = {p.stem: p for p in study["local"].glob("*.dcm")}
    for sr in by_modality["SR"]:
        source = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0] \
            .ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        report = read_report(sr)
        np.testing.assert_allclose([report[f"Probability of {c}"] for c in classes],
                                   pred.loc[source, cols].to_numpy(float), atol=1e-6)
        assert report["Predicted class"] == pred.loc[source, "pred"]
    for sc in by_modality["OT"]:
        source = sc.SourceImageSequence[0].ReferencedSOPInstanceUID
        png = cv2.cvtColor(cv2.imread(str(out / table.loc[source, "overlay"])), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(sc.pixel_array, png)
    lung_segs = [s for s in by_modality["SEG"] if s.SegmentationType == "BINARY"]
    for seg in lung_segs:
        source = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        mask = segment_lungs(read_film(local_files[source]).pixels).mask
        assert dice(seg.pixel_array.astype(bool), mask) == 1.0
        np.testing.assert_array_equal(seg.pixel_array.astype(bool), mask)
    assert len(lung_segs) == (N_FILMS if per_film == 4 else 0)
    # nothing retrieved was written anywhere but where asked; the patient's name nowhere
    # (not in the outputs, not in the workspace with its run folders)
    assert list(work.iterdir()) == []
    workspace = Path(os.environ["CXR_WORKSPACE"])
    for path in [*out.rglob("*"), csv, *workspace.rglob("*")]:
        if path.is_file():
            assert b"Plantedname" not in path.read_bytes(), path


def _one_line_and_nothing_written(capsys, tmp_path, args: list[str], message: str) -> str:
    out = tmp_path / "out"
    started = time.monotonic()
    rc = main(args + ["--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 4, err
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()
    return err[0], time.monotonic() - started


def test_a_wrong_password_is_one_line_that_names_no_secret(trained_run, pacs, study, env,
                                                         monkeypatch, capsys, caplog, tmp_path):
    import base64
    import logging

    monkeypatch.setenv("CXR_PACS_PASSWORD", "not-the-password-42")
    with caplog.at_level(logging.DEBUG):  # every library's debug log, dicomweb-client's too
        line, _ = _one_line_and_nothing_written(
            capsys, tmp_path, ["explain", trained_run.id[:8], "--study", study["uid"]],
            "refused the credentials (HTTP 401")
    assert "not-the-password-42" not in line and pacs.password not in line
    basic = base64.b64encode(f"{pacs.username}:not-the-password-42".encode()).decode()
    assert caplog.text and "not-the-password-42" not in caplog.text and basic not in caplog.text


def test_a_server_that_is_down(trained_run, study, env, capsys, tmp_path):
    from cxrlib.dicom.local_pacs import free_port

    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    _one_line_and_nothing_written(capsys, tmp_path, ["predict", trained_run.id[:8], "--pacs", url,
                                                     "--study", study["uid"]], "cannot be reached")


def test_a_study_with_no_cr_or_dx_series(trained_run, study, env, capsys, tmp_path):
    _one_line_and_nothing_written(capsys, tmp_path, ["explain", trained_run.id[:8], "--study",
                                                     study["other"]],
                                  "has no CR or DX series (its series are: OT)")


def test_a_slow_server_times_out_within_the_bound(trained_run, env, monkeypatch, capsys, tmp_path):
    server, base = serve(lambda path: (200, "application/dicom+json", b"[]"), delay_s=3)
    monkeypatch.setenv("CXR_PACS_TIMEOUT", "0.5")
    try:
        url = f"{base}/dicom-web"
        _, took = _one_line_and_nothing_written(
            capsys, tmp_path, ["explain", trained_run.id[:8], "--pacs", url, "--accession", "X"],
            "did not answer within 0.5 s")
    finally:
        server.shutdown()
    assert took < 2.5  # bounded by the time-out, not by the server


def test_explain_page_pacs_source_search_pick_explain_and_send(app, trained_run, pacs, study, env):
    """The Explain page's PACS source: a patient id search finds the study, its films are
    listed, one is explained (probabilities as predict's), and "Send to PACS" stores its SR."""
    from app_fixtures import metric, texts

    from cxrlib.dicom.report import read_report
    from cxrlib.dicom.web import PacsClient
    from cxrlib.evaluation.predict import predict_paths

    at = app("views/explain.py")
    at.radio(key="ex_source").set_value("PACS (DICOMweb)").run()
    at.text_input(key="pacs_patient").set_value(PATIENT_ID).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="pacs_study").value == study["uid"]
    assert "Plantedname" not in " ".join(str(o) for o in at.selectbox(key="pacs_study").options)
    films = at.selectbox(key="pacs_film").options
    assert len(films) == N_FILMS
    sop = at.selectbox(key="pacs_film").value
    local = predict_paths(trained_run, [study["local"] / f"{sop}.dcm"]).iloc[0]
    for cls in trained_run.classes:
        assert metric(at, f"Model score · {cls}") == f"{local[f'p_{cls}']:.3f}"
    client = PacsClient(pacs.settings())
    before = {s["0020000E"]["Value"][0] for s in client._client.search_for_series(study["uid"])}
    at.button(key="pacs_send").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(t.startswith("Stored ") for t in texts(at.success)), texts(at.success)
    new = [s for s in client._client.search_for_series(study["uid"])
           if s["0020000E"]["Value"][0] not in before]
    reports = [d for s in new if s["00080060"]["Value"][0] == "SR"
               for d in client.retrieve_series(study["uid"], s["0020000E"]["Value"][0])]
    assert len(reports) == 1
    report = read_report(reports[0])
    np.testing.assert_allclose([report[f"Probability of {c}"] for c in trained_run.classes],
                               [local[f"p_{c}"] for c in trained_run.classes], atol=1e-6)
    # another film, then away and back: the search, the study and the film are as left
    at.selectbox(key="pacs_film").select_index(1).run()
    other = at.selectbox(key="pacs_film").value
    assert other != sop
    at.switch_page("views/home.py").run()
    at.switch_page("views/explain.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key="pacs_patient").value == PATIENT_ID
    assert (at.selectbox(key="pacs_study").value, at.selectbox(key="pacs_film").value) == (
        study["uid"], other)


@pytest.mark.browser
def test_browser_picks_a_study_explains_a_film_and_sends_the_results(
        app_workspace, synthetic_dataset, pacs, study, env, tmp_path):
    """The real server in headless Chromium: the Explain page's PACS source finds the study by
    patient id, explains its first film, and "Send to PACS" stores its results (checked on the
    PACS). Screenshot: test-output/screenshots/explain-pacs.png."""
    from test_browser import _chromium, _ready, _require_browser, _settle, _shoot, _streamlit

    from cxrlib.dicom.web import PacsClient

    _require_browser()
    from playwright.sync_api import sync_playwright

    client = PacsClient(pacs.settings())
    before = {s["0020000E"]["Value"][0] for s in client._client.search_for_series(study["uid"])}
    with _streamlit(synthetic_dataset, app_workspace, tmp_path / "streamlit.log") as url, \
            sync_playwright() as pw, _chromium(pw) as tab:
        tab.goto(f"{url}/explain")
        tab.get_by_role("heading", name="Explain", exact=True).first.wait_for()
        _settle(tab)
        tab.get_by_text("PACS (DICOMweb)").click()
        _settle(tab)
        box = tab.get_by_label("Patient id")
        box.fill(PATIENT_ID)
        box.press("Enter")
        try:
            tab.get_by_text("Study (1 found)").first.wait_for()
        except Exception:
            _shoot(tab, "explain-pacs-failed")
            raise
        _ready(tab, "explain")
        assert tab.locator('[data-testid="stException"]').count() == 0
        assert tab.get_by_text("Plantedname").count() == 0
        tab.get_by_role("button", name="Send to PACS").click()
        tab.get_by_text("Stored ").first.wait_for()
        _settle(tab)
        _shoot(tab, "explain-pacs")
    new = [s for s in client._client.search_for_series(study["uid"])
           if s["0020000E"]["Value"][0] not in before]
    assert sorted(s["00080060"]["Value"][0] for s in new).count("SR") == 1
