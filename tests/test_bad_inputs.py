"""The standing bad-input suite: what a hostile but fair user can hand the CLI, and what happens.

Every case asserts the exact outcome: the message the user sees, the exit code, and that nothing
the user had was changed (a snapshot of their folder before and after). Inputs are generated
(``tests/bad_files.py``); no binary fixture is committed. The app's side of the same cases is in
``test_app_explain.py`` / ``test_app_training.py`` / ``test_browser.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bad_files as bf
from app_fixtures import app, app_workspace, trained_run  # noqa: F401 (fixtures)
import cxrlib.data.datasets as datasets
from cxrlib.cli import main
from cxrlib.core import paths
from cxrlib.data.imageio import ImageReadError, read_film
from cxrlib.data.roots import DANGLING_LINK, LINK_LOOP, REFUSED_LINK, REFUSED_OUTSIDE

CORRUPT_JPEG = "corrupt JPEG data: the decoder would invent part of the picture (libjpeg: Corrupt JPEG data: "
SV1 = "1.2.840.10008.1.2.4.70 (JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1]))"


def _has_jpeg_lossless_decoder() -> bool:
    from pydicom.pixels.decoders import JPEGLosslessSV1Decoder

    return JPEGLosslessSV1Decoder.is_available


# A garbage JPEG Lossless frame: the decoder's own words on one line, or (no plugin) what to install.
JPEG_LOSSLESS = ("corrupt DICOM pixel data (JPEG Lossless, Non-Hierarchical, First-Order Prediction "
                 "(Process 14 [Selection Value 1]), 1.2.840.10008.1.2.4.70): pylibjpeg: libjpeg error "
                 "code '-1038' returned from Decode(): A misplaced marker segment was found - start of "
                 "frame marker size invalid") if _has_jpeg_lossless_decoder() else (
    f"cannot decode DICOM pixel data: transfer syntax {SV1} needs a decoder that is not installed: "
    "pip install pylibjpeg pylibjpeg-libjpeg (pinned in requirements.txt)")
NO_PIXEL_DATA = ("not an image: a DICOM Secondary Capture Image Storage (1.2.840.10008.5.1.4.1.1.7) "
                 "without pixel data")
# name: (bytes maker, reason of the header scan or None, reason of decoding or None)
FILES = {
    "zero-byte.png": (lambda t: b"", "empty file (0 bytes)", "empty file (0 bytes)"),
    "truncated.png": (lambda t: bf.truncated_png(), "truncated PNG (no IEND chunk)", "truncated PNG (no IEND chunk)"),
    "truncated.jpg": (lambda t: bf.truncated_jpeg(), "truncated JPEG (no end-of-image marker)",
                      "truncated JPEG (no end-of-image marker)"),
    "bit-rot.png": (lambda t: bf.bitrot_png(), None, "corrupt PNG (the decoder could not read the image data)"),
    "cut-then-eoi.jpg": (lambda t: bf.truncated_jpeg_with_eoi(), None, CORRUPT_JPEG + "premature end of data segment)"),
    "random-scan.jpg": (lambda t: bf.random_scan_jpeg(), None, CORRUPT_JPEG + "1937 extraneous bytes before marker 0xd9)"),
    "overwritten.jpg": (lambda t: bf.overwritten_jpeg(), None, CORRUPT_JPEG + "326 extraneous bytes before marker 0xd9)"),
    "text.png": (lambda t: bf.text_as_png(), *["not an image: unrecognised file signature (expected JPEG, PNG or DICOM)"] * 2),
    "png-named.jpg": (lambda t: bf.good_png(3), None, None),
    "16-bit.png": (lambda t: bf.png16(), None, None),
    "rgba.png": (lambda t: bf.rgba_png(), None, None),
    "palette.png": (lambda t: bf.palette_png(), None, None),
    "1-bit.png": (lambda t: bf.one_bit_png(), None, None),
    "bomb.png": (lambda t: bf.bomb_png(), *["image too large: 100000 x 100000 = 10000.0 MP exceeds the limit of 40.0 MP"] * 2),
    "strip.png": (lambda t: bf.strip_png(), "too small to classify: 20000 x 1 px (the short side must be at least 32 px)", None),
    "mono1.dcm": (lambda t: bf.dicom(t, "MONOCHROME1"), None, None),
    "mono2.dcm": (lambda t: bf.dicom(t, "MONOCHROME2"), None, None),
    "no-pixel-data.dcm": (bf.dicom_without_pixel_data, NO_PIXEL_DATA, NO_PIXEL_DATA),
    "jpeg-lossless.dcm": (bf.dicom_jpeg_lossless, None, JPEG_LOSSLESS),
    "window-0.dcm": (lambda t: bf.dicom(t, WindowCenter=100, WindowWidth=0), None,
                     "corrupt DICOM (bad modality or VOI LUT: ValueError)"),
}


def _stretch(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.float64)
    return np.round((v - v.min()) * 255.0 / (v.max() - v.min())).astype(np.uint8)


def _dicom_grey(invert: bool) -> np.ndarray:
    grey = _stretch(bf.chest(11).astype(np.uint16) * 16)  # no window: the stored range, stretched
    return 255 - grey if invert else grey


# The pixels each readable case must decode to, computed here from what the file was made of.
DECODED = {
    "png-named.jpg": lambda: bf.chest(3),                         # the signature decides, not the name
    "16-bit.png": lambda: _stretch(bf.chest(7).astype(np.uint16) * 200),
    "rgba.png": lambda: np.dstack([bf.chest(8)] * 3),             # alpha dropped, not composited
    "palette.png": lambda: np.dstack([bf.chest(9)] * 3),          # entry i of the palette is (i, i, i)
    "1-bit.png": lambda: (bf.chest(10) > 127).astype(np.uint8) * 255,
    "strip.png": lambda: np.full((1, 20_000), 128, np.uint8),     # decodes; the scan refuses it
    "mono1.dcm": lambda: _dicom_grey(invert=True),                # bone bright in both
    "mono2.dcm": lambda: _dicom_grey(invert=False),
}


@pytest.fixture(autouse=True)
def fresh(workspace, monkeypatch):
    datasets._SCAN_CACHE.clear()
    monkeypatch.delenv("CXR_DATA_ROOTS", raising=False)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (links not followed): kind, mode, link target, content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():
                out[str(p)] = ("dir", st.st_mode)
            else:
                out[str(p)] = ("file", st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def dataset(root: Path, per_class: int = 5, classes=("COVID-19", "Normal", "Viral Pneumonia")) -> Path:
    for c, label in enumerate(classes):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / label / f"good{i}.png").write_bytes(bf.good_png(100 * c + i))
    return root


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------ files: scan and decode
@pytest.mark.parametrize("name", list(FILES))
def test_a_bad_or_odd_file_is_listed_with_its_reason_and_never_stops_a_scan(tmp_path, capsys, name):
    make, scan_reason, decode_reason = FILES[name]
    root = dataset(tmp_path / "ds")
    path = root / "COVID-19" / name
    path.write_bytes(make(tmp_path))
    before = snapshot(root)

    rc, out, err = run_cli(capsys, "scan", root)
    assert rc == 0
    readable = 16 if scan_reason is None else 15
    assert f"images {readable}  unreadable {16 - readable}" in out
    assert (f"unreadable: {path}: {scan_reason}" in err.splitlines()) == (scan_reason is not None), err
    if decode_reason is None:
        film = read_film(path)
        assert film.pixels.dtype == np.uint8
        np.testing.assert_array_equal(film.pixels, DECODED[name]())
    else:
        with pytest.raises(ImageReadError) as info:
            read_film(path)
        assert info.value.reason == decode_reason and info.value.path == str(path)
    assert snapshot(root) == before


def test_every_place_that_decodes_lists_a_corrupt_film_with_its_reason(tmp_path):
    """The header scan cannot see corrupt scan data or pixels; the tensor cache (training), the
    audit's decoding pass and predict each list the film with the decoder's reason."""
    from cxrlib.data.film_scan import scan_films
    from cxrlib.core.config import PreprocessConfig
    from cxrlib.preprocessing.tensor_cache import load_tensors

    root = dataset(tmp_path / "ds")
    decode_only = {n: FILES[n][2] for n in ("bit-rot.png", "cut-then-eoi.jpg", "random-scan.jpg",
                                            "overwritten.jpg", "jpeg-lossless.dcm", "window-0.dcm")}
    for name in decode_only:
        (root / "Normal" / name).write_bytes(FILES[name][0](tmp_path))
    expected = {f"Normal/{n}": r for n, r in decode_only.items()}
    ds = datasets.scan_dataset(root)
    assert ds.problems.empty and len(ds) == 21  # the header scan sees nothing wrong

    tensors = load_tensors(ds, PreprocessConfig(size=32), workers=2)
    assert {p["rel_path"]: p["reason"] for p in tensors.problems} == expected
    sig = scan_films(ds.manifest, fingerprint=ds.fingerprint)
    assert {s["rel_path"]: s["reason"] for s in sig.skipped} == expected
    assert len(sig.rel_paths) == len(sig.thumbs) == len(sig.properties) == 21  # rows stay aligned
    readable = sig.readable()
    assert readable.rel_paths == [p for p in ds.manifest["rel_path"] if p not in expected]
    assert len(readable.phash) == len(readable.properties) == 15
    assert {s["rel_path"] for s in scan_films(ds.manifest, fingerprint=ds.fingerprint).skipped} == set(expected)


def test_libjpeg_warnings_are_caught_and_other_stderr_text_is_passed_on(tmp_path, capfd, monkeypatch):
    import cv2

    import cxrlib.data.imageio.libjpeg as libjpeg

    real = cv2.imdecode

    def noisy(data, flags):  # another library writes to fd 2 while the decoder runs
        os.write(2, b"hello from another library\n")
        return real(data, flags)

    monkeypatch.setattr(libjpeg.cv2, "imdecode", noisy)
    path = tmp_path / "cut.jpg"
    path.write_bytes(bf.truncated_jpeg_with_eoi())
    with pytest.raises(ImageReadError) as info:
        read_film(path)
    assert info.value.reason == FILES["cut-then-eoi.jpg"][2]
    good = tmp_path / "good.jpg"
    good.write_bytes(bf.good_jpeg(1))
    assert read_film(good).pixels.shape == (256, 256)
    err = capfd.readouterr().err
    # once per decode: the corrupt file is decoded twice (shared, then alone), the good one once
    assert err.count("hello from another library\n") == 3 and "Corrupt JPEG" not in err


# ------------------------------------------------------------------ folders and links
def _loop(root, outside):
    os.symlink("b.png", root / "COVID-19" / "a.png")
    os.symlink("a.png", root / "COVID-19" / "b.png")
    return {"COVID-19/a.png": LINK_LOOP, "COVID-19/b.png": LINK_LOOP}, []


def _dangling(root, outside):
    os.symlink("gone.png", root / "COVID-19" / "dangling.png")
    return {"COVID-19/dangling.png": DANGLING_LINK}, []


def _file_link_outside(root, outside):
    os.symlink(outside / "secret.png", root / "COVID-19" / "escape.png")
    os.symlink("/etc/passwd", root / "COVID-19" / "passwd.png")
    return {"COVID-19/escape.png": REFUSED_LINK, "COVID-19/passwd.png": REFUSED_LINK}, []


def _folder_link_outside(root, outside):
    shutil.rmtree(root / "Viral Pneumonia")
    os.symlink(outside, root / "Viral Pneumonia")
    return {}, [f"folder 'Viral Pneumonia' in {root} is a symbolic link to a folder outside the "
                "dataset folder; skipped"]


def _manifest_escapes(root, outside):
    for label in ("COVID-19", "Normal", "Viral Pneumonia"):  # a manifest-only layout instead
        shutil.rmtree(root / label)
    (root / "films").mkdir()
    rows = []
    for i in range(10):
        (root / "films" / f"f{i}.png").write_bytes(bf.good_png(i))
        rows.append({"file": f"films/f{i}.png", "label": ("COVID-19", "Normal")[i % 2]})
    os.symlink(outside, root / "films" / "elsewhere")
    rows += [{"file": "/etc/passwd", "label": "Normal"}, {"file": "../outside/secret.png", "label": "COVID-19"},
             {"file": "films/elsewhere/secret.png", "label": "COVID-19"},
             {"file": "films/missing.png", "label": "COVID-19"}]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return {"/etc/passwd": REFUSED_OUTSIDE, str(outside / "secret.png"): REFUSED_OUTSIDE,
            "films/elsewhere/secret.png": REFUSED_OUTSIDE,
            "films/missing.png": "listed in manifest.csv but not found"}, []


@pytest.mark.parametrize("case", [_loop, _dangling, _file_link_outside, _folder_link_outside,
                                  _manifest_escapes], ids=lambda f: f.__name__[1:])
def test_links_and_paths_that_escape_are_listed_and_the_scan_goes_on(tmp_path, capsys, case):
    root = dataset(tmp_path / "ds")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(bf.good_png(999))
    problems, warnings = case(root, outside)
    before, before_outside = snapshot(root), snapshot(outside)

    ds = datasets.scan_dataset(root)
    assert dict(zip(ds.problems["rel_path"], ds.problems["reason"])) == problems
    assert all(w in ds.warnings for w in warnings), ds.warnings
    assert not any(str(p).startswith(str(outside)) or p.startswith("/etc") for p in ds.manifest["path"])
    rc, _, err = run_cli(capsys, "scan", root)
    assert rc == 0 and all(f"warning: {w}" in err for w in warnings)
    assert snapshot(root) == before and snapshot(outside) == before_outside


def test_data_roots_limit_what_the_cli_opens_and_say_nothing_about_the_rest(tmp_path, capsys, monkeypatch):
    allowed = tmp_path / "allowed"
    root = dataset(allowed / "ds")
    elsewhere = dataset(tmp_path / "elsewhere")
    os.symlink(elsewhere, allowed / "link-out")
    monkeypatch.setenv("CXR_DATA_ROOTS", f"{allowed}{os.pathsep}{tmp_path / 'second'}")
    assert run_cli(capsys, "scan", root)[0] == 0
    limit = f"is outside the folders this installation may open (CXR_DATA_ROOTS: {allowed}:{tmp_path / 'second'})"
    for target in (elsewhere, tmp_path / "no-such-folder", allowed / "link-out", "/etc"):
        rc, out, err = run_cli(capsys, "scan", target)
        assert (rc, out, err) == (4, "", f"error: {target} {limit}\n")  # existing or not: one answer
    rc, _, err = run_cli(capsys, "train", "--data", elsewhere, "--model", "tiny")
    assert rc == 4 and err.endswith(f"error: {elsewhere} {limit}\n") and not paths.runs_dir().exists()
    rc, _, err = run_cli(capsys, "lungs", "predict", elsewhere, "--out", tmp_path / "masks")
    assert (rc, err) == (4, f"error: {elsewhere} {limit}\n") and not (tmp_path / "masks").exists()
    from cxrlib.data.roots import FolderNotAllowed
    from cxrlib.evaluation.predict import image_files

    assert image_files([root / "COVID-19"])  # what predict reads: the same rule
    with pytest.raises(FolderNotAllowed, match="CXR_DATA_ROOTS"):
        image_files([elsewhere / "COVID-19" / "good0.png"])


@pytest.mark.skipif(sys.platform != "linux", reason="setpriv and permission bits are Linux tests")
def test_an_unreadable_class_folder_is_a_warning_and_an_unreadable_root_an_error(tmp_path):
    """Run as a user without rights (root reads any folder): setpriv as nobody, when we are root."""
    base = Path(tempfile.mkdtemp(prefix="cxr-perm-"))
    try:
        os.chmod(base, 0o755)
        root = dataset(base / "ds")
        work = base / "workspace"
        work.mkdir()
        os.chmod(work, 0o777)
        (root / "Normal").chmod(0o000)
        prefix = []
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root and setpriv is missing: cannot drop the right to read")
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        env = dict(os.environ, CXR_WORKSPACE=str(work), PYTHONDONTWRITEBYTECODE="1",
                   PYTHONPATH=str(paths.PROJECT_ROOT))
        cmd = [*prefix, sys.executable, "-m", "cxrlib", "scan", str(root)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=base, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"warning: cannot read folder {root / 'Normal'}: Permission denied; skipped" in done.stderr
        assert "warning: class folder 'Normal' (Normal) holds no images" in done.stderr
        root.chmod(0o000)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=base, timeout=120)
        assert done.returncode == 4
        assert done.stderr.splitlines()[-1] == f"error: cannot read dataset folder {root}: permission denied"
    finally:
        for p in (base / "ds", base / "ds" / "Normal"):
            if p.exists():
                p.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ classes and warnings
def test_scan_and_train_print_the_dataset_warnings(tmp_path, capsys):
    root = dataset(tmp_path / "ds", classes=("COVID-19", "Normal"))
    (root / "Lung_Opacity").mkdir()
    (root / "Lung_Opacity" / "x.png").write_bytes(bf.good_png(5))
    (root / "Viral Pneumonia").mkdir()
    rows = [{"file": f"Normal/good{i}.png", "label": "COVID-19"} for i in range(3)]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    expected = ["warning: folder 'Lung_Opacity' is not a known class; skipped",
                "warning: class folder 'Viral Pneumonia' (Viral Pneumonia) holds no images",
                "warning: 3 files have a different label in manifest.csv than their folder; the "
                "folder's class is used"]
    rc, _, err = run_cli(capsys, "scan", root)
    assert rc == 0 and all(line in err.splitlines() for line in expected), err
    rc, _, err = run_cli(capsys, "train", "--data", root, "--model", "tiny")
    assert rc == 4 and all(line in err.splitlines() for line in expected)
    assert err.splitlines()[-1] == (
        f"error: cannot train the 3class task on {root}: Viral Pneumonia has 0 readable films "
        "(at least 5 needed). Add films, choose another task, or lower the minimum "
        "(CXR_MIN_CLASS_FILMS, CXR_MIN_CLASS_PATIENTS).")
    assert not paths.runs_dir().exists()  # refused before any run was created


@pytest.mark.parametrize("films,patients,argv,message", [
    (3, 3, [], "Normal has 3 readable films (at least 5 needed)"),
    (6, 1, [], "Normal has 1 patient (a grouped split needs at least 2)"),
    (3, 3, ["--min-class-films", "4"], "Normal has 3 readable films (at least 4 needed)"),
    (6, 1, ["--min-class-patients", "3"], "Normal has 1 patient (a grouped split needs at least 3)"),
], ids=["3-films", "1-patient", "films-flag", "patients-flag"])
def test_training_a_tiny_class_is_refused(tmp_path, capsys, films, patients, argv, message):
    root = dataset(tmp_path / "ds", classes=("COVID-19",), per_class=6)
    (root / "Normal").mkdir()
    rows = []
    for i in range(films):
        (root / "Normal" / f"n{i}.png").write_bytes(bf.good_png(50 + i))
        rows.append({"file": f"Normal/n{i}.png", "label": "Normal", "patient_id": f"p{i % patients}"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    before = snapshot(root)
    rc, _, err = run_cli(capsys, "train", "--data", root, "--task", "binary", "--model", "tiny", *argv)
    assert rc == 4 and err.splitlines()[-1] == (
        f"error: cannot train the binary task on {root}: {message}. Add films, choose another "
        "task, or lower the minimum (CXR_MIN_CLASS_FILMS, CXR_MIN_CLASS_PATIENTS).")
    assert not paths.runs_dir().exists() and snapshot(root) == before


def test_a_random_split_needs_films_not_patients(tmp_path):
    from cxrlib.data.checks import check_trainable

    root = dataset(tmp_path / "ds", classes=("COVID-19", "Normal"), per_class=5)
    ds = datasets.scan_dataset(root)
    ds.manifest["patient_id"] = "same"
    ds.manifest["group_id"] = "same"
    check_trainable(ds, "binary", "random")
    with pytest.raises(datasets.DatasetError, match="COVID-19 has 1 patient"):
        check_trainable(ds, "binary", "grouped")


# ------------------------------------------------------------------ run files
@pytest.mark.parametrize("damage", ["truncated", "binary", "empty", "a list"])
@pytest.mark.parametrize("name", ["config.json", "status.json", "metrics.json"])
def test_a_damaged_run_file_is_a_broken_row_that_can_be_deleted(workspace, capsys, name, damage):
    from cxrlib.core.config import RunConfig, TrainConfig
    from cxrlib.runs.registry import create_run

    runs = []
    for epochs in (2, 3):
        run = create_run(RunConfig(train=TrainConfig(epochs=epochs)), "fp-bad")
        run.write_status(state="done", epoch=epochs, epochs=epochs)
        run.write_metrics({"accuracy": 0.5, "macro_auc": 0.75})
        runs.append(run)
    good, bad = runs
    path = bad.folder / name
    text = {"truncated": path.read_text()[:17], "binary": "\x00\xff garbage", "empty": "",
            "a list": "[1, 2]"}[damage]
    path.write_text(text, encoding="latin-1")
    rc, out, err = run_cli(capsys, "runs")
    assert rc == 0 and good.id in out and f"{bad.id}  broken" in out
    assert f"warning: run {bad.id}: {name} is damaged (" in err
    assert err.rstrip().endswith(f"`python -m cxrlib delete {bad.id}` removes it")
    listed = {r["id"]: r for r in json.loads(run_cli(capsys, "runs", "--json")[1])}
    assert listed[good.id]["accuracy"] == 0.5 and listed[bad.id]["state"] == "broken"
    assert run_cli(capsys, "delete", bad.id)[:2] == (0, f"deleted run {bad.id}\n")
    assert not bad.folder.exists() and good.folder.exists()


# ------------------------------------------------------------------ model files
def _keras():
    from cxrlib.core.tfsetup import tf

    tf()
    import keras

    return keras


def _model(keras, shape, n_out, middle=None):
    inputs = keras.Input(shape)
    x = middle(inputs) if middle else inputs
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(x))
    return keras.Model(inputs, keras.layers.Dense(n_out, activation="softmax")(x))


def test_hostile_and_unfitting_model_files_are_refused_in_one_line(tmp_path, capsys):
    keras = _keras()
    films = dataset(tmp_path / "films", per_class=1)
    marker = tmp_path / "pwned.txt"
    payload = eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]")  # noqa: S307
    models = {"lambda": _model(keras, (64, 64, 3), 3, keras.layers.Lambda(payload)),
              "shape": _model(keras, (64, 48, 1), 3), "classes": _model(keras, (64, 64, 3), 5)}
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
    marker.unlink()  # building the model called the payload once; loading must not
    (tmp_path / "fake.keras").write_bytes(b"not a zip archive")
    before = snapshot(films)
    expected = {
        "shape": "error: the model's input is 64 x 48 x 1, but films are prepared as 64 x 64 x 3 "
                 "(grey on 3 channels): it cannot score them",
        "classes": "error: the model outputs 5 values, but the task has 3 classes (COVID-19, Normal, "
                   "Viral Pneumonia)",
        "fake": f"error: {tmp_path / 'fake.keras'} is not a Keras model file (.keras zip archive)",
    }
    for name in ("lambda", "shape", "classes", "fake"):
        out_csv = tmp_path / f"{name}.csv"
        rc, out, err = run_cli(capsys, "predict", tmp_path / f"{name}.keras", films, "--out", out_csv)
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert rc == 4 and out == "" and len(lines) == 1, err
        if name == "lambda":
            assert lines[0].startswith(f"error: could not load model {tmp_path / 'lambda.keras'}")
            assert "safe_mode" in lines[0]
        else:
            assert lines[0] == expected[name]
        assert not out_csv.exists()
    assert not marker.exists() and snapshot(films) == before


def test_predict_lists_left_out_and_corrupt_files_with_their_reasons(tmp_path, capsys):
    keras = _keras()
    model_path = tmp_path / "m.keras"
    _model(keras, (64, 64, 3), 3).save(model_path)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ok.png").write_bytes(bf.good_png(1))
    (folder / "cut.jpg").write_bytes(bf.truncated_jpeg_with_eoi())
    (folder / "notes.txt").write_text("x")
    (folder / ".hidden.png").write_bytes(bf.good_png(2))
    os.symlink("/etc/passwd", folder / "passwd.png")
    os.symlink("loop.png", folder / "loop.png")
    rc, out, err = run_cli(capsys, "predict", model_path, folder, "--out", tmp_path / "p.csv")
    assert rc == 0 and out.endswith(f"1 predicted, 1 unreadable, 4 left out -> {tmp_path / 'p.csv'}\n")
    for line in (f"left out: {folder / '.hidden.png'}: hidden file",
                 f"left out: {folder / 'loop.png'}: {LINK_LOOP}",
                 f"left out: {folder / 'notes.txt'}: not an image file name (reads "
                 ".png, .jpg, .jpeg, .jpe, .jfif, .dcm, .dicom)",
                 f"left out: {folder / 'passwd.png'}: {REFUSED_LINK}",
                 f"unreadable: {folder / 'cut.jpg'}: {FILES['cut-then-eoi.jpg'][2]}"):
        assert line in err.splitlines(), err


# ------------------------------------------------------------------ the audit
def test_one_corrupt_png_is_skipped_by_the_audit_which_finishes(tmp_path, capsys):
    from cxrlib.audit import report as audit_report
    from cxrlib.core.config import DataConfig, PreprocessConfig, RunConfig
    from cxrlib.data.splits import split_manifest, split_table
    from cxrlib.runs.registry import create_run

    root = dataset(tmp_path / "ds", per_class=8)
    (root / "Normal" / "bit-rot.png").write_bytes(bf.bitrot_png())
    reason = FILES["bit-rot.png"][2]
    ds = datasets.scan_dataset(root).for_task("3class")
    cfg = RunConfig(data=DataConfig(root=str(root)), preprocess=PreprocessConfig(size=32, steps=()))
    run = create_run(cfg, ds.fingerprint)
    table = split_table(ds.manifest, split_manifest(ds.manifest, cfg.split))
    table.loc[table["rel_path"] == "Normal/bit-rot.png", "split"] = "test"
    run.write_split(table)
    run.write_predictions(table.assign(pred=table["label"]))
    run.write_status(state="done")
    before = snapshot(root)

    rc, out, err = run_cli(capsys, "audit", run.id, "--steps", "duplicates,metadata")
    assert rc == 0, err
    assert f"skipped (duplicates and metadata): Normal/bit-rot.png: {reason}" in err.splitlines()
    summary = json.loads(out[out.index("{"):])
    assert summary["skipped"] == [{"rel_path": "Normal/bit-rot.png", "reason": reason,
                                   "step": "duplicates and metadata"}]
    # the attention and masking steps read the tensor cache: the film is left out there too
    report = audit_report.AuditReport(run_id=run.id)
    images, labels, rel_paths = audit_report.split_images(ds, run, run.split_table(), None, 0,
                                                          lambda *a: None, report)
    assert "Normal/bit-rot.png" not in rel_paths and len(images) == len(labels) == len(rel_paths) > 0
    assert report.skipped == [{"rel_path": "Normal/bit-rot.png", "reason": reason,
                               "step": "attention and masking"}]
    assert snapshot(root) == before


@pytest.mark.slow
def test_training_leaves_out_a_corrupt_jpeg_and_says_so(tmp_path, capsys):
    """The header scan takes it; decoding for training refuses it, and the CLI names it."""
    root = dataset(tmp_path / "ds", per_class=6)
    (root / "Normal" / "cut.jpg").write_bytes(bf.truncated_jpeg_with_eoi())
    before = snapshot(root)
    rc, out, err = run_cli(capsys, "train", "--data", root, "--model", "tiny", "--weights", "random",
                           "--mode", "head", "--epochs", "2", "--size", "32", "--steps", "none",
                           "--split", "random")
    assert rc == 0 and "state done" in out, err
    assert f"warning: left out of training: Normal/cut.jpg: {FILES['cut-then-eoi.jpg'][2]}" in err.splitlines()
    from cxrlib.runs.registry import get_run

    run = get_run(out.split()[1])
    assert run.metrics()["excluded_undecodable"] == 1
    assert snapshot(root) == before


# ------------------------------------------------------------- nothing the user made is lost
def test_outputs_never_write_over_the_users_own_files(tmp_path, capsys):
    """``scan --manifest`` onto the dataset's own manifest.csv, and ``lungs predict`` with its
    films' own folder as ``--out``, used to replace the user's files; both are refused."""
    root = dataset(tmp_path / "d")
    (root / "manifest.csv").write_text("file,label,patient_id\nCOVID-19/good0.png,COVID-19,P1\n")
    before = snapshot(root)
    rc, _, err = run_cli(capsys, "scan", root, "--manifest", root / "manifest.csv")
    assert rc == 2 and "manifest.csv" in err and "would write over" in err
    rc, _, err = run_cli(capsys, "scan", root, "--manifest", root / "COVID-19" / "good1.png")
    assert rc == 2 and "would write over" in err
    png = root / "Normal" / "x.png"
    png.write_bytes(bf.good_png(7))
    before = snapshot(root)
    rc, _, err = run_cli(capsys, "lungs", "predict", png, "--out", root / "Normal")
    assert rc == 2 and "would write over" in err and "x.png" in err
    assert snapshot(root) == before
    rc, _, _ = run_cli(capsys, "scan", root, "--manifest", tmp_path / "export.csv")  # elsewhere: fine
    assert rc == 0 and (tmp_path / "export.csv").is_file()
    # the rule is "outside the dataset folder": a new file there is refused too (it used to be
    # allowed once, then refused on the rerun), and a link cannot carry the write in or out
    rc, _, err = run_cli(capsys, "scan", root, "--manifest", root / "sub" / "scan.csv")
    assert rc == 2 and "outside" in err
    (root / "manifest.csv").unlink()
    (root / "manifest.csv").symlink_to(tmp_path / "export.csv")
    rc, _, err = run_cli(capsys, "scan", root, "--manifest", root / "manifest.csv")
    assert rc == 2 and (root / "manifest.csv").is_symlink()
    (tmp_path / "into").symlink_to(root / "COVID-19")
    rc, _, err = run_cli(capsys, "scan", root, "--manifest", tmp_path / "into" / "m.csv")
    assert rc == 2
    # a link outside that points in is replaced itself, never written through: allowed
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "into.csv").symlink_to(root / "COVID-19" / "x.csv")
    before = snapshot(root)
    rc, _, err = run_cli(capsys, "scan", root, "--manifest", tmp_path / "other" / "into.csv")
    assert rc == 2 and "already exists" in err  # a link is a path that exists: --overwrite
    rc, _, err = run_cli(capsys, "scan", root, "--manifest", tmp_path / "other" / "into.csv",
                         "--overwrite")
    assert rc == 0, err
    assert snapshot(root) == before and not (tmp_path / "other" / "into.csv").is_symlink()


@pytest.mark.parametrize("flag, value", [("--lr", "nan"), ("--lr", "inf"), ("--gamma", "nan"),
                                         ("--clahe-clip", "nan"), ("--rotation", "nan"),
                                         ("--early-stopping", "-1"), ("--feature-augment-copies", "-3"),
                                         ("--seed", "-1")])
def test_non_finite_and_negative_training_values_are_usage_errors(tmp_path, capsys, flag, value):
    """Checks written as ``x <= 0`` let NaN through (a run that trained to a NaN loss), and a
    negative copy count or seed failed inside the run with a traceback."""
    root = dataset(tmp_path / "d")
    rc, _, err = run_cli(capsys, "train", "--data", root, "--model", "tiny", flag, value)
    assert rc == 2, err
    assert "Traceback" not in err and err.startswith("error:")
    assert not list((Path(os.environ["CXR_WORKSPACE"]) / "models" / "runs").glob("*"))


@pytest.mark.parametrize("section, field, value", [("train", "epochs", "2"), ("train", "epochs", None),
                                                   ("model", "head_units", 5), ("preprocess", "steps", 5),
                                                   ("data", "root", 5), ("split", "test_fraction", "0.2"),
                                                   ("preprocess", "size", 64.5)])
def test_a_config_file_with_wrong_types_is_a_usage_error(tmp_path, capsys, section, field, value):
    from cxrlib.core.config import RunConfig

    cfg = RunConfig().to_dict()
    cfg[section][field] = value
    (tmp_path / "config.json").write_text(json.dumps({"config": cfg}))
    rc, _, err = run_cli(capsys, "train", "--config", tmp_path / "config.json")
    assert rc == 2, err
    assert "Traceback" not in err and field in err


def test_a_nul_byte_in_a_manifest_path_is_one_refused_row(tmp_path, capsys):
    root = dataset(tmp_path / "d")
    (root / "manifest.csv").write_text("file,label,mask_path\nCOVID-19/good0.png,COVID-19,m\x00.png\n"
                                       "ghost\x00.png,Normal,\n")
    rc, out, err = run_cli(capsys, "scan", root)
    assert rc == 0, err
    assert "images 15" in out


def test_an_out_path_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    root = dataset(tmp_path / "d")
    (tmp_path / "taken").write_text("mine")
    rc, _, err = run_cli(capsys, "lungs", "predict", root / "Normal", "--out", tmp_path / "taken")
    assert rc in (2, 4) and "Traceback" not in err and "taken" in err
    assert (tmp_path / "taken").read_text() == "mine"


def test_train_without_usable_weights_fails_before_any_run_exists(tmp_path, capsys, monkeypatch):
    """No ImageNet weights anywhere (and no network): one line and exit 4 before a run folder is
    made, not a failed run with a traceback."""
    import cxrlib.models.weights as weights_module

    root = dataset(tmp_path / "d")
    (tmp_path / "home" / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CXR_SHARED_DIR", str(tmp_path / "none"))

    def no_network(cache_dir, **options):
        raise OSError("no network")

    monkeypatch.setattr(weights_module, "_download_weights", no_network)
    rc, _, err = run_cli(capsys, "train", "--data", root, "--model", "mobilenetv2", "--size", "32")
    assert rc == 4 and "weights are not available" in err and "Traceback" not in err
    assert not list((Path(os.environ["CXR_WORKSPACE"]) / "models" / "runs").glob("*"))


# ------------------------------------------------ issue 22: one rule for every user-named output
def _tiny_keras(tmp_path) -> Path:
    path = tmp_path / "m.keras"
    _model(_keras(), (64, 64, 3), 3).save(path)
    return path


def _films(folder: Path, names=("a.png", "b.png")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(bf.good_png(40 + i))
    return folder


def test_predict_refuses_an_existing_out_an_input_and_the_workspace_stores(tmp_path, capsys):
    model, films = _tiny_keras(tmp_path), _films(tmp_path / "in")
    mine = tmp_path / "mine.csv"
    mine.write_text("the user's own table\n")
    before = snapshot(tmp_path)
    rc, out, err = run_cli(capsys, "predict", model, films, "--out", mine)
    assert (rc, out) == (2, "") and err.splitlines()[-1] == (
        f"error: --out {mine} already exists; choose another path, or --overwrite to replace it")
    for target in (films / "a.png", paths.runs_dir() / "x.csv",
                   paths.workspace() / "reviews.sqlite"):
        rc, out, err = run_cli(capsys, "predict", model, films, "--out", target, "--overwrite")
        assert rc == 2 and out == "" and err.count("\n") == err.count("note:") + 1, err
        assert err.splitlines()[-1].startswith(f"error: --out {target} "), err
    assert "would write over an input of this command" in run_cli(
        capsys, "predict", model, films, "--out", films / "a.png", "--overwrite")[2]
    assert snapshot(tmp_path) == before
    rc, out, err = run_cli(capsys, "predict", model, films, "--out", mine, "--overwrite")
    assert rc == 0, err
    table = pd.read_csv(mine)
    assert sorted(Path(p).name for p in table["path"]) == ["a.png", "b.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_an_out_that_is_a_folder_is_one_line_exit_4_naming_it(tmp_path, capsys):
    model, films = _tiny_keras(tmp_path), _films(tmp_path / "in")
    (tmp_path / "folder.csv").mkdir()
    rc, _, err = run_cli(capsys, "predict", model, films, "--out", tmp_path / "folder.csv", "--overwrite")
    assert rc == 4 and err.splitlines()[-1] == (
        f"error: cannot write {tmp_path / 'folder.csv'}: it is a folder, not a file")
    assert "Traceback" not in err and "/." not in err and not list((tmp_path / "folder.csv").iterdir())


@pytest.mark.parametrize("argv", [("scan", "DATA", "--manifest"), ("reviews", "export", "all", "--out")])
def test_an_out_folder_is_named_not_its_temporary_for_scan_and_reviews_too(tmp_path, capsys, argv):
    root = dataset(tmp_path / "ds")
    (tmp_path / "folder.csv").mkdir()
    rc, _, err = run_cli(capsys, *[root if a == "DATA" else a for a in argv], tmp_path / "folder.csv",
                         "--overwrite")
    assert rc == 4 and err.splitlines()[-1] == (
        f"error: cannot write {tmp_path / 'folder.csv'}: it is a folder, not a file")


def test_an_os_error_elsewhere_names_the_folder_of_a_hidden_temporary():
    import errno

    from cxrlib.cli.common import data_error_message

    exc = OSError(errno.ENOSPC, "No space left on device", "/w/models/runs/x/.status.json.k3j.tmp")
    assert data_error_message(exc) == "/w/models/runs/x: no space left on the device"
    assert data_error_message(OSError(errno.EROFS, "Read-only file system", "/r/a.csv")) == (
        "/r/a.csv: read-only file system")


def test_an_os_error_of_another_file_while_an_output_is_filled_keeps_its_own_message(tmp_path):
    import errno

    from cxrlib.core.outputs import UserOutput, WriteError

    film = OSError(errno.EACCES, "Permission denied", str(tmp_path / "film.png"))
    with pytest.raises(OSError) as info, UserOutput().path(tmp_path / "out.csv"):
        raise film
    assert info.value is film and not isinstance(info.value, WriteError)
    with pytest.raises(WriteError, match=f"^cannot write {tmp_path / 'out.csv'}: no space left on the device$"):
        with UserOutput().path(tmp_path / "out.csv"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert os.listdir(tmp_path) == []  # no temporary left, nothing written


def test_several_files_of_one_output_are_written_all_or_none(tmp_path):
    """``UserOutput.write_all`` (a film's DICOM results): every target checked before any is
    written, every file filled before any is put in place."""
    from cxrlib.core.outputs import OutputRefused, UserOutput

    (tmp_path / "b.dcm").write_bytes(b"mine")
    with pytest.raises(OutputRefused, match="b.dcm already exists"):
        UserOutput().write_all([(tmp_path / "a.dcm", b"A"), (tmp_path / "b.dcm", b"B")])
    (tmp_path / "blocker").write_text("a file where a folder must go")
    with pytest.raises(OutputRefused, match="is a file"):  # found only when the write begins
        UserOutput().write_all([(tmp_path / "a.dcm", b"A"), (tmp_path / "blocker" / "c.dcm", b"C")])
    assert sorted(os.listdir(tmp_path)) == ["b.dcm", "blocker"]  # no a.dcm, no temporary
    written = UserOutput(overwrite=True).write_all([(tmp_path / "a.dcm", b"A"), (tmp_path / "b.dcm", "B")])
    assert written == [tmp_path / "a.dcm", tmp_path / "b.dcm"]
    assert [p.read_bytes() for p in written] == [b"A", b"B"]


def test_a_file_that_appears_while_an_output_is_put_in_place_leaves_none_of_it(tmp_path, monkeypatch):
    """Bug (left alone last stop): when another process made one of a multi-file output's
    targets while the files were put in place, that file was refused and kept, but the output's
    files already put in place stayed: half an output. Now none stays, and nobody else's file is
    touched."""
    from cxrlib.core import outputs
    from cxrlib.core.outputs import OutputRefused, UserOutput

    real_link = os.link

    def another_writer_first(src, dst, *args, **kwargs):
        if Path(dst).name == "a.dcm":  # someone else writes a.dcm just before we place ours
            Path(dst).write_bytes(b"theirs")
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(outputs.os, "link", another_writer_first)
    items = [(tmp_path / n, n.encode()) for n in ("a.dcm", "b.dcm", "c.dcm")]
    with pytest.raises(OutputRefused, match="a.dcm appeared while this command ran"):
        UserOutput().write_all(items)
    assert sorted(os.listdir(tmp_path)) == ["a.dcm"]  # theirs; not b.dcm, c.dcm or a temporary
    assert (tmp_path / "a.dcm").read_bytes() == b"theirs"
    # a file of ours that someone replaced meanwhile is theirs now: not taken back
    (tmp_path / "a.dcm").unlink()

    def replaced_then_appears(src, dst, *args, **kwargs):
        if Path(dst).name == "a.dcm":  # the last placed: c.dcm and b.dcm are in place
            (tmp_path / "swap").write_bytes(b"their c")
            os.replace(tmp_path / "swap", tmp_path / "c.dcm")
            Path(dst).write_bytes(b"theirs")
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(outputs.os, "link", replaced_then_appears)
    with pytest.raises(OutputRefused, match="a.dcm appeared while this command ran"):
        UserOutput().write_all(items)
    assert sorted(os.listdir(tmp_path)) == ["a.dcm", "c.dcm"]
    assert (tmp_path / "c.dcm").read_bytes() == b"their c"


def test_a_name_too_long_is_one_line_exit_4(tmp_path, capsys):
    model, films = _tiny_keras(tmp_path), _films(tmp_path / "in")
    target = tmp_path / ("n" * 300 + ".csv")
    rc, _, err = run_cli(capsys, "predict", model, films, "--out", target)
    assert rc == 4 and err.splitlines()[-1] == f"error: cannot write {target}: file name too long"
    # a 250-byte name fits; its hidden temporary must not be the one "too long"
    target = tmp_path / ("n" * 246 + ".csv")
    assert run_cli(capsys, "predict", model, films, "--out", target)[0] == 0 and target.is_file()


def test_explain_never_writes_an_overlay_over_a_film_or_an_earlier_output(tmp_path, capsys):
    model = _tiny_keras(tmp_path)
    films = _films(tmp_path / "in", ("a.png", "a-gradcam.png"))  # a film named as a's overlay
    before = snapshot(films)
    rc, _, err = run_cli(capsys, "explain", model, films / "a.png", films / "a-gradcam.png",
                         "--out", films, "--overwrite", "--deletion-steps", "0", "--method", "gradcam")
    assert rc == 2 and err.splitlines()[-1] == (
        f"error: --out {films / 'a-gradcam.png'} would write over an input of this command "
        f"({films / 'a-gradcam.png'}); choose another path")
    assert snapshot(films) == before
    out = tmp_path / "out"
    argv = ("explain", model, films, "--out", out, "--deletion-steps", "0")
    assert run_cli(capsys, *argv)[0] == 0
    written = snapshot(out)
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and err.splitlines()[-1] == (
        f"error: --out {out / 'explanations.csv'} already exists; choose another path, or "
        "--overwrite to replace it")
    assert snapshot(out) == written
    assert run_cli(capsys, *argv, "--overwrite")[0] == 0


def test_explain_shortens_a_250_byte_overlay_name_and_keeps_two_apart(tmp_path, capsys):
    model = _tiny_keras(tmp_path)
    long_a, long_b = "x" * 246 + "a.png", "x" * 246 + "b.png"  # 251 bytes each, one prefix
    films = _films(tmp_path / "in", (long_a, long_b))
    rc, out, err = run_cli(capsys, "explain", model, films, "--out", tmp_path / "o",
                           "--deletion-steps", "0")
    assert rc == 0 and "Traceback" not in err, err
    table = pd.read_csv(tmp_path / "o" / "explanations.csv", keep_default_na=False)
    overlays = [o for o in table["overlay"] if o]
    assert len(set(overlays)) == len(overlays) == int(out.split(" explained")[0])
    assert all(len(os.fsencode(o)) <= 255 and (tmp_path / "o" / o).is_file() for o in overlays)
    from cxrlib.cli.explain import output_names  # the names, whether or not a map was flat

    expected = ["x" * 184 + "~" + hashlib.sha256(n[:-4].encode()).hexdigest()[:12] for n in (long_a, long_b)]
    assert output_names([films], [films / long_a, films / long_b]) == expected


def test_evaluate_refuses_to_write_over_an_earlier_out_dir(trained_run, tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text('{"mine": 1}')
    rc, _, err = run_cli(capsys, "evaluate", trained_run.id, "--out-dir", out)
    assert rc == 2 and err.splitlines()[-1] == (
        f"error: --out-dir {out / 'metrics.json'} already exists; choose another path, or "
        "--overwrite to replace it")
    assert (out / "metrics.json").read_text() == '{"mine": 1}' and sorted(os.listdir(out)) == ["metrics.json"]
    rc, _, err = run_cli(capsys, "evaluate", trained_run.id, "--out-dir", trained_run.folder, "--overwrite")
    assert rc == 2 and "inside the workspace's own stores" in err
    assert run_cli(capsys, "evaluate", trained_run.id, "--out-dir", out, "--overwrite")[0] == 0
    assert json.loads((out / "metrics.json").read_text())["n"] == len(trained_run.predictions().query(
        "split == 'test'"))


def test_export_never_replaces_a_folder_of_the_users_files(trained_run, tmp_path, capsys):
    out = tmp_path / "export"
    (out / "saved_model").mkdir(parents=True)
    (out / "saved_model" / "notes.txt").write_text("mine")
    before = snapshot(out)
    rc, _, err = run_cli(capsys, "export", trained_run.id, "--format", "savedmodel", "--out", out,
                         "--overwrite")
    assert rc == 2 and err.splitlines()[-1] == (
        f"error: --out {out / 'saved_model'} holds files that are not part of a SavedModel "
        "(notes.txt); a folder of your files is never replaced; choose another folder")
    assert snapshot(out) == before
    rc, _, err = run_cli(capsys, "export", trained_run.id, "--format", "tflite", "--out", trained_run.folder)
    assert rc == 2 and "inside the workspace's own stores" in err
    fresh = tmp_path / "fresh"
    assert run_cli(capsys, "export", trained_run.id, "--format", "savedmodel", "--out", fresh)[0] == 0
    rc, _, err = run_cli(capsys, "export", trained_run.id, "--format", "savedmodel", "--out", fresh)
    assert rc == 2 and "already exists" in err
    assert run_cli(capsys, "export", trained_run.id, "--format", "savedmodel", "--out", fresh,
                   "--overwrite")[0] == 0
    assert (fresh / "saved_model" / "saved_model.pb").is_file()
    assert not [p for p in fresh.iterdir() if p.name.startswith(".")]


def test_reviews_export_refuses_an_existing_file_and_the_database_itself(workspace, tmp_path, capsys):
    from cxrlib.reviews.store import ReviewStore

    ReviewStore()  # the database exists
    mine = tmp_path / "mine.csv"
    mine.write_text("mine")
    rc, _, err = run_cli(capsys, "reviews", "export", "all", "--out", mine)
    assert rc == 2 and err == (f"error: --out {mine} already exists; choose another path, or "
                               "--overwrite to replace it\n")
    db = paths.workspace() / "reviews.sqlite"
    rc, _, err = run_cli(capsys, "reviews", "export", "all", "--out", db, "--overwrite")
    assert rc == 2 and err.startswith(f"error: --out {db} is inside the workspace's own stores")
    assert mine.read_text() == "mine"
    assert run_cli(capsys, "reviews", "export", "all", "--out", mine, "--overwrite")[0] == 0


def _small_fs(tmp_path, options: str) -> Path:
    """A tmpfs (as root) mounted at ``tmp_path/fs-<n>``; unmounted by :func:`small_fs`."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root (disk-full and read-only cases)")
    mnt = tmp_path / f"fs-{len(list(tmp_path.glob('fs-*')))}"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return mnt


