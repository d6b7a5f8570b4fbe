"""Bad inputs about names: one film spelled two ways in a manifest.csv, file names holding control
characters, a dataset folder whose own name is not UTF-8, and a manifest's header.

Helpers come from the standing suite (``tests/test_bad_inputs.py``, ``tests/bad_files.py``).
"""
from __future__ import annotations

import pytest

import bad_files as bf
import cxrlib.data.datasets as datasets
from test_bad_inputs import _manifest_only, run_cli


@pytest.fixture(autouse=True)
def fresh(workspace, monkeypatch):
    datasets._SCAN_CACHE.clear()
    monkeypatch.delenv("CXR_DATA_ROOTS", raising=False)


# ------------------------------------------------ one film, two spellings in manifest.csv
def test_a_film_listed_twice_in_two_spellings_with_two_labels_is_left_out(tmp_path, capsys):
    """``films//f0.png`` and ``films/../films/f3.png`` are f0 and f3 again: before, each entered the
    dataset twice, under both labels (6 files scanned as 8 images), with no warning."""
    rows = [f"films/f{i}.png,{('COVID-19', 'Normal')[i % 2]}" for i in range(6)]
    rows += ["films//f0.png,Normal", "films/../films/f3.png,COVID-19", "./films/f5.png,COVID-19",
             "../ds/films/f1.png,Normal"]  # f1 again, its label the same: no conflict
    root = _manifest_only(tmp_path / "ds", "file,label\n" + "\n".join(rows) + "\n")
    rc, out, err = run_cli(capsys, "scan", root)
    assert rc == 0 and "images 3  unreadable 3" in out, out + err
    lines = err.splitlines()
    for name, n, labels in (("f0", 2, "COVID-19, Normal"), ("f3", 2, "Normal, COVID-19"),
                            ("f5", 2, "Normal, COVID-19")):
        assert (f"warning: manifest.csv lists films/{name}.png {n} times with different labels "
                f"({labels}): which one is right cannot be told") in lines, err
        assert (f"unreadable: {root / 'films' / name}.png: listed in manifest.csv with different "
                f"labels ({labels}); left out") in lines, err
    ds = datasets.scan_dataset(root)
    assert sorted(ds.manifest["rel_path"]) == ["films/f1.png", "films/f2.png", "films/f4.png"]


