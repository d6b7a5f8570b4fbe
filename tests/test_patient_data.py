"""Patient data (issue 24, section 4): a DICOM's patient name, id and birth date are read only for a
display the user asks for. Scanning, training, predicting, explaining, reviewing and exporting
DICOM films leaves none of them in any file of the workspace or in what the CLI prints.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrlib.cli import main
from cxrlib.data.imageio import patient_fields, read_film

pydicom = pytest.importorskip("pydicom")

NAME, PATIENT_ID, BIRTH = "Plantedname^Zelda^Q", "PLANTEDID4242", "19450704"
# every spelling the planted values could take in a file (case-insensitive search on raw bytes)
NEEDLES = [b"plantedname", b"zelda", b"plantedid4242", b"19450704", b"1945-07-04", b"04/07/1945", b"07/04/1945"]


def write_dicom(path: Path, grey: np.ndarray) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "DX"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, BIRTH
    ds.set_pixel_data(grey, "MONOCHROME2", 8)
    ds.save_as(path, enforce_file_format=True)
    return path


def dicom_dataset(root: Path, per_class: int = 8) -> Path:
    from cxrlib.data.synthetic import CLASSES, synthetic_film

    rng = np.random.default_rng(5)
    for label in CLASSES:
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            write_dicom(root / label / f"{label.split()[0].lower()}_{i}.dcm",
                        synthetic_film(label, 64, rng, vary_anatomy=False))
    return root


def leaks(folder: Path) -> list[str]:
    """Files under ``folder`` whose bytes hold any planted value."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes().lower()
        found += [f"{path}: {n.decode()}" for n in NEEDLES if n in data]
    return found


def test_patient_fields_are_read_only_on_request(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", np.full((40, 40), 100, np.uint8))
    assert patient_fields(path) == {"patient name": NAME, "patient id (DICOM)": PATIENT_ID,
                                    "birth date": BIRTH}
    film = read_film(path)  # what the scan, training and the app get: no patient element
    assert not [v for v in film.meta.extra.values() if any(n in str(v).lower().encode() for n in NEEDLES)]
    png = tmp_path / "b.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert patient_fields(png) == {} and patient_fields(tmp_path / "missing.dcm") == {}


@pytest.mark.slow
def test_no_patient_name_or_birth_date_is_left_in_the_workspace(workspace, tmp_path, capsys):
    from cxrlib.reviews.records import Review
    from cxrlib.reviews.store import ReviewStore, default_path

    data = dicom_dataset(tmp_path / "films")
    assert leaks(data)  # the films do carry the planted values
    out = workspace / "outputs"  # the user's own outputs, searched with the rest
    assert main(["scan", str(data)]) == 0
    scanned = capsys.readouterr()
    assert "images 24  unreadable 0" in scanned.out
    assert main(["train", "--data", str(data), "--model", "tiny", "--weights", "random", "--mode", "head",
                 "--epochs", "2", "--size", "64", "--seed", "3"]) == 0
    printed = capsys.readouterr()
    run_id = printed.out.split()[1]
    film = data / "Normal" / "normal_0.dcm"
    assert main(["predict", run_id, str(data), "--out", str(out / "pred.csv")]) == 0
    assert main(["explain", run_id, str(film), "--out", str(out / "explain"), "--deletion-steps", "4"]) == 0
    ReviewStore(default_path()).add(Review(reviewer="dr test", run_id=run_id, rel_path="Normal/normal_0.dcm",
                                           agrees_with_label=True, agrees_with_prediction=False,
                                           heatmap_location="lung_findings", confidence=3))
    assert main(["reviews", "export", run_id, "--out", str(out / "reviews.csv")]) == 0
    assert main(["evaluate", run_id, "--out-dir", str(out / "eval")]) == 0
    printed_after = capsys.readouterr()

    files = [p for p in workspace.rglob("*") if p.is_file()]
    assert len(files) > 10 and (out / "pred.csv").exists() and default_path().exists()
    assert leaks(workspace) == []
    text = "".join(scanned + printed + printed_after).lower().encode()
    assert [n for n in NEEDLES if n in text] == []
