"""Bad inputs found by a hostile-input hunt: what failed, and the one line the user sees now.

The standing suite is ``test_bad_inputs.py`` (its helpers and its autouse ``fresh`` fixture are
imported from there); inputs are generated, as there (``tests/bad_files.py``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import app_fixtures
import bad_files as bf
import test_bad_inputs as standing
from test_bad_inputs import FIFO_REASON, NOT_UTF8, NOT_UTF8_REASON, _tiny_keras, run_cli

fresh = standing.fresh  # the standing suite's autouse fixture: a fresh workspace, no data roots
small_fs = standing.small_fs  # a small tmpfs as root (disk full), skipped with the reason otherwise
app_workspace, trained_run = app_fixtures.app_workspace, app_fixtures.trained_run  # a tiny run, trained once


# ------------------------------------------------ one rule: nothing read is exit 4, for lungs too
def _empty(folder: Path) -> tuple[Path, list[str]]:
    folder.mkdir()
    return folder, []


def _only_fifo(folder: Path) -> tuple[Path, list[str]]:
    folder.mkdir()
    os.mkfifo(folder / "p.jpg")
    return folder, [f"left out: {folder / 'p.jpg'}: {FIFO_REASON}"]


def _only_non_utf8(folder: Path) -> tuple[Path, list[str]]:
    folder.mkdir()
    Path(os.fsdecode(os.fsencode(folder) + b"/" + NOT_UTF8)).write_bytes(b"\x89PNG")
    return folder, [f"left out: {folder}/bad\\xff.png: {NOT_UTF8_REASON}"]


def _folder_named_png(folder: Path) -> tuple[Path, list[str]]:
    (folder / "dir.png").mkdir(parents=True)
    return folder / "dir.png", []


def _dev_zero(folder: Path) -> tuple[Path, list[str]]:
    return Path("/dev/zero"), ["left out: /dev/zero: "]


@pytest.mark.parametrize("case", [_empty, _only_fifo, _only_non_utf8, _folder_named_png, _dev_zero])
def test_no_film_found_is_exit_4_for_lungs_predict_as_for_predict_and_explain(tmp_path, capsys, case):
    """docs/cli.md: "A command that could read none of its inputs exits 4". ``lungs predict``
    exited 2 ("no film files given") where predict and explain exited 4."""
    given, listed = case(tmp_path / "in")
    model = _tiny_keras(tmp_path)
    for argv in (("predict", model, given, "--out", tmp_path / "p.csv"),
                 ("explain", model, given, "--out", tmp_path / "e"),
                 ("lungs", "predict", given, "--out", tmp_path / "m")):
        rc, _, err = run_cli(capsys, *argv)
        lines = err.splitlines()
        assert rc == 4 and lines[-1] == "error: no image files found", (argv[0], rc, err)
        assert all(any(line.startswith(want) for line in lines) for want in listed), err
        assert "Traceback" not in err
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "e").exists()
    assert not (tmp_path / "m").exists()


# ------------------------------------------------ one shortener of long output names, for masks too
def test_lungs_predict_keeps_two_251_byte_film_names_apart_within_255_bytes(tmp_path, capsys):
    """Two films ``1/<251 q>.jpg`` and ``2/<251 q>.jpg``: the second mask was named
    ``<251 q>__2.png`` (258 bytes): "file name too long", exit 4, one mask written. Masks are
    named by explain's shortener now: a long name cut and given a hash of the whole, then made
    unique."""
    stem = "q" * 251
    for i in (1, 2):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / f"{stem}.jpg").write_bytes(bf.good_png(70 + i))
    rc, out, err = run_cli(capsys, "lungs", "predict", tmp_path / "1", tmp_path / "2", "--out", tmp_path / "m")
    assert rc == 0 and "Traceback" not in err, err
    short = "q" * 184 + "~" + hashlib.sha256(stem.encode()).hexdigest()[:12]  # as explain's overlays
    assert sorted(os.listdir(tmp_path / "m")) == [f"{short}-2.png", f"{short}.png"]
    assert all(len(os.fsencode(n)) <= 255 for n in os.listdir(tmp_path / "m"))
    assert f"{tmp_path / 'm' / short}.png " in out and f"{tmp_path / 'm' / short}-2.png " in out


# ------------------------------------------------ a full disk under TensorFlow's own writers
@pytest.mark.parametrize("fmt, name", [("savedmodel", "saved_model"), ("tflite", "model.tflite")])
def test_export_on_a_full_disk_is_one_line_exit_4_naming_the_users_path(trained_run, tmp_path, capsys,
                                                                        small_fs, fmt, name):
    """A 64 KiB file system: TensorFlow's SavedModel writer raised ResourceExhaustedError
    (a 40-line traceback naming a hidden ``.saved_model.partial-...`` folder, exit 1)."""
    out = small_fs("size=64k") / "export"
    rc, _, err = run_cli(capsys, "export", trained_run.id, "--format", fmt, "--out", out)
    assert rc == 4 and err.splitlines() == [f"error: cannot write {out / name}: no space left on the device"], err
    assert os.listdir(out) == []  # no hidden temporary left behind


# ------------------------------------------------ a foreground run that fails: one line, the real reason
TRAIN = ("train", "--model", "tiny", "--weights", "random", "--mode", "head", "--epochs", "1",
         "--size", "32", "--steps", "none")


def _assert_one_line_failure(err: str, line: str) -> None:
    assert "Traceback" not in err and err.splitlines()[-1] == line, err
    assert [e for e in err.splitlines() if e.startswith("error:")] == [line], err


def test_train_on_identical_films_fails_in_one_line_exit_4_without_a_log_that_is_not_there(tmp_path, capsys):
    """Every film the same bytes: one duplicate cluster, so the grouped split leaves no test side.
    The run printed a traceback, then "error: ValueError: ... (log: .../log.txt)", a log a
    foreground run never writes; exit 1. A data error found before training is exit 4."""
    root = tmp_path / "same"
    for label in ("COVID-19", "Normal", "Viral Pneumonia"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            (root / label / f"{i}.png").write_bytes(bf.good_png(5))
    rc, out, err = run_cli(capsys, *TRAIN, "--data", root)
    assert rc == 4 and "state failed" in out, (rc, out)
    _assert_one_line_failure(err, "error: the split left no training or no test images")


def test_train_with_a_workspace_on_a_full_disk_fails_in_one_line_exit_4(tmp_path, capsys, small_fs, monkeypatch):
    """A cache write of the run (film_scan._save) on a full disk: a traceback, then a log that
    is not there; exit 1. An OS error is exit 4, one line naming the folder, never a temporary."""
    root = standing.dataset(tmp_path / "ds", per_class=6)
    ws = small_fs("size=64k") / "ws"
    monkeypatch.setenv("CXR_WORKSPACE", str(ws))
    rc, out, err = run_cli(capsys, *TRAIN, "--data", root)
    assert rc == 4 and "state failed" in out, (rc, out, err)
    line = err.splitlines()[-1]
    _assert_one_line_failure(err, line)
    assert line.startswith(f"error: {ws / 'models'}/") and line.endswith(": no space left on the device")
    assert "/." not in line and "(log:" not in line  # no hidden temporary, no log that is not there


# ------------------------------------------------ DICOM results of anonymised films
ANONYMISED_AWAY = ("PatientBirthDate", "AccessionNumber", "PatientSex", "StudyDate", "StudyTime",
                   "StudyID", "ReferringPhysicianName")
"""Type 2 attributes of the patient and study modules that anonymisers often remove whole."""


def test_explain_dicom_out_writes_results_of_a_film_without_birth_date_or_accession(
        trained_run, tmp_path, capsys):
    """A DICOM film without PatientBirthDate / AccessionNumber (common once anonymised): the
    results writer raised AttributeError, "warning: no DICOM results ...", nothing written,
    exit 0. Type 2 attributes may be empty: they are written empty and the results are kept."""
    import pydicom

    from cxrlib.dicom.films import film_to_dicom

    (tmp_path / "films").mkdir()
    ds = film_to_dicom(bf.chest(21, 96, 96), patient_id="ANON-7", patient_name="")
    for keyword in ANONYMISED_AWAY:
        delattr(ds, keyword)
    ds.save_as(tmp_path / "films" / "anon.dcm", enforce_file_format=True)
    dcm = tmp_path / "dicom"
    rc, out, err = run_cli(capsys, "explain", trained_run.id, tmp_path / "films", "--out", tmp_path / "o",
                           "--dicom-out", dcm, "--deletion-steps", "0", "--method", "gradcam")
    assert rc == 0 and "warning" not in err and "Traceback" not in err, err
    written = sorted((dcm / "anon").glob("*.dcm"))
    assert {"report-sr.dcm", "overlay-sc.dcm", "heatmap-seg.dcm"} <= {p.name for p in written}, written
    assert f"{len(written)} DICOM result objects -> {dcm}" in out
    for path in written:
        obj = pydicom.dcmread(path)
        assert obj.PatientID == "ANON-7" and obj.StudyInstanceUID == ds.StudyInstanceUID
        assert all(obj.get(keyword, "") in ("", None) for keyword in ANONYMISED_AWAY), path


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools' dciodvfy is not installed")
def test_results_of_an_anonymised_film_pass_the_validator_and_leave_the_film_as_it_was(tmp_path):
    """The validator (dciodvfy) finds no error in the objects of a film without the attributes
    (empty type 2 values are valid), and the film's own dataset gains none of them."""
    import numpy as np

    from cxrlib.dicom.films import film_to_dicom
    from cxrlib.dicom.report import build_results
    from cxrlib.dicom.results import FilmFindings

    film = film_to_dicom(bf.chest(22, 64, 48), patient_id="ANON-8")
    for keyword in ANONYMISED_AWAY:
        delattr(film, keyword)
    findings = FilmFindings(["COVID-19", "Normal"], [0.25, 0.75], "run1", "tiny", "gradcam",
                            "conv", 0.6, "predicted", False)
    mask = np.zeros((64, 48), bool)
    mask[10:50, 5:20] = True
    objects = build_results(film, findings, heatmap=np.full((64, 48), 0.5),
                            overlay=np.dstack([bf.chest(23, 64, 48)] * 3), lung_mask=mask)
    assert not [k for k in ANONYMISED_AWAY if k in film]
    for path in objects.write(tmp_path):
        text = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True).stderr
        assert not [line for line in text.splitlines() if line.startswith("Error")], (path.name, text)
