"""Dataset page: counts, the size table, figures, unreadable files, samples, one film large."""
from __future__ import annotations

import base64
import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from app_fixtures import app, app_workspace, metric, plotly_titles, shown_texts, texts  # noqa: F401

PAGE = "views/dataset.py"


def _on_disk(root):
    """Per class, read independently of the library: file count, (width, height) of every film
    decoded with OpenCV, and distinct patient ids in the dataset's manifest.csv."""
    manifest = pd.read_csv(root / "manifest.csv")
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        sizes = [cv2.imread(str(f), cv2.IMREAD_UNCHANGED).shape[1::-1]
                 for f in sorted(folder.glob("*.png"))]
        found[folder.name] = {"sizes": sizes,
                              "patients": manifest.loc[manifest["label"] == folder.name,
                                                       "patient_id"].nunique()}
    return found


def _numbers(values) -> list:
    """A plotly JSON array: a plain list, or numpy's typed-array form ``{dtype, bdata}``."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def test_counts_figures_and_size_table(app, synthetic_dataset, tmp_path):
    # A copy with one film of another size, so that each class's min / max differ somewhere.
    root = tmp_path / "copy"
    shutil.copytree(synthetic_dataset, root)
    film = root / "Normal" / "normal_0003.png"
    cv2.imwrite(str(film), cv2.resize(cv2.imread(str(film), cv2.IMREAD_GRAYSCALE), (120, 80)))
    at = app(PAGE, data_dir=root)
    disk = _on_disk(root)
    classes = list(disk)
    assert classes == ["COVID-19", "Normal", "Viral Pneumonia"]
    n_images = sum(len(d["sizes"]) for d in disk.values())
    assert texts(at.title) == ["Dataset"]
    assert metric(at, "Images") == str(n_images)
    assert metric(at, "Classes") == str(len(classes))
    assert metric(at, "Patients (known ids)") == str(sum(d["patients"] for d in disk.values()))
    assert metric(at, "Unreadable files") == "0"

    assert plotly_titles(at) == ["Images per class", "Image size by class"]
    counts, sizes = (json.loads(c.proto.spec)["data"] for c in at.get("plotly_chart"))
    assert [(t["name"], t["x"]) for t in counts] == [("images", classes), ("patients", classes)]
    assert _numbers(counts[0]["y"]) == [len(disk[c]["sizes"]) for c in classes]
    assert _numbers(counts[1]["y"]) == [disk[c]["patients"] for c in classes]
    assert [t["name"] for t in sizes] == classes  # one scatter trace a class, every film a point
    for trace in sizes:  # jittered by about 2 % on screen; the hover keeps the true size
        shown = [tuple(int(v) for v in size.split(" px")[0].split(" × ")) for size, _ in trace["customdata"]]
        assert sorted(shown) == sorted(disk[trace["name"]]["sizes"])
        for (w, h), x, y in zip(shown, _numbers(trace["x"]), _numbers(trace["y"])):
            assert abs(x / w - 1) < 0.15 and abs(y / h - 1) < 0.15

    table = at.dataframe[0].value.set_index("label")
    assert list(table.index) == classes
    for c in classes:  # the published min / max size table
        widths, heights = zip(*disk[c]["sizes"])
        assert table.loc[c, "images"] == len(widths) and table.loc[c, "patients"] == disk[c]["patients"]
        assert (table.loc[c, "width min"], table.loc[c, "width max"]) == (min(widths), max(widths))
        assert (table.loc[c, "height min"], table.loc[c, "height max"]) == (min(heights), max(heights))
        aspects = [w / h for w, h in disk[c]["sizes"]]
        assert table.loc[c, "aspect min"] == pytest.approx(min(aspects))
        assert table.loc[c, "aspect max"] == pytest.approx(max(aspects))
    assert table.loc["Normal", "width max"] == 120 and table.loc["Normal", "height min"] == 80
    assert "Every image file could be read." in texts(at.success)
    assert any("Synthetic demo data" in w for w in texts(at.warning))


def test_sources_and_formats_tables(app):
    at = app(PAGE)
    sources, formats = at.dataframe[1].value, at.dataframe[2].value
    assert sources.loc["synthetic", "COVID-19"] == 24
    assert formats.loc["PNG", "total"] == 72


def test_sample_grid_and_reshuffle(app):
    at = app(PAGE)
    grid = [c for c in shown_texts(at.caption) if "96×96" in c]
    assert len(grid) == 18  # 6 films for each of 3 classes
    [b for b in at.button if b.label == "Reshuffle"][0].click().run()
    again = [c for c in shown_texts(at.caption) if "96×96" in c]
    assert len(again) == 18 and again != grid


def test_any_film_large_with_metadata(app):
    at = app(PAGE)
    at.selectbox(key="dataset_film").set_value("Normal/normal_0003.png").run()
    assert "Normal/normal_0003.png" in shown_texts(at.caption)
    meta = dict(at.dataframe[-1].value.itertuples(index=False))
    assert meta["class"] == "Normal" and meta["size"] == "96 × 96 px" and meta["format"] == "PNG"


def test_unreadable_file_is_listed_with_its_reason(app, synthetic_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_dataset, copy)
    (copy / "Normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    assert cv2.imread(str(copy / "Normal" / "broken.png")) is None
    at = app(PAGE, data_dir=copy)
    assert metric(at, "Unreadable files") == "1"
    assert any("1 file(s) could not be read" in e for e in texts(at.error))
    problems = [d.value for d in at.dataframe if "reason" in d.value.columns][0]
    assert list(problems["rel_path"]) == ["Normal/broken.png"] and problems["reason"].iloc[0]


def test_patient_data_of_a_dicom_film_is_shown_only_behind_a_toggle(app, synthetic_dataset, tmp_path,
                                                                      monkeypatch):
    from test_patient_data import BIRTH, NAME, PATIENT_ID, write_dicom

    copy = tmp_path / "copy"
    shutil.copytree(synthetic_dataset, copy)
    write_dicom(copy / "Normal" / "film.dcm", cv2.imread(str(copy / "Normal" / "normal_0003.png"), 0))

    def table(at):
        at.selectbox(key="dataset_film").set_value("Normal/film.dcm").run()
        return dict(at.dataframe[-1].value.itertuples(index=False))

    at = app(PAGE, data_dir=copy)
    meta = table(at)
    assert meta["format"] == "DICOM" and at.toggle(key="dataset_patient_data").value is False
    assert not {NAME, PATIENT_ID, BIRTH} & set(meta.values())  # off by default
    at.toggle(key="dataset_patient_data").set_value(True).run()
    meta = dict(at.dataframe[-1].value.itertuples(index=False))
    assert (meta["patient name"], meta["patient id (DICOM)"], meta["birth date"]) == (NAME, PATIENT_ID, BIRTH)

    monkeypatch.setenv("CXR_PATIENT_DATA", "never")  # a shared server that never shows them
    at = app(PAGE, data_dir=copy)
    meta = table(at)
    assert not [t for t in at.toggle if t.key == "dataset_patient_data"]
    assert not {NAME, PATIENT_ID, BIRTH} & set(meta.values())


def test_a_film_that_cannot_be_decoded_is_named_as_it_is(app, synthetic_dataset, tmp_path):
    """A DICOM whose syntax has no decoder passes the header scan, so the Dataset page offers it
    and its thumbnail; both said so with the file name as Markdown (``**`` made it bold, ``:red[``
    red, and the name the user reads was not the file's)."""
    import io

    import pydicom
    from pydicom.encaps import encapsulate

    import bad_files as bf

    ds = pydicom.dcmread(io.BytesIO(bf.dicom(tmp_path)))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.65"  # hierarchical JPEG: no decoder
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xde" + bytes(64) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    copy, name = tmp_path / "copy", "**x** :red[y].dcm"
    shutil.copytree(synthetic_dataset, copy)
    for old in sorted((copy / "Viral Pneumonia").glob("*.png"))[5:]:
        old.unlink()  # five films left: every one is in the sample grid
    ds.save_as(copy / "Viral Pneumonia" / name, enforce_file_format=True)
    at = app(PAGE, data_dir=copy)
    assert f"unreadable: {name}" in shown_texts(at.warning)
    at.selectbox(key="dataset_film").set_value(f"Viral Pneumonia/{name}").run()
    assert not at.exception
    opened = [e for e in shown_texts(at.error) if e.startswith("Could not open")]
    assert opened == [f"Could not open Viral Pneumonia/{name}: cannot decode DICOM pixel data: "
                      "transfer syntax 1.2.840.10008.1.2.4.65 (JPEG Lossless, Hierarchical (Process 28)) "
                      "has no decoder in pydicom; convert the file to an uncompressed or JPEG Lossless "
                      "syntax first (e.g. with dcmtk's dcmconv or gdcmconv)"], texts(at.error)
