"""cxrlib.data.datasets: layouts built in temporary folders, manifests, fingerprints, problems, stats."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2

import numpy as np
import pandas as pd
import pytest

import cxrlib.data.datasets as datasets
from cxrlib.core.classes import BACTERIAL, COVID, NORMAL, VIRAL
from cxrlib.data.datasets import LAYOUTS, DatasetError, scan_dataset
from cxrlib.data.rows import MANIFEST_COLUMNS
from cxrlib.data.identity import patient_id_from_name
from cxrlib.data.stats import dataset_stats


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    datasets._SCAN_CACHE.clear()
    datasets._HEADER_CACHE.clear()
    # These tests write films of a few pixels; the minimum size has its own tests
    # (tests/test_bad_inputs.py).
    monkeypatch.setenv("CXR_MIN_FILM_SIDE", "1")


def film(path: Path, width: int = 8, height: int = 6, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width), value, np.uint8))
    return path


def rels(ds) -> dict[str, str]:
    return dict(zip(ds.manifest["rel_path"], ds.manifest["label"]))


# ------------------------------------------------------------------ layouts
def test_class_folders_with_aliases(tmp_path):
    root = tmp_path / "my-set"
    film(root / "COVID" / "a.png")
    film(root / "normal" / "b.jpg")
    film(root / "virus" / "sub" / "c.png")
    film(root / "Lung_Opacity" / "d.png")
    (root / "README.txt").write_text("notes")
    ds = scan_dataset(root)
    assert ds.layout == "class_folders"
    assert rels(ds) == {"COVID/a.png": COVID, "normal/b.jpg": NORMAL, "virus/sub/c.png": VIRAL}
    assert list(ds.manifest.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert set(ds.manifest["source"]) == {"class_folders"}  # the layout, never the folder's name
    assert ds.manifest["patient_id"].tolist() == ["a", "b", "c"]
    assert ds.manifest["path"].tolist() == [str(root.resolve() / r) for r in ds.manifest["rel_path"]]
    assert any("Lung_Opacity" in w for w in ds.warnings)
    assert ds.classes() == [COVID, NORMAL, VIRAL]


def test_class_folders_inside_split_folders_keep_the_split(tmp_path):
    root = tmp_path / "Covid19-dataset"
    film(root / "train" / "Covid" / "1.png")
    film(root / "train" / "Viral Pneumonia" / "2.png")
    film(root / "test" / "Normal" / "3.png")
    ds = scan_dataset(root)
    assert rels(ds) == {"train/Covid/1.png": COVID, "train/Viral Pneumonia/2.png": VIRAL,
                        "test/Normal/3.png": NORMAL}
    assert dict(zip(ds.manifest["rel_path"], ds.manifest["folder_split"]))["test/Normal/3.png"] == "test"


@pytest.mark.parametrize("layout", ["kermany", "class_folders"])
def test_split_folders_are_not_sources(tmp_path, layout):
    """train/ and test/ folders are how a set was split, not where its films came from: the
    source rule (per-source table, leave-one-source-out) must not hold out "test" as a hospital."""
    from cxrlib.data.identity import film_sources
    from cxrlib.audit.loso import loso_sources

    if layout == "kermany":
        root = _kermany(tmp_path)
    else:
        root = tmp_path / "Covid19-dataset"
        for split in ("train", "test"):
            film(root / split / "Covid" / f"{split}1.png")
            film(root / split / "Normal" / f"{split}2.png")
    manifest = scan_dataset(root).manifest
    assert set(manifest["folder_split"]) >= {"train", "test"}
    assert set(film_sources(manifest)) == {layout}
    with pytest.raises(ValueError, match="two sources"):
        loso_sources(manifest)


def test_radiography_database_reads_images_and_remembers_masks(tmp_path):
    root = tmp_path / "COVID-19_Radiography_Dataset"
    film(root / "COVID" / "images" / "COVID-1.png")
    film(root / "COVID" / "masks" / "COVID-1.png", value=255)
    film(root / "COVID" / "images" / "COVID-2.png")  # no mask
    film(root / "Viral Pneumonia" / "images" / "Viral Pneumonia-1.png")
    film(root / "Lung_Opacity" / "images" / "Lung_Opacity-1.png")
    (root / "COVID.metadata.xlsx").write_bytes(b"xlsx")
    ds = scan_dataset(tmp_path)  # the unzipped parent folder: the wrapper is looked through
    assert ds.layout == "radiography_db"
    masks = dict(zip(ds.manifest["rel_path"], ds.manifest["mask_path"]))
    prefix = "COVID-19_Radiography_Dataset/"
    assert masks == {prefix + "COVID/images/COVID-1.png": str(root.resolve() / "COVID/masks/COVID-1.png"),
                     prefix + "COVID/images/COVID-2.png": "",
                     prefix + "Viral Pneumonia/images/Viral Pneumonia-1.png": ""}
    assert set(ds.manifest["source"]) == {"radiography_db"}


def _kermany(root: Path) -> Path:
    cx = root / "chest_xray"
    film(cx / "train" / "NORMAL" / "IM-0115-0001.jpeg")
    film(cx / "train" / "NORMAL" / "NORMAL2-IM-1427-0001.jpeg")
    film(cx / "train" / "PNEUMONIA" / "person1661_virus_2872.jpeg")
    film(cx / "train" / "PNEUMONIA" / "person1661_virus_2873.jpeg")
    film(cx / "train" / "PNEUMONIA" / "person1_bacteria_1.jpeg")
    film(cx / "test" / "PNEUMONIA" / "person20_virus_51.jpeg")
    film(cx / "val" / "PNEUMONIA" / "person3_bacteria_13.jpeg")
    return cx


@pytest.mark.parametrize("level", ["parent", "chest_xray"])
def test_kermany_layout_excludes_bacterial_by_default(tmp_path, level):
    cx = _kermany(tmp_path)
    ds = scan_dataset(tmp_path if level == "parent" else cx)
    assert ds.layout == "kermany"
    m = ds.manifest.set_index(ds.manifest["rel_path"].str.split("/").str[-1])
    assert m.loc["person1661_virus_2872.jpeg", "label"] == VIRAL
    assert m.loc["IM-0115-0001.jpeg", "label"] == NORMAL
    assert len(m) == 5 and BACTERIAL not in set(m["label"])
    assert m.loc["person20_virus_51.jpeg", "kermany_split"] == "test"
    assert m.loc["person1661_virus_2873.jpeg", "patient_id"] == "person1661"
    assert m.loc["NORMAL2-IM-1427-0001.jpeg", "patient_id"] == "NORMAL2-IM-1427"
    assert any("2 bacterial" in w for w in ds.warnings)


def test_kermany_bacterial_as_its_own_class(tmp_path):
    _kermany(tmp_path)
    ds = scan_dataset(tmp_path, bacterial="class")
    labels = ds.manifest["label"].value_counts().to_dict()
    assert labels == {NORMAL: 2, VIRAL: 3, BACTERIAL: 2}
    assert ds.classes() == [NORMAL, VIRAL, BACTERIAL]
    assert len(ds.for_task("3class")) == 5
    with pytest.raises(ValueError):
        scan_dataset(tmp_path, bacterial="maybe")


def test_covid_folder_beside_kermany_folders_is_kept(tmp_path):
    root = tmp_path / "mixed"
    film(root / "COVID" / "covid_1.png")
    film(root / "NORMAL" / "IM-0001-0001.jpeg")
    film(root / "PNEUMONIA" / "person5_virus_11.jpeg")
    film(root / "PNEUMONIA" / "pneumonia_77.jpeg")  # says neither virus nor bacteria
    ds = scan_dataset(root)
    assert rels(ds) == {"COVID/covid_1.png": COVID, "NORMAL/IM-0001-0001.jpeg": NORMAL,
                        "PNEUMONIA/person5_virus_11.jpeg": VIRAL}
    assert any("1 PNEUMONIA films name neither" in w for w in ds.warnings)


def test_manifest_beside_class_folders_supplies_patient_group_source(tmp_path):
    root = tmp_path / "cxr"
    for name in ("a.png", "b.png", "c.png"):
        film(root / "COVID-19" / name)
    film(root / "Normal" / "00000013_005.png")
    pd.DataFrame({"file": ["COVID-19/a.png", "COVID-19/b.png", "COVID-19/c.png"],
                  "label": ["COVID-19", "COVID-19", "Normal"], "patient_id": ["p1", "p1", ""],
                  "group_id": ["g1", "g1", "g2"], "source_repo": ["repo/x", "repo/x", "repo/y"]}
                 ).to_csv(root / "manifest.csv", index=False)
    ds = scan_dataset(root)
    m = ds.manifest.set_index("rel_path")
    assert m.loc["COVID-19/a.png", ["patient_id", "group_id", "source"]].tolist() == ["p1", "g1", "repo/x"]
    assert m.loc["COVID-19/c.png", ["patient_id", "group_id"]].tolist() == ["c", "g2"]  # empty id
    assert m.loc["Normal/00000013_005.png", ["patient_id", "group_id", "source"]].tolist() == [
        "00000013", "00000013", "class_folders"]  # not in the manifest: name rule, the layout
    assert ds.manifest_file == root.resolve() / "manifest.csv"
    assert m.loc["COVID-19/c.png", "label"] == COVID  # the folder wins over a clashing manifest
    assert any(w.startswith("1 files have a different label") for w in ds.warnings)


def test_manifest_mask_path_column_names_the_films_own_masks(tmp_path):
    """A manifest.csv ``mask_path`` (relative to it) is the film's own lung mask, which wins over
    a predicted one; a path leading outside the dataset, or to no file, is refused and said."""
    root = tmp_path / "cxr"
    for name in ("a.png", "b.png", "c.png", "d.png"):
        film(root / "COVID-19" / name)
    film(root / "masks" / "a.png", value=255)
    film(tmp_path / "outside.png", value=255)
    (root / "notes.txt").write_text("not a mask")
    pd.DataFrame({"file": ["COVID-19/a.png", "COVID-19/b.png", "COVID-19/c.png", "COVID-19/d.png",
                           "COVID-19/e.png"],
                  "label": ["COVID-19"] * 5,
                  "mask_path": ["masks/a.png", "../outside.png", "masks/missing.png", "", "notes.txt"]}
                 ).to_csv(root / "manifest.csv", index=False)
    film(root / "COVID-19" / "e.png")
    ds = scan_dataset(root)
    masks = dict(zip(ds.manifest["rel_path"], ds.manifest["mask_path"]))
    assert masks == {"COVID-19/a.png": str(root.resolve() / "masks" / "a.png"), "COVID-19/b.png": "",
                     "COVID-19/c.png": "", "COVID-19/d.png": "", "COVID-19/e.png": ""}
    assert "manifest_mask_path" not in ds.manifest.columns
    assert any(w.startswith("3 manifest.csv mask paths") for w in ds.warnings), ds.warnings
    # the scan cache sees a mask file appear: the next scan uses it
    film(root / "masks" / "missing.png", value=255)
    again = scan_dataset(root).manifest.set_index("rel_path")["mask_path"]
    assert again["COVID-19/c.png"] == str(root.resolve() / "masks" / "missing.png")


def test_a_manifest_beside_a_wrapper_folder_names_its_films_relative_to_itself(tmp_path):
    """A manifest.csv at the root, the class folders one wrapper folder down: its ``file`` paths
    are relative to the manifest, as documented (they used to be looked up relative to the
    class folders' parent, so no row matched and nothing said so)."""
    root = tmp_path / "set"
    film(root / "inner" / "COVID-19" / "a.png")
    film(root / "inner" / "Normal" / "b.png")
    pd.DataFrame({"file": ["inner/COVID-19/a.png", "inner/Normal/b.png"], "label": ["COVID-19", "Normal"],
                  "patient_id": ["P1", "P2"], "source_repo": ["x", "y"]}).to_csv(root / "manifest.csv", index=False)
    m = scan_dataset(root).manifest.set_index("rel_path")
    assert m.loc["inner/COVID-19/a.png", ["patient_id", "source"]].tolist() == ["P1", "x"]
    assert m.loc["inner/Normal/b.png", ["patient_id", "source"]].tolist() == ["P2", "y"]


def test_a_manifest_in_any_wrapper_folder_between_root_and_films_is_read(tmp_path):
    """Opened two wrapper folders above the class folders, with the manifest.csv in the middle
    one: it was looked for only beside the class folders and at the root, so it was ignored."""
    root = tmp_path / "outer"
    film(root / "set" / "inner" / "COVID-19" / "a.png")
    film(root / "set" / "inner" / "Normal" / "b.png")
    pd.DataFrame({"file": ["inner/COVID-19/a.png", "inner/Normal/b.png"], "label": ["COVID-19", "Normal"],
                  "patient_id": ["P1", "P2"]}).to_csv(root / "set" / "manifest.csv", index=False)
    ds = scan_dataset(root)
    assert ds.manifest_file == (root / "set" / "manifest.csv").resolve()
    assert sorted(ds.manifest["patient_id"]) == ["P1", "P2"]


def test_folders_beside_split_folders_are_named_when_left_out(tmp_path):
    root = tmp_path / "set"
    film(root / "train" / "COVID-19" / "a.png")
    film(root / "train" / "Normal" / "b.png")
    film(root / "hospA" / "COVID-19" / "c.png")
    ds = scan_dataset(root)
    assert len(ds.manifest) == 2
    assert any("hospA" in w and "not read" in w for w in ds.warnings), ds.warnings
    # a manifest.csv that lists them all: the manifest layout reads every film, no such warning
    film(root / "train" / "misc" / "d.png")
    shutil.rmtree(root / "train" / "COVID-19")
    shutil.rmtree(root / "train" / "Normal")
    pd.DataFrame({"file": ["train/misc/d.png", "hospA/COVID-19/c.png"], "label": ["Normal", "COVID-19"]}
                 ).to_csv(root / "manifest.csv", index=False)
    datasets._SCAN_CACHE.clear()
    ds = scan_dataset(root)
    assert ds.layout == "manifest" and len(ds.manifest) == 2
    assert not any("not read" in w for w in ds.warnings), ds.warnings


def test_a_manifest_that_lists_none_of_the_films_says_so(tmp_path):
    root = tmp_path / "set"
    film(root / "COVID-19" / "a.png")
    pd.DataFrame({"file": ["elsewhere/a.png"], "label": ["COVID-19"], "patient_id": ["P1"]}
                 ).to_csv(root / "manifest.csv", index=False)
    ds = scan_dataset(root)
    assert ds.manifest["patient_id"].tolist() == ["a"]
    assert any("lists none of the" in w for w in ds.warnings), ds.warnings


def test_manifest_with_missing_columns_is_tolerated(tmp_path):
    root = tmp_path / "set"
    film(root / "covid" / "x.png")
    pd.DataFrame({"file": ["covid/x.png"], "patient_id": ["P9"]}).to_csv(root / "manifest.csv", index=False)
    m = scan_dataset(root).manifest
    assert m[["patient_id", "group_id", "source"]].iloc[0].tolist() == ["P9", "P9", "class_folders"]


def test_manifest_only_layout(tmp_path):
    root = tmp_path / "flat"
    film(root / "img" / "1.png")
    film(root / "img" / "2.png")
    pd.DataFrame({"file": ["img/1.png", "img/2.png", "img/3.png", "img/4.png"],
                  "label": ["covid", "NORMAL", "Normal", "Lung Opacity"]}
                 ).to_csv(root / "manifest.csv", index=False)
    film(root / "img" / "4.png")
    ds = scan_dataset(root)
    assert ds.layout == "manifest"
    assert rels(ds) == {"img/1.png": COVID, "img/2.png": NORMAL}
    assert ds.problems["reason"].tolist() == ["listed in manifest.csv but not found"]
    assert any("not a known class" in w for w in ds.warnings)


@pytest.mark.parametrize("name,expected", [
    ("person1661_virus_2872.jpeg", "person1661"),
    ("person1_bacteria_1.jpeg", "person1"),
    ("kermany_person300_virus_621.jpg", "person300"),
    ("00000013_005.png", "00000013"),
    ("IM-0115-0001.jpeg", "IM-0115"),
    ("COVID-123.png", None),
    ("personal_photo.png", None),
    ("0000001_005.png", None),
])
def test_patient_id_from_name(name, expected):
    assert patient_id_from_name(name) == expected


# ------------------------------------------------------------------ fingerprint and cache
def _three_class(root: Path) -> Path:
    film(root / "COVID-19" / "c1.png", 10, 20)
    film(root / "COVID-19" / "c2.png", 30, 40)
    film(root / "Normal" / "n1.png", 16, 16)
    film(root / "Viral Pneumonia" / "v1.png", 12, 6)
    return root


def _fresh_fingerprint(root: Path) -> str:
    datasets._SCAN_CACHE.clear()
    datasets._HEADER_CACHE.clear()
    return scan_dataset(root).fingerprint


def test_fingerprint_changes_on_add_remove_replace_and_not_otherwise(tmp_path):
    root = _three_class(tmp_path / "d")
    base = _fresh_fingerprint(root)
    assert _fresh_fingerprint(root) == base
    (root / "README.txt").write_text("not an image")  # non-image files do not count
    os.utime(root / "Normal", ns=(1, 1))
    assert _fresh_fingerprint(root) == base

    film(root / "Normal" / "n2.png")
    added = _fresh_fingerprint(root)
    (root / "Normal" / "n2.png").unlink()
    assert added != base and _fresh_fingerprint(root) == base

    target = root / "COVID-19" / "c1.png"
    stat = target.stat()
    data = target.read_bytes()
    target.write_bytes(data[:-13] + bytes([data[-13] ^ 0xFF]) + data[-12:])  # same size, new bytes
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    newer = _fresh_fingerprint(root)
    film(target, 20, 10, value=7)  # another size, but the old mtime
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size != stat.st_size
    resized = _fresh_fingerprint(root)
    assert len({base, added, newer, resized}) == 4


def test_second_scan_of_unchanged_folder_reads_no_headers(tmp_path, monkeypatch):
    root = _three_class(tmp_path / "d")
    first = scan_dataset(root)
    calls = []
    monkeypatch.setattr(datasets, "read_header", lambda p: calls.append(p))
    second = scan_dataset(root)
    assert calls == [] and second.fingerprint == first.fingerprint
    pd.testing.assert_frame_equal(second.manifest, first.manifest)
    second.manifest.loc[0, "label"] = "changed"  # callers get copies
    assert scan_dataset(root).manifest.loc[0, "label"] != "changed"


def test_adding_a_file_reads_only_its_header(tmp_path, monkeypatch):
    root = _three_class(tmp_path / "d")
    scan_dataset(root)
    real, calls = datasets.read_header, []
    monkeypatch.setattr(datasets, "read_header", lambda p: calls.append(p) or real(p))
    film(root / "Normal" / "new.png")
    assert len(scan_dataset(root)) == 5
    assert calls == [str(root.resolve() / "Normal" / "new.png")]


# ------------------------------------------------------------------ problems, warnings, errors
def test_bad_files_are_listed_not_fatal(tmp_path):
    root = _three_class(tmp_path / "d")
    (root / "COVID-19" / "empty.png").write_bytes(b"")
    (root / "COVID-19" / "notes.png").write_text("this is text")
    good = (root / "Normal" / "n1.png").read_bytes()
    (root / "Normal" / "cut.png").write_bytes(good[: len(good) - 20])
    film(root / "Viral Pneumonia" / "huge.png", 100, 100)
    ds = scan_dataset(root, max_pixels=5_000)
    reasons = dict(zip(ds.problems["rel_path"], ds.problems["reason"]))
    assert set(reasons) == {"COVID-19/empty.png", "COVID-19/notes.png", "Normal/cut.png",
                            "Viral Pneumonia/huge.png"}
    assert "empty" in reasons["COVID-19/empty.png"] and "not an image" in reasons["COVID-19/notes.png"]
    assert "truncated" in reasons["Normal/cut.png"] and "too large" in reasons["Viral Pneumonia/huge.png"]
    assert len(ds) == 4 and not set(reasons) & set(ds.manifest["rel_path"])
    assert dataset_stats(ds).set_index("label")["unreadable"].to_dict() == {COVID: 2, NORMAL: 1, VIRAL: 1}


def test_empty_class_folder_is_a_warning(tmp_path):
    root = tmp_path / "d"
    film(root / "COVID-19" / "a.png")
    (root / "Normal").mkdir()
    ds = scan_dataset(root)
    assert len(ds) == 1 and any("'Normal'" in w and "no images" in w for w in ds.warnings)


def test_dataset_errors_say_what_is_wrong(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="not found"):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        scan_dataset(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        scan_dataset(tmp_path / "empty")
    film(tmp_path / "odd" / "cats" / "1.png")
    film(tmp_path / "odd" / "dogs" / "2.png")
    with pytest.raises(DatasetError, match="Accepted layouts") as info:
        scan_dataset(tmp_path / "odd")
    assert all(name in str(info.value) for name in LAYOUTS)
    (tmp_path / "hollow" / "COVID").mkdir(parents=True)
    (tmp_path / "hollow" / "Normal").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        scan_dataset(tmp_path / "hollow")
    (tmp_path / "bad" / "Normal").mkdir(parents=True)
    (tmp_path / "bad" / "Normal" / "x.png").write_text("text")
    with pytest.raises(DatasetError, match="no readable images"):
        scan_dataset(tmp_path / "bad")


def test_unreadable_folder_raises_permission_error_message(tmp_path, monkeypatch):
    root = _three_class(tmp_path / "locked")
    real_scandir = os.scandir

    def scandir(path="."):  # tests run as root here, where chmod 000 does not lock a folder
        if Path(path) == root.resolve():
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DatasetError, match="permission denied"):
        scan_dataset(root)


def test_progress_reports_every_file_up_to_the_total(tmp_path):
    root = tmp_path / "d"
    for i in range(150):
        film(root / ("COVID-19" if i % 2 else "Normal") / f"{i}.png")
    calls = []
    scan_dataset(root, progress=lambda done, total: calls.append((done, total)), workers=2)
    assert calls[0] == (0, 150) and calls[-1] == (150, 150)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) <= 102