@pytest.fixture
def small_fs(tmp_path):
    mounted = []

    def make(options: str) -> Path:
        mounted.append(_small_fs(tmp_path, options))
        return mounted[-1]

    yield make
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> None:
    """Fill the file system of ``folder`` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_full_disk_and_a_read_only_one_are_one_line_exit_4(tmp_path, capsys, small_fs):
    model, films = _tiny_keras(tmp_path), _films(tmp_path / "in")
    full = small_fs("size=256k")
    _fill(full)
    rc, _, err = run_cli(capsys, "predict", model, films, "--out", full / "p.csv")
    assert rc == 4 and err.splitlines()[-1] == f"error: cannot write {full / 'p.csv'}: no space left on the device"
    assert sorted(os.listdir(full)) == ["filler"]  # no temporary left behind
    ro = small_fs("size=256k,ro")
    rc, _, err = run_cli(capsys, "predict", model, films, "--out", ro / "p.csv")
    assert rc == 4 and err.splitlines()[-1] == f"error: cannot write {ro / 'p.csv'}: read-only file system"
    root = dataset(tmp_path / "ds")
    rc, _, err = run_cli(capsys, "scan", root, "--manifest", ro / "m.csv")
    assert rc == 4 and err.splitlines()[-1] == f"error: cannot write {ro / 'm.csv'}: read-only file system"


def test_a_tensor_cache_on_a_full_disk_is_an_error_not_a_bus_error(tmp_path, small_fs, monkeypatch):
    """The cache is a memory-mapped file: a page written on a full disk used to kill the
    process with SIGBUS. Its blocks are reserved first, so a full disk is one line."""
    from cxrlib.core.config import PreprocessConfig
    from cxrlib.core.outputs import WriteError
    from cxrlib.preprocessing.tensor_cache import load_tensors

    full = small_fs("size=256k")
    monkeypatch.setenv("CXR_WORKSPACE", str(full / "ws"))
    ds = datasets.scan_dataset(dataset(tmp_path / "ds", per_class=40))
    # 120 films of 64 x 64: 0.5 MB, twice the file system; the header and index fit
    with pytest.raises(WriteError) as info:
        load_tensors(ds, PreprocessConfig(size=64, steps=()), workers=1)
    root = full / "ws" / "models" / "cache" / "tensors"
    assert str(info.value) == (f"cannot build the tensor cache in {root} (0.5 MB): no space left on "
                               "the device; free space there or delete old cache entries")
    assert os.listdir(root) == []  # the partial entry is gone


def test_nothing_readable_is_exit_4_for_predict_and_explain_as_for_lungs_predict(tmp_path, capsys):
    """One rule (docs/safety.md): a command that could read none of its inputs exits 4."""
    model = _tiny_keras(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cut.jpg").write_bytes(bf.truncated_jpeg_with_eoi())
    rc, out, err = run_cli(capsys, "predict", model, tmp_path / "in", "--out", tmp_path / "p.csv")
    assert rc == 4 and out.endswith(f"0 predicted, 1 unreadable, 0 left out -> {tmp_path / 'p.csv'}\n")
    assert f"unreadable: {tmp_path / 'in' / 'cut.jpg'}: {FILES['cut-then-eoi.jpg'][2]}" in err.splitlines()
    rc, out, err = run_cli(capsys, "explain", model, tmp_path / "in", "--out", tmp_path / "e")
    assert rc == 4 and "0 explained, 0 flat (no overlay), 1 unreadable, 0 left out" in out


# ------------------------------------------------ issue 22: CSVs that hostile names cannot break
HOSTILE = ("a\rb.png", "c\nd.png", 'q"r.png', "s,t.png", "=1+1.png", "-x.png", "+y.png", "@z.png")
NOT_UTF8 = b"bad\xff.png"


def _as_people_see(text: str) -> str:
    """What a CSV meant for people holds for a name (OWASP: a formula-like cell gets a ')."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _hostile_dataset(root: Path, per_class: int = 4) -> Path:
    dataset(root, per_class=per_class)
    for i, name in enumerate(HOSTILE):
        (root / ("COVID-19", "Normal", "Viral Pneumonia")[i % 3] / name).write_bytes(bf.good_png(500 + i))
    Path(os.fsdecode(os.fsencode(root / "Normal") + b"/" + NOT_UTF8)).write_bytes(bf.good_png(600))
    return root


def test_the_csv_writer_quotes_what_needs_it_and_reads_back_what_it_wrote(tmp_path):
    from cxrlib.core.csvio import CsvCountError, csv_text, read_csv

    frame = pd.DataFrame({"path": list(HOSTILE), "p": [0.5, -0.25, 1, 0, 2, 3, 4, 5]})
    text = csv_text(frame, for_people=False)
    (tmp_path / "m.csv").write_text(text, newline="")
    back = read_csv(tmp_path / "m.csv", rows=len(frame))
    assert back["path"].tolist() == list(HOSTILE) and back["p"].tolist() == frame["p"].tolist()
    people = read_csv(io_file(tmp_path / "p.csv", csv_text(frame, for_people=True)), rows=8)
    assert people["path"].tolist() == [_as_people_see(n) for n in HOSTILE]
    assert people["p"].tolist() == frame["p"].tolist()  # numbers are never touched
    # pandas' own writer (the product's before) leaves the carriage return bare: a row too many
    (tmp_path / "old.csv").write_text(frame.to_csv(index=False), newline="")
    with pytest.raises(CsvCountError, match="holds 9 rows where 8 were written"):
        read_csv(tmp_path / "old.csv", rows=8)


def io_file(path: Path, text: str) -> Path:
    path.write_text(text, newline="")
    return path


def test_a_runs_csv_files_round_trip_hostile_names_and_a_changed_count_is_damage(workspace, capsys):
    from cxrlib.core.config import RunConfig
    from cxrlib.runs.registry import create_run

    run = create_run(RunConfig(), "fp-hostile")
    table = pd.DataFrame({"rel_path": [f"Normal/{n}" for n in HOSTILE], "label": "Normal",
                          "split": ["train", "test"] * 4, "patient_id": list(HOSTILE)})
    run.write_split(table)
    run.write_predictions(table.assign(pred="Normal", p_Normal=1.0))
    pd.testing.assert_frame_equal(run.split_table(), table)
    assert run.predictions()["rel_path"].tolist() == table["rel_path"].tolist()
    # as the product wrote it before (pandas leaves a bare \r, twice a row here): 10 rows, damage
    (run.folder / "predictions.csv").write_text(table.to_csv(index=False), newline="")
    from cxrlib.runs.run import RunFileError

    with pytest.raises(RunFileError) as info:
        run.predictions()
    assert str(info.value) == f"run {run.id}: predictions.csv is damaged (holds 10 rows where 8 were written)"
    rc, _, err = run_cli(capsys, "evaluate", run.id, "--out-dir", Path(str(workspace)) / ".." / "ev")
    assert rc == 4 and err.splitlines()[-1] == f"error: {info.value}"
    rc, out, err = run_cli(capsys, "runs")  # listed as a broken row that can be deleted
    assert rc == 0 and f"{run.id}  broken" in out and f"warning: {info.value}; `python -m cxrlib delete" in err


def test_hostile_names_round_trip_through_scan_predict_explain_and_reviews(tmp_path, capsys):
    from cxrlib.core.csvio import read_csv
    from cxrlib.reviews.store import ReviewStore

    root = _hostile_dataset(tmp_path / "ds", per_class=1)
    rc, out, err = run_cli(capsys, "scan", root, "--manifest", tmp_path / "manifest.csv")
    assert rc == 0 and "images 11  unreadable 1" in out
    bad = os.fsencode(root / "Normal").decode() + "/bad\\xff.png"
    assert f"unreadable: {bad}: file name is not valid UTF-8; rename it to read it" in err.splitlines()
    names = {Path(p).name for p in read_csv(tmp_path / "manifest.csv", rows=11)["path"]}
    assert names >= set(HOSTILE)  # a machine file: names as they are
    model = _tiny_keras(tmp_path)
    rc, out, err = run_cli(capsys, "predict", model, root, "--out", tmp_path / "p.csv")
    assert rc == 0 and out.endswith(f"11 predicted, 0 unreadable, 1 left out -> {tmp_path / 'p.csv'}\n")
    assert f"left out: {bad}: file name is not valid UTF-8; rename it to read it" in err.splitlines()
    films = sorted(str(root / c / n) for c in ("COVID-19", "Normal", "Viral Pneumonia")
                   for n in os.listdir(root / c) if n.encode("utf-8", "surrogatepass").isascii())
    assert len(films) == 11  # full paths begin with "/": nothing to neutralise in them
    assert sorted(read_csv(tmp_path / "p.csv", rows=11)["path"]) == films
    rc, out, err = run_cli(capsys, "explain", model, root, "--out", tmp_path / "e", "--deletion-steps", "0")
    assert rc == 0, err
    assert sorted(read_csv(tmp_path / "e" / "explanations.csv", rows=11)["path"]) == films
    store = ReviewStore()
    from test_reviews_store import review

    for i, name in enumerate(HOSTILE):
        store.add(review(review_id=f"r{i}", rel_path=f"Normal/{name}", comment=name))
    rc, _, err = run_cli(capsys, "reviews", "export", "all", "--out", tmp_path / "r.csv")
    assert rc == 0, err
    back = read_csv(tmp_path / "r.csv", rows=len(HOSTILE))
    assert back["comment"].tolist() == [_as_people_see(n) for n in HOSTILE]


def test_a_run_on_hostile_names_evaluates_every_test_film(tmp_path, capsys):
    """A bare \\r in split.csv and predictions.csv made evaluate drop 23 of 24 test films."""
    root = _hostile_dataset(tmp_path / "ds", per_class=6)
    rc, out, err = run_cli(capsys, "train", "--data", root, "--model", "tiny", "--weights", "random",
                           "--mode", "head", "--epochs", "1", "--size", "32", "--steps", "none",
                           "--split", "random")
    assert rc == 0 and "state done" in out, err
    from cxrlib.runs.registry import get_run

    run = get_run(out.split()[1])
    split = run.split_table()
    assert len(split) == 26 and set(HOSTILE) <= {Path(p).name for p in split["rel_path"]}
    test = split[split["split"] == "test"]
    rc, out, err = run_cli(capsys, "evaluate", run.id, "--out-dir", tmp_path / "ev")
    assert rc == 0, err
    evaluated = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert evaluated["n"] == len(test) == run.metrics()["n_test"]
    assert evaluated["accuracy"] == pytest.approx(run.metrics()["accuracy"])


def _manifest_only(root: Path, text: str) -> Path:
    (root / "films").mkdir(parents=True)
    for i in range(6):
        (root / "films" / f"f{i}.png").write_bytes(bf.good_png(i))
    (root / "manifest.csv").write_text(text)
    return root


def test_a_manifest_listing_a_film_twice_with_two_labels_leaves_it_out_and_names_it(tmp_path, capsys):
    rows = [f"films/f{i}.png,{('COVID-19', 'Normal')[i % 2]}" for i in range(6)]
    root = _manifest_only(tmp_path / "ds", "file,label\n" + "\n".join(rows + ["films/f0.png,Normal"]) + "\n")
    rc, out, err = run_cli(capsys, "scan", root)
    assert rc == 0 and "images 5  unreadable 1" in out
    assert ("warning: manifest.csv lists films/f0.png 2 times with different labels (COVID-19, Normal): "
            "which one is right cannot be told") in err.splitlines()
    assert (f"unreadable: {root / 'films' / 'f0.png'}: listed in manifest.csv with different labels "
            "(COVID-19, Normal); left out") in err.splitlines()


def test_a_manifest_separated_by_semicolons_says_so(tmp_path, capsys):
    rows = [f"films/f{i}.png;{('COVID-19', 'Normal')[i % 2]}" for i in range(6)]
    root = _manifest_only(tmp_path / "ds", "file;label\n" + "\n".join(rows) + "\n")
    rc, out, err = run_cli(capsys, "scan", root)
    assert (rc, out) == (4, "")
    assert err.splitlines()[-1].startswith(
        f"error: {root}: no class folders found, and manifest.csv has no 'file' column: its header "
        "'file;label' is separated by semicolons; separate columns by commas; ignored. Accepted layouts: ")


# ------------------------------------------------ issue 22: names and special files
NOT_UTF8_REASON = "file name is not valid UTF-8; rename it to read it"
FIFO_REASON = "a named pipe (FIFO), not a regular file; not opened"


def _odd_names(root: Path) -> tuple[str, str]:
    """A non-UTF-8 film and a FIFO named p.jpg in ``root/Normal``; their printable paths."""
    Path(os.fsdecode(os.fsencode(root / "Normal") + b"/" + NOT_UTF8)).write_bytes(bf.good_png(600))
    os.mkfifo(root / "Normal" / "p.jpg")
    return os.fsencode(root / "Normal").decode() + "/bad\\xff.png", str(root / "Normal" / "p.jpg")


def test_a_non_utf8_name_and_a_fifo_are_listed_and_the_rest_of_the_dataset_works(tmp_path, capsys):
    root = dataset(tmp_path / "ds")
    bad, fifo = _odd_names(root)
    rc, out, err = run_cli(capsys, "scan", root)  # used to fail whole, or hang on the FIFO
    assert rc == 0 and "images 15  unreadable 2" in out
    assert f"unreadable: {bad}: {NOT_UTF8_REASON}" in err.splitlines()
    assert f"unreadable: {fifo}: {FIFO_REASON}" in err.splitlines()
    ds = datasets.scan_dataset(root)
    assert dict(zip(ds.problems["rel_path"], ds.problems["reason"])) == {
        "Normal/bad\\xff.png": NOT_UTF8_REASON, "Normal/p.jpg": FIFO_REASON}
    model = _tiny_keras(tmp_path)
    rc, out, err = run_cli(capsys, "predict", model, root, root / "Normal" / "p.jpg", "--out", tmp_path / "p.csv")
    assert rc == 0 and out.endswith(f"15 predicted, 0 unreadable, 3 left out -> {tmp_path / 'p.csv'}\n")
    assert err.splitlines().count(f"left out: {fifo}: {FIFO_REASON}") == 2  # in the folder, and by name
    assert f"left out: {bad}: {NOT_UTF8_REASON}" in err.splitlines()
    rc, out, err = run_cli(capsys, "explain", model, root / "Normal", "--out", tmp_path / "e",
                           "--deletion-steps", "0")
    assert rc == 0 and "3 left out" not in out and f"left out: {bad}: {NOT_UTF8_REASON}" in err.splitlines()


def test_train_on_a_dataset_with_a_non_utf8_name_and_a_fifo(tmp_path, capsys):
    root = dataset(tmp_path / "ds", per_class=6)
    _odd_names(root)
    rc, out, err = run_cli(capsys, "train", "--data", root, "--model", "tiny", "--weights", "random",
                           "--mode", "head", "--epochs", "1", "--size", "32", "--steps", "none",
                           "--split", "random")
    assert rc == 0 and "state done" in out, err


def test_lungs_predict_lists_a_non_utf8_name_instead_of_a_segmentation_fault(tmp_path):
    """In a child process: a segmentation fault would take the test run down with it."""
    root = dataset(tmp_path / "ds", per_class=1)
    bad, fifo = _odd_names(root)
    done = subprocess.run([sys.executable, "-m", "cxrlib", "lungs", "predict", str(root / "Normal"),
                           "--out", str(tmp_path / "masks")], capture_output=True, text=True,
                          errors="backslashreplace", timeout=300, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert f"left out: {bad}: {NOT_UTF8_REASON}" in lines and f"left out: {fifo}: {FIFO_REASON}" in lines
    assert sorted(os.listdir(tmp_path / "masks")) == ["good0.png"]


def test_the_app_sidebar_lists_a_non_utf8_name_and_a_fifo(app, tmp_path):
    root = dataset(tmp_path / "ds")
    bad, fifo = _odd_names(root)
    at = app("views/dataset.py", data_dir=root)
    assert not at.exception
    problems = [d.value for d in at.dataframe if "reason" in d.value.columns][0]
    assert dict(zip(problems["rel_path"], problems["reason"])) == {
        "Normal/bad\\xff.png": NOT_UTF8_REASON, "Normal/p.jpg": FIFO_REASON}


def test_a_damaged_best_keras_makes_a_broken_run_not_a_done_one(workspace, tmp_path, capsys):
    from cxrlib.core.config import RunConfig, TrainConfig
    from cxrlib.runs.registry import create_run

    whole = _tiny_keras(tmp_path).read_bytes()
    runs = {}
    for epochs, data in ((2, whole), (3, whole[: len(whole) // 2]), (4, b"not a zip")):
        run = create_run(RunConfig(train=TrainConfig(epochs=epochs)), "fp-model")
        run.write_status(state="done", epoch=epochs, epochs=epochs)
        run.model_path.write_bytes(data)
        runs[epochs] = run
    rc, out, err = run_cli(capsys, "runs")
    assert rc == 0 and f"{runs[2].id}  done" in out
    for epochs in (3, 4):
        assert f"{runs[epochs].id}  broken" in out
        assert (f"warning: run {runs[epochs].id}: best.keras is damaged (not a Keras model file (.keras "
                "zip archive): File is not a zip file); `python -m cxrlib delete "
                f"{runs[epochs].id}` removes it") in err.splitlines()
    assert run_cli(capsys, "delete", runs[3].id)[:2] == (0, f"deleted run {runs[3].id}\n")


def test_delete_of_a_run_folder_that_is_a_link_says_what_it_did(workspace, tmp_path, capsys):
    from cxrlib.core.config import RunConfig
    from cxrlib.runs.registry import create_run, list_runs

    run = create_run(RunConfig(), "fp-link")
    run.write_status(state="done")
    elsewhere = tmp_path / "kept" / run.id
    elsewhere.parent.mkdir()
    shutil.move(run.folder, elsewhere)
    run.folder.symlink_to(elsewhere)
    before = snapshot(elsewhere)
    rc, out, err = run_cli(capsys, "delete", run.id)
    assert rc == 0 and out == (f"removed the link {run.folder} (run {run.id}); the folder it pointed "
                               f"to, {elsewhere}, was not deleted\n")
    after = {k: v for k, v in snapshot(elsewhere).items() if not k.endswith("start.lock")}
    assert not os.path.lexists(run.folder) and after == before  # (the delete lock is taken there)
    assert list_runs() == [] and not list(paths.runs_dir().iterdir())  # nothing left, hidden or not


def test_audit_json_is_a_user_output_too(workspace, tmp_path, capsys):
    from cxrlib.core.config import RunConfig
    from cxrlib.runs.registry import create_run

    run = create_run(RunConfig(), "fp-audit")
    mine = tmp_path / "summary.json"
    mine.write_text("mine")
    rc, out, err = run_cli(capsys, "audit", run.id, "--json", mine)
    assert (rc, out) == (2, "") and err == (f"error: --json {mine} already exists; choose another path, "
                                            "or --overwrite to replace it\n")
    rc, _, err = run_cli(capsys, "audit", run.id, "--json", run.folder / "audit.json", "--overwrite")
    assert rc == 2 and "inside the workspace's own stores" in err and mine.read_text() == "mine"


def test_the_training_page_shows_a_damaged_best_keras_and_deletes_a_linked_run_truthfully(
        app, trained_run, tmp_path, monkeypatch):
    from app_fixtures import texts

    from cxrlib.core.config import RunConfig, TrainConfig
    from cxrlib.runs.registry import create_run

    work = tmp_path / "workspace"
    shutil.copytree(trained_run.folder, work / "models" / "runs" / trained_run.id)
    monkeypatch.setenv("CXR_WORKSPACE", str(work))  # a copy: the shared workspace stays intact
    run = create_run(RunConfig(train=TrainConfig(epochs=9)), "fp-app")
    run.write_status(state="done", epoch=9, epochs=9)
    run.model_path.write_bytes(b"not a zip")
    elsewhere = tmp_path / "kept" / run.id
    elsewhere.parent.mkdir()
    shutil.move(run.folder, elsewhere)
    run.folder.symlink_to(elsewhere)
    at = app("views/training.py")
    assert any(e.startswith(f"Run `{run.id}`: **best.keras** is damaged (not a Keras model file")
               for e in texts(at.error))
    [b for b in at.button if b.key == f"delete_{run.id}"][0].click().run()
    assert not at.exception and not os.path.lexists(run.folder)
    assert (elsewhere / "best.keras").read_bytes() == b"not a zip"  # the folder is the user's to delete
    assert f"Run `{run.id}` was a link: the link was removed, the folder it pointed to ({elsewhere}) " \
           "was not deleted." in texts(at.info)


def test_lungs_train_refuses_weights_already_in_a_named_out_before_training(tmp_path, capsys):
    root = dataset(tmp_path / "ds")
    out = tmp_path / "weights"
    out.mkdir()
    (out / "lung_unet.npz").write_bytes(b"the user's weights")
    rc, _, err = run_cli(capsys, "lungs", "train", "--data", root, "--out", out)
    assert rc == 2 and err == (f"error: --out {out / 'lung_unet.npz'} already exists; choose another "
                               "path, or --overwrite to replace it\n")
    assert (out / "lung_unet.npz").read_bytes() == b"the user's weights"