def test_a_path_that_climbs_out_of_the_dataset_is_still_refused(tmp_path, capsys):
    from cxrlib.data.roots import REFUSED_OUTSIDE

    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.png").write_bytes(bf.good_png(9))
    rows = [f"films/f{i}.png,{('COVID-19', 'Normal')[i % 2]}" for i in range(6)]
    rows += ["films/../../outside/secret.png,Normal", "films//../../outside/secret.png,COVID-19"]
    root = _manifest_only(tmp_path / "ds", "file,label\n" + "\n".join(rows) + "\n")
    ds = datasets.scan_dataset(root)
    assert len(ds) == 6 and not any("outside" in p for p in ds.manifest["path"])
    secret = str(tmp_path / "outside" / "secret.png")
    assert dict(zip(ds.problems["path"], ds.problems["reason"])) == {
        secret: "listed in manifest.csv with different labels (Normal, COVID-19); left out"}
    rows[-1] = "films//../../outside/secret.png,Normal"  # one label: refused for where it leads
    (root / "manifest.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    datasets._SCAN_CACHE.clear()
    ds = datasets.scan_dataset(root)
    assert dict(zip(ds.problems["path"], ds.problems["reason"])) == {secret: REFUSED_OUTSIDE}


# ------------------------------------------------ control characters in file names
NL, ESC = "c\nd.png", "e\x1b[31mRED.png"
SHOWN = {NL: "c\\nd.png", ESC: "e\\x1b[31mRED.png"}


def test_printable_escapes_control_characters_and_bytes_that_are_not_utf8():
    import os

    from cxrlib.data.roots import printable

    assert printable("a\tb\rc\nd\x00e\x7ff\x85g\x9bh.png") == "a\\tb\\rc\\nd\\x00e\\x7ff\\x85g\\x9bh.png"
    assert printable(os.fsdecode(b"/d/bad\xff\n.png")) == "/d/bad\\xff\\n.png"
    assert printable("/d/Überblick ü.png") == "/d/Überblick ü.png"  # printable text as it is


def _no_raw_control(err: str) -> None:
    assert "\x1b" not in err and not any(line.startswith(("d.png", "RED")) for line in err.splitlines())


def test_scan_prints_a_name_with_control_characters_escaped(tmp_path, capsys):
    from test_bad_inputs import dataset

    root = dataset(tmp_path / "ds", per_class=2)
    for name in SHOWN:
        (root / "Normal" / name).write_bytes(b"")  # unreadable: listed with its name
    rc, out, err = run_cli(capsys, "scan", root)
    assert rc == 0 and "images 6  unreadable 2" in out
    for name, shown in SHOWN.items():
        assert f"unreadable: {root / 'Normal'}/{shown}: empty file (0 bytes)" in err.splitlines(), err
    _no_raw_control(err)


def test_predict_explain_and_lungs_predict_print_names_with_control_characters_escaped(tmp_path, capsys):
    from test_bad_inputs import FILES, _films, _tiny_keras

    model = _tiny_keras(tmp_path)
    folder = _films(tmp_path / "in")
    (folder / NL).write_bytes(bf.truncated_jpeg_with_eoi())  # decodes wrongly: unreadable
    (folder / ESC).write_text("x")                           # fails the header check: left out
    (folder / "n\x1bx.txt").write_text("x")                  # not an image name: left out
    cut = f"unreadable: {folder}/c\\nd.png: {FILES['cut-then-eoi.jpg'][2]}"
    left = f"left out: {folder}/n\\x1bx.txt: not an image file name"
    rc, out, err = run_cli(capsys, "predict", model, folder, "--out", tmp_path / "p.csv")
    assert rc == 0 and cut in err.splitlines() and any(x.startswith(left) for x in err.splitlines()), err
    _no_raw_control(err)
    rc, out, err = run_cli(capsys, "explain", model, folder, "--out", tmp_path / "e", "--deletion-steps", "0")
    assert rc == 0 and cut in err.splitlines() and any(x.startswith(left) for x in err.splitlines()), err
    _no_raw_control(err)
    rc, out, err = run_cli(capsys, "lungs", "predict", folder, "--out", tmp_path / "masks")
    assert rc == 0 and any(x.startswith(left) for x in err.splitlines()), err
    _no_raw_control(err)


# ------------------------------------------------ a dataset folder whose own name is not UTF-8
def test_a_dataset_folder_whose_name_is_not_utf8_is_one_line_naming_it(tmp_path, capsys):
    """Before: ``error: 'utf-8' codec can't encode character '\\udcff' ...`` (no path, no reason)."""
    import os

    from test_bad_inputs import dataset

    root = os.fsdecode(os.fsencode(tmp_path) + b"/ds\xff")
    dataset(tmp_path / os.path.basename(root), per_class=6)
    shown = f"{tmp_path}/ds\\xff"
    message = f"error: dataset folder {shown}: its path is not valid UTF-8; rename it to read it"
    rc, out, err = run_cli(capsys, "scan", root)
    assert (rc, out, err.splitlines()[-1:]) == (4, "", [message]), err
    rc, out, err = run_cli(capsys, "train", "--data", root, "--model", "tiny", "--weights", "random",
                           "--mode", "head", "--epochs", "1", "--size", "32", "--steps", "none")
    assert (rc, err.splitlines()[-1:]) == (4, [message]), err


# ------------------------------------------------ smaller ones
def test_scan_refuses_an_existing_manifest_before_it_scans(tmp_path, capsys):
    """docs/safety.md: checks run before any work. Before, the whole scan ran (its table printed)."""
    from test_bad_inputs import dataset

    root = dataset(tmp_path / "ds", per_class=2)
    (tmp_path / "m.csv").write_text("mine\n")
    rc, out, err = run_cli(capsys, "scan", root, "--manifest", tmp_path / "m.csv")
    assert (rc, out) == (2, "") and "scan " not in err and err.count("\n") == 1, out + err
    assert err.startswith(f"error: --manifest {tmp_path / 'm.csv'} already exists") and (tmp_path / "m.csv").read_text() == "mine\n"
    rc, out, err = run_cli(capsys, "scan", root, "--manifest", root / "m.csv", "--overwrite")
    assert (rc, out) == (2, "") and not (root / "m.csv").exists(), err  # inside the dataset folder


@pytest.mark.parametrize("header, sep, name", [("File;Label", ";", "semicolons"), ("FILE\tLabel", "\t", "tabs")])
def test_a_capitalised_header_of_another_separator_says_so(tmp_path, capsys, header, sep, name):
    """Before: only "no 'file' column" (the separator was found for a lower-case header only)."""
    body = "".join(f"films/f{i}.png{sep}{('COVID-19', 'Normal')[i % 2]}\n" for i in range(6))
    root = _manifest_only(tmp_path / "ds", f"{header}\n{body}")
    rc, out, err = run_cli(capsys, "scan", root)
    why = f"its header {header!r} is separated by {name}; separate columns by commas; ignored"
    assert (rc, out) == (4, "") and f"manifest.csv has no 'file' column: {why}. Accepted" in err, err


# ------------------------------------------------ one picture, two files, two labels
def test_a_film_copied_into_two_class_folders_is_named_at_the_scan(tmp_path, capsys):
    """The same bytes in COVID-19/ and in Normal/ teach one picture as two classes: before, the
    scan and training said nothing (only the Audit's near-duplicate search could find it). A
    copy under the same label is no clash."""
    from test_bad_inputs import dataset

    root = dataset(tmp_path / "ds", per_class=5, classes=("COVID-19", "Normal"))
    (root / "Normal" / "copy of good2.png").write_bytes((root / "COVID-19" / "good2.png").read_bytes())
    (root / "Normal" / "again.png").write_bytes((root / "Normal" / "good0.png").read_bytes())
    rc, out, err = run_cli(capsys, "scan", root)
    expected = ("warning: 1 film is in the dataset as byte-identical copies under two labels, e.g. "
                "COVID-19/good2.png (COVID-19) and Normal/copy of good2.png (Normal): each copy "
                "counts in its class")
    assert rc == 0 and expected in err.splitlines(), err
    assert "again.png" not in err  # the same label twice: a duplicate, not a clash
    assert expected[len("warning: "):] in datasets.scan_dataset(root).warnings