# ------------------------------------------------------------------ stats and tasks
def test_dataset_stats_against_hand_counts(tmp_path):
    root = _three_class(tmp_path / "d")
    pd.DataFrame({"file": ["COVID-19/c1.png", "COVID-19/c2.png"], "patient_id": ["p", "p"],
                  "source": ["s1", "s2"]}).to_csv(root / "manifest.csv", index=False)
    film(root / "COVID-19" / "c3.jpg", 20, 10)
    stats = dataset_stats(scan_dataset(root)).set_index("label")
    covid = stats.loc[COVID]
    assert covid["images"] == 3 and covid["patients"] == 2  # p, c3
    assert (covid["width_min"], covid["width_max"], covid["width_mean"]) == (10, 30, 20)
    assert (covid["height_min"], covid["height_max"], covid["height_mean"]) == (10, 40, 70 / 3)
    assert covid["aspect_min"] == pytest.approx(0.5) and covid["aspect_max"] == pytest.approx(2.0)
    assert covid["formats"] == "PNG (2); JPEG (1)"
    assert covid["sources"] == "class_folders (1); s1 (1); s2 (1)"
    assert stats.loc[VIRAL, "aspect_max"] == pytest.approx(2.0)
    assert list(stats.index) == [COVID, NORMAL, VIRAL]


