"""Dataset page: counts, the size table, figures, unreadable files, samples, one film large."""
from __future__ import annotations

import shutil

import cv2
from app_fixtures import app, app_workspace, metric, plotly_titles, texts  # noqa: F401

PAGE = "pages/dataset.py"


def test_counts_figures_and_size_table(app, synthetic_dataset):
    at = app(PAGE)
    assert texts(at.title) == ["Dataset"]
    assert metric(at, "Images") == "72"
    assert metric(at, "Classes") == "3"
    assert metric(at, "Patients (known ids)") == "36"  # 2 films per synthetic patient
    assert metric(at, "Unreadable files") == "0"
    assert plotly_titles(at) == ["Images per class", plotly_titles(at)[1]]
    assert "width" in plotly_titles(at)[1].lower() or "size" in plotly_titles(at)[1].lower()
    table = at.dataframe[0].value
    assert list(table["label"]) == ["COVID-19", "Normal", "Viral Pneumonia"]
    # every synthetic film is 96 x 96: the published min / max table says so
    for col in ("width_min", "width_max", "height_min", "height_max"):
        assert set(table[col]) == {96}
    assert "Every image file could be read." in texts(at.success)
    assert any("Synthetic demo data" in w for w in texts(at.warning))


def test_sources_and_formats_tables(app):
    at = app(PAGE)
    sources, formats = at.dataframe[1].value, at.dataframe[2].value
    assert sources.loc["synthetic", "COVID-19"] == 24
    assert formats.loc["PNG", "total"] == 72


def test_sample_grid_and_reshuffle(app):
    at = app(PAGE)
    grid = [c for c in texts(at.caption) if "96×96" in c]
    assert len(grid) == 18  # 6 films for each of 3 classes
    [b for b in at.button if b.label == "Reshuffle"][0].click().run()
    again = [c for c in texts(at.caption) if "96×96" in c]
    assert len(again) == 18 and again != grid


def test_any_film_large_with_metadata(app):
    at = app(PAGE)
    at.selectbox(key="dataset_film").set_value("Normal/normal_0003.png").run()
    assert "Normal/normal_0003.png" in texts(at.caption)
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
