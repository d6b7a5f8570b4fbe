"""A dataset folder of DICOM files, as a PACS export or a CD leaves it: films named without an
image ending (``IM000001``, a SOP instance UID), and DICOMs whose header and pixel data disagree
(cut short, or a header lying about Rows / Columns). Helpers come from the standing suite."""
from __future__ import annotations

import os

import pydicom
import pytest

import bad_files as bf
import cxrlib.data.datasets as datasets
from cxrlib.evaluation.predict import image_files
from test_bad_inputs import dataset, run_cli, snapshot


@pytest.fixture(autouse=True)
def fresh(workspace, monkeypatch):
    datasets._SCAN_CACHE.clear()
    monkeypatch.delenv("CXR_DATA_ROOTS", raising=False)


def _dicom(tmp_path, **header) -> bytes:
    """A 64 x 64 12-bit DICOM film, its header changed by ``header`` (the pixel data kept)."""
    import io

    ds = pydicom.dcmread(io.BytesIO(bf.dicom(tmp_path)))
    for key, value in header.items():
        setattr(ds, key, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# ------------------------------------------------ films named without an image ending
def test_dicom_films_named_without_an_image_ending_are_scanned_and_predicted(tmp_path, capsys):
    """A PACS export names its films ``IM000001`` or by UID: before, the scan and training
    passed them over without a word, and ``predict`` left them out as "not an image file name"."""
    root = dataset(tmp_path / "ds", per_class=4)
    films = [root / "COVID-19" / "IM000001", root / "Normal" / "1.2.840.113619.2.55.3.604688"]
    for path in films:
        path.write_bytes(bf.dicom(tmp_path))
    (root / "COVID-19" / "NOTES").write_text("not a film\n")
    (root / "COVID-19" / "short").write_bytes(b"DICM")          # shorter than a preamble
    os.symlink("IM000001", root / "COVID-19" / "IM000002")       # a link is not sniffed
    before = snapshot(root)
    os.mkfifo(root / "COVID-19" / "PIPE")                        # never opened: it would block

    rc, out, err = run_cli(capsys, "scan", root)
    assert rc == 0 and "images 14  unreadable 0" in out, out + err
    table = datasets.scan_dataset(root).manifest.set_index("rel_path")
    assert table.loc["COVID-19/IM000001", "format"] == "DICOM"
    assert table.loc["Normal/1.2.840.113619.2.55.3.604688", "label"] == "Normal"

    left_out: list[dict] = []
    found = image_files(root / "COVID-19", left_out)
    assert root / "COVID-19" / "IM000001" in found
    reasons = {os.path.basename(r["path"]): r["reason"] for r in left_out}
    assert set(reasons) == {"NOTES", "short", "PIPE", "IM000002"}, reasons
    os.unlink(root / "COVID-19" / "PIPE")
    assert snapshot(root) == before

