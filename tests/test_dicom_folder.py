"""A dataset folder of DICOM files, as a PACS export or a CD leaves it: films named without an
image ending (``IM000001``, a SOP instance UID), and DICOMs whose header and pixel data disagree
(cut short, or a header lying about Rows / Columns). Helpers come from the standing suite."""
from __future__ import annotations

import os
import warnings

import pydicom
import pytest

import bad_files as bf
import cxrlib.data.datasets as datasets
from cxrlib.data.imageio import ImageReadError, read_film, read_header
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


# ------------------------------------------------ header and pixel data that disagree
def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


# name: (bytes maker, reason at the header scan and at decode)
DISAGREE = {
    "cut.dcm": (lambda t: _cut(bf.dicom(t)),
                "truncated DICOM (the file ends inside its pixel data: 3812 of 8192 bytes)"),
    "lying-6000.dcm": (lambda t: _dicom(t, Rows=6000, Columns=6000),
                       "corrupt DICOM (its header's 6000 x 6000 px, 1 sample of 16 bits, need "
                       "72000000 bytes of pixel data; it holds 8192)"),
    "lying-frames.dcm": (lambda t: _dicom(t, NumberOfFrames=3),
                         "corrupt DICOM (its header's 64 x 64 px x 3 frames, 1 sample of 16 bits, "
                         "need 24576 bytes of pixel data; it holds 8192)"),
}


@pytest.mark.parametrize("name", list(DISAGREE))
def test_a_dicom_cut_short_or_lying_about_its_size_is_unreadable_at_the_scan(tmp_path, capsys, name):
    """Before, the header scan took these as films (a 6000 x 6000 one in the dataset's sizes);
    only a decode found them out, so the scan's counts and the Dataset page's films were wrong."""
    make, reason = DISAGREE[name]
    root = dataset(tmp_path / "ds", per_class=4)
    path = root / "COVID-19" / name
    path.write_bytes(make(tmp_path))
    rc, out, err = run_cli(capsys, "scan", root)
    assert rc == 0 and "images 12  unreadable 1" in out, out + err
    assert f"unreadable: {path}: {reason}" in err.splitlines(), err
    for reader in (read_header, read_film):
        with pytest.raises(ImageReadError) as info:
            reader(path)
        assert info.value.reason == reason


def test_pixel_data_beyond_the_header_is_the_films_warning_not_a_stray_line(tmp_path):
    """Rows halved in the header, the pixels kept: before, pydicom's UserWarning (naming neither
    the film nor the product) went to stderr and the film read as its top half without a word."""
    path = tmp_path / "rows-halved.dcm"
    path.write_bytes(_dicom(tmp_path, Rows=32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any Python warning fails the test
        film = read_film(path)
    assert film.pixels.shape == (32, 64)
    assert film.meta.extra["decoder_warnings"] == [
        "its pixel data holds 2 frames of 64 x 32 px, its header says 1: only the first is read "
        "(the header's Rows, Columns or Number of Frames may be wrong)"]
    assert read_header(path).width == 64  # a film all the same: the scan lists it


# ------------------------------------------------ links to folders inside a class folder
def test_a_link_to_a_folder_inside_a_class_folder_is_named_not_passed_over(tmp_path, capsys):
    """``COVID-19/batch2 -> ../../incoming`` (or a loop, ``up -> ..``): the walk does not follow
    it, and said nothing, so its films were missing from the dataset without a word (``predict``
    of the same folder says "a link to a folder; not followed")."""
    root = dataset(tmp_path / "ds", per_class=4)
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming" / "IM000009").write_bytes(bf.dicom(tmp_path))
    os.symlink(tmp_path / "incoming", root / "COVID-19" / "batch2")
    os.symlink("..", root / "COVID-19" / "up")
    rc, out, err = run_cli(capsys, "scan", root)
    assert rc == 0 and "images 12  unreadable 0" in out, out + err
    for name in ("batch2", "up"):
        assert (f"warning: folder {root / 'COVID-19' / name} is a link to a folder; not followed"
                in err.splitlines()), err


# ------------------------------------------------ output names of films named by a UID
def test_films_named_by_a_uid_keep_their_whole_name_in_outputs(tmp_path):
    """``1.2.840.113619.2.55.3`` lost its ``.3`` as if it were a file ending: the overlay of
    ``...55.3`` was ``...55-gradcam.png`` and that of ``...55.4`` ``...55-2-gradcam.png``."""
    from cxrlib.cli.common import output_names

    folder = tmp_path / "study"
    folder.mkdir()
    files = [folder / "1.2.840.113619.2.55.3", folder / "1.2.840.113619.2.55.4",
             folder / "IM000001", folder / "film.DCM", folder / "x.png"]
    assert output_names([folder], files) == ["1.2.840.113619.2.55.3", "1.2.840.113619.2.55.4",
                                             "IM000001", "film", "x"]


# ------------------------------------------------ values beyond Bits Stored
def test_values_beyond_bits_stored_are_the_films_warning(tmp_path):
    """A 12-bit film whose header says Bits Stored 11: the values above 2047 wrap (the standard
    reads only the stored bits), so a fifth of the film came out scrambled without a word."""
    path = tmp_path / "bits11.dcm"
    path.write_bytes(_dicom(tmp_path, BitsStored=11, HighBit=10))
    film = read_film(path)
    assert film.meta.extra["decoder_warnings"] == [
        "pixel values use bits above Bits Stored (11): only the stored bits are read, so the film "
        "may look scrambled (an overlay in the pixel data, or a header that says too few bits)"]
    assert "decoder_warnings" not in read_film(tmp_path / "tmp.dcm").meta.extra  # 12 bits in 12


def test_predict_and_explain_say_which_films_were_read_with_a_warning(tmp_path, capsys):
    """The app showed a film's decoder warning (values above Bits Stored: maybe scrambled), but
    ``predict`` and ``explain`` scored the film without a word. Now the row's ``warning`` column
    holds it and stderr names the film; a plain film's row has none."""
    import pandas as pd

    from test_bad_inputs import _keras, _model

    model_path = tmp_path / "m.keras"
    _model(_keras(), (64, 64, 3), 3).save(model_path)
    folder = tmp_path / "in"
    folder.mkdir()
    odd, plain = folder / "bits11.dcm", folder / "plain.dcm"
    odd.write_bytes(_dicom(tmp_path, BitsStored=11, HighBit=10))
    plain.write_bytes(bf.dicom(tmp_path))
    expected = read_film(odd).meta.extra["decoder_warnings"][0]
    rc, out, err = run_cli(capsys, "predict", model_path, folder, "--out", tmp_path / "p.csv")
    assert rc == 0 and "2 predicted, 0 unreadable, 0 left out, 1 read with a warning" in out, out
    table = pd.read_csv(tmp_path / "p.csv", keep_default_na=False).set_index("path")
    assert table.loc[str(odd), "warning"] == expected and table.loc[str(plain), "warning"] == ""
    assert table.loc[str(odd), "pred"] != ""  # scored all the same, and said
    assert f"warning: {odd}: {expected}" in err.splitlines()
    rc, out, err = run_cli(capsys, "explain", model_path, folder, "--out", tmp_path / "x",
                           "--deletion-steps", "0")
    assert rc == 0 and f"warning: {odd}: {expected}" in err.splitlines(), err
    table = pd.read_csv(tmp_path / "x" / "explanations.csv", keep_default_na=False)
    assert dict(zip(table["path"], table["warning"])) == {str(odd): expected, str(plain): ""}