def test_for_task_keeps_the_task_classes_with_their_own_fingerprint(tmp_path):
    root = _three_class(tmp_path / "d")
    ds = scan_dataset(root)
    binary = ds.for_task("binary")
    assert set(binary.manifest["label"]) == {COVID, NORMAL} and len(binary) == 3
    assert binary.task == "binary" and len(ds) == 4
    # the task's fingerprint is that of the same films scanned without the other class
    two = tmp_path / "two"
    for cls in (COVID, NORMAL):
        shutil.copytree(root / cls, two / cls)
    assert binary.fingerprint == scan_dataset(two).fingerprint
    assert binary.fingerprint != ds.fingerprint
    # A new Viral film changes the 3-class fingerprint but not the binary task's.
    shutil.copy(next((root / "Viral Pneumonia").iterdir()), root / "Viral Pneumonia" / "new.png")
    again = scan_dataset(root)
    assert again.fingerprint != ds.fingerprint
    assert again.for_task("binary").fingerprint == binary.fingerprint
    assert again.for_task("3class").fingerprint != ds.for_task("3class").fingerprint
    with pytest.raises(ValueError):
        ds.for_task("5class")


def test_fingerprint_survives_a_copy_or_move_of_the_folder_but_not_a_changed_film(tmp_path):
    root = _three_class(tmp_path / "d")
    first = scan_dataset(root).fingerprint
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, copy)  # new paths, new modification times, same content
    assert scan_dataset(copy).fingerprint == first
    moved = tmp_path / "moved"
    root.rename(moved)
    assert scan_dataset(moved).fingerprint == first
    film = sorted((copy / "COVID-19").iterdir())[0]
    data = bytearray(film.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the film, same size
    film.write_bytes(bytes(data))
    assert scan_dataset(copy).fingerprint != first


def test_header_columns_for_dicom_16bit_png_and_rgb_jpeg(tmp_path):
    from test_imageio import dicom_file, png_bytes

    root = tmp_path / "d"
    (root / "COVID-19").mkdir(parents=True)
    dicom_file(root / "COVID-19" / "a.dcm", np.zeros((12, 10), np.uint16), "MONOCHROME1")
    (root / "Normal").mkdir()
    (root / "Normal" / "b.png").write_bytes(png_bytes(np.zeros((5, 7), np.uint16), 0, 16))
    (root / "Viral Pneumonia").mkdir()
    cv2.imwrite(str(root / "Viral Pneumonia" / "c.jpg"), np.zeros((9, 11, 3), np.uint8))
    m = scan_dataset(root).manifest.set_index("rel_path")
    cols = ["format", "width", "height", "channels", "bit_depth"]
    assert m.loc["COVID-19/a.dcm", cols].tolist() == ["DICOM", 10, 12, 1, 16]
    assert m.loc["Normal/b.png", cols].tolist() == ["PNG", 7, 5, 1, 16]
    assert m.loc["Viral Pneumonia/c.jpg", cols].tolist() == ["JPEG", 11, 9, 3, 8]
