"""User-named outputs against hostile targets: a command's own inputs, the dataset of the run it
uses, the real folder of a linked run, and paths that are not regular files. Each case asserts the
message, the exit code and that nothing the user had was changed (the helpers are the standing
suite's, ``tests/test_bad_inputs.py``)."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

import app_fixtures
from test_bad_inputs import _films, _tiny_keras, dataset, fresh, run_cli, snapshot
from cxrlib.core import paths

pytestmark = pytest.mark.usefixtures(fresh.__name__)  # the standing suite's fresh workspace
app_workspace, trained_run = app_fixtures.app_workspace, app_fixtures.trained_run  # fixtures


def _run_on(root: Path, fingerprint: str):
    """A registered run (no model) whose config names ``root`` as its dataset: every refusal
    here comes before any model is loaded."""
    from cxrlib.core.config import RunConfig
    from cxrlib.runs.registry import create_run

    cfg = RunConfig()
    run = create_run(cfg.replace(data=cfg.data.replace(root=str(root))), fingerprint)
    run.write_status(state="done")
    return run


# ------------------------------------------------------------------ sweep --csv
def test_sweep_csv_never_replaces_its_spec_or_a_film_of_its_dataset(tmp_path, capsys, monkeypatch):
    from cxrlib.sweep import study

    def must_not_run(*args, **kwargs):
        raise AssertionError("the --csv was not refused before the sweep ran")

    monkeypatch.setattr(study, "run_sweep", must_not_run)
    ds = dataset(tmp_path / "ds")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "hs", "data": str(ds), "selection": "validation", "trials": 1,
                                "grid": {"train.seed": [1]}, "fixed": {"model.family": "tiny"}}))
    before = snapshot(tmp_path)
    rc, out, err = run_cli(capsys, "sweep", spec, "--csv", spec, "--overwrite")
    assert (rc, out) == (2, "") and err == (f"error: --csv {spec} would write over an input of this "
                                            f"command ({spec}); choose another path\n")
    film = ds / "Normal" / "good0.png"
    rc, out, err = run_cli(capsys, "sweep", spec, "--csv", film, "--overwrite")
    assert (rc, out) == (2, "") and err == (f"error: --csv {film} would write over or into the "
                                            f"dataset in {ds}; write it outside that folder\n")
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ the dataset of the run used
def _argv(command: str, run, film: Path, target: Path) -> list:
    return {"predict": ["predict", run.id, film, "--out", target],
            "explain": ["explain", run.id, film, "--out", target],
            "evaluate": ["evaluate", run.id, "--out-dir", target],
            "export": ["export", run.id, "--format", "tflite", "--out", target],
            "audit": ["audit", run.id, "--json", target],
            "reviews": ["reviews", "export", run.id, "--out", target]}[command]


@pytest.mark.parametrize("command, name, flag", [
    ("predict", "manifest.csv", "--out"), ("predict", "new.csv", "--out"),
    ("explain", "Normal", "--out"), ("evaluate", "eval", "--out-dir"), ("export", "export", "--out"),
    ("audit", "manifest.csv", "--json"), ("reviews", "reviews.csv", "--out")])
def test_no_output_of_a_command_lands_in_the_dataset_of_the_run_it_uses(
        tmp_path, capsys, command, name, flag):
    ds = dataset(tmp_path / "ds", per_class=2)
    (ds / "manifest.csv").write_text("path,label\n")
    run = _run_on(ds, "fp-own-dataset")
    film = _films(tmp_path / "in") / "a.png"
    target = ds / name
    before = snapshot(tmp_path)
    rc, out, err = run_cli(capsys, *_argv(command, run, film, target), "--overwrite")
    assert (rc, out) == (2, "") and err.splitlines()[-1] == (
        f"error: {flag} {target} would write over or into the dataset in {ds}; write it outside "
        "that folder"), err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["eval", "train"])
def test_no_output_of_lungs_eval_or_train_lands_in_the_films_or_masks_it_reads(
        tmp_path, capsys, monkeypatch, command):
    """Left by the first round of this fix: ``lungs eval --per-film`` and ``lungs train --out``
    guarded their --data and --masks as inputs only, so a new file could land in the dataset
    (the next scan reads what lands there)."""
    from cxrlib.lungs import train

    def must_not_run(*args, **kwargs):
        raise AssertionError("the output was not refused before the work")

    monkeypatch.setattr(train, "train_lung_model", must_not_run)
    films, masks = dataset(tmp_path / "films", per_class=2), dataset(tmp_path / "masks", per_class=2)
    for folder, flag in ((films, "--per-film" if command == "eval" else "--out"),
                         (masks, "--per-film" if command == "eval" else "--out")):
        target = folder / ("per_film.csv" if command == "eval" else "lungs")
        before = snapshot(tmp_path)
        rc, out, err = run_cli(capsys, "lungs", command, "--data", films, "--masks", masks,
                               flag, target, "--overwrite")
        assert (rc, out) == (2, "") and err.splitlines()[-1] == (
            f"error: {flag} {target} would write over or into the dataset in {folder}; write it "
            "outside that folder"), err
        assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ a run folder that is a link
def test_the_real_folder_of_a_linked_run_is_a_workspace_store(tmp_path, capsys):
    from cxrlib.core.outputs import OutputRefused, UserOutput

    run = _run_on(dataset(tmp_path / "ds", per_class=2), "fp-linked")
    elsewhere = tmp_path / "kept" / run.id
    elsewhere.parent.mkdir()
    shutil.move(run.folder, elsewhere)
    run.folder.symlink_to(elsewhere)
    model, films = _tiny_keras(tmp_path), _films(tmp_path / "in")
    before = snapshot(elsewhere)
    target = elsewhere / "config.json"
    rc, out, err = run_cli(capsys, "predict", model, films, "--out", target, "--overwrite")
    assert (rc, out) == (2, "") and err.splitlines()[-1] == (
        f"error: --out {target} is inside the workspace's own stores ({elsewhere}); choose a path "
        "outside them"), err
    with pytest.raises(OutputRefused, match="inside the workspace's own stores"):
        UserOutput(overwrite=True).check(elsewhere / "new.csv")
    assert snapshot(elsewhere) == before


def test_a_cache_or_reviews_database_linked_elsewhere_is_still_a_workspace_store(tmp_path):
    """Left by the first round of this fix: only links in the runs folder were followed, so a
    cache folder (or the reviews database) put on another disk by a link was open to --out."""
    from cxrlib.core.outputs import OutputRefused, UserOutput

    models = paths.workspace() / "models"
    models.mkdir(parents=True, exist_ok=True)
    cache, db = tmp_path / "big-disk" / "cache", tmp_path / "db" / "reviews.sqlite"
    cache.mkdir(parents=True)
    db.parent.mkdir()
    db.write_bytes(b"SQLite format 3\0")
    (models / "cache").symlink_to(cache, target_is_directory=True)
    (paths.workspace() / "reviews.sqlite").symlink_to(db)
    for target in (cache / "tensors.csv", db):
        with pytest.raises(OutputRefused, match="inside the workspace's own stores"):
            UserOutput(overwrite=True).check(target)
    UserOutput(overwrite=True).check(tmp_path / "db" / "mine.csv")  # beside them: the user's


# ------------------------------------------------------------------ not a regular file
def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a character device (like /dev/null) needs root")
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))


@pytest.mark.parametrize("make, is_kind", [(_fifo, stat.S_ISFIFO), (_device, stat.S_ISCHR)])
def test_an_out_that_is_not_a_regular_file_is_refused_even_with_overwrite(
        tmp_path, capsys, make, is_kind):
    model, films = _tiny_keras(tmp_path), _films(tmp_path / "in")
    target = tmp_path / "special"
    make(target)
    rc, out, err = run_cli(capsys, "predict", model, films, "--out", target, "--overwrite")
    assert (rc, out) == (2, "") and err.splitlines()[-1] == (
        f"error: --out {target} is not a regular file (a device, FIFO or socket); choose another "
        "path"), err
    assert is_kind(os.lstat(target).st_mode)  # still what it was, not replaced by a file
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_link_named_as_out_is_still_replaced_and_its_target_kept(tmp_path, capsys):
    model, films = _tiny_keras(tmp_path), _films(tmp_path / "in")
    kept = tmp_path / "kept.csv"
    kept.write_text("mine\n")
    link = tmp_path / "link.csv"
    link.symlink_to(kept)
    rc, _, err = run_cli(capsys, "predict", model, films, "--out", link, "--overwrite")
    assert rc == 0, err
    assert kept.read_text() == "mine\n" and not link.is_symlink() and "a.png" in link.read_text()
    assert paths.workspace() not in link.resolve().parents


# ------------------------------------------------------------------ a file where a folder must go
@pytest.mark.parametrize("command", ["predict", "explain"])
def test_an_out_below_a_file_is_refused_before_any_work_by_one_rule(tmp_path, capsys, command):
    """Both commands: one line, exit 2 (the rule ``UserOutput.write_all`` already had)."""
    model, films = _tiny_keras(tmp_path), _films(tmp_path / "in")
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    target = blocker / "sub" / ("p.csv" if command == "predict" else "overlays")
    before = snapshot(tmp_path)
    rc, out, err = run_cli(capsys, command, model, films, "--out", target)
    assert (rc, out) == (2, "") and err.splitlines()[-1] == (
        f"error: --out {target} cannot be made: {blocker} is a file"), err
    assert "━" not in err  # refused before any film was read
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ nothing made before the checks
def test_evaluate_refused_for_a_bad_by_leaves_no_out_dir(trained_run, tmp_path, capsys):
    out = tmp_path / "eval"
    rc, _, err = run_cli(capsys, "evaluate", trained_run.id, "--by", "no_such_column", "--out-dir", out)
    assert rc == 2 and err.count("\n") == 1 and "no_such_column" in err, err
    assert not out.exists() and os.listdir(tmp_path) == []


# ------------------------------------------------------------------ '-' is standard output
def test_predict_out_dash_writes_the_csv_to_stdout_as_reviews_export_does(tmp_path, capsys, monkeypatch):
    import io

    import pandas as pd

    model, films = _tiny_keras(tmp_path), _films(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(capsys, "predict", model, films, "--out", "-")
    assert rc == 0 and not os.path.lexists(tmp_path / "-"), err
    table = pd.read_csv(io.StringIO(out))  # the CSV alone on stdout; the summary on stderr
    assert sorted(Path(p).name for p in table["path"]) == ["a.png", "b.png"]
    assert err.splitlines()[-1] == "2 predicted, 0 unreadable, 0 left out -> stdout"


def test_a_dash_is_never_a_file_named_dash(tmp_path, capsys, monkeypatch):
    """Left by the first round of this fix: ``-`` is standard output for predict and reviews
    export, but audit --json, sweep --csv and explain --out made a file (or folder) named ``-``.
    Where an option does not write to standard output, ``-`` is refused."""
    from cxrlib.sweep import study

    monkeypatch.setattr(study, "run_sweep", lambda *a, **k: 1 / 0)  # never reached
    monkeypatch.chdir(tmp_path)
    ds = dataset(tmp_path / "ds")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "hs", "data": str(ds), "selection": "validation", "trials": 1,
                                "grid": {"train.seed": [1]}, "fixed": {"model.family": "tiny"}}))
    run = _run_on(ds, "fp-dash")
    film = _films(tmp_path / "in") / "a.png"
    before = snapshot(tmp_path)
    for argv, flag in ((("sweep", spec, "--csv", "-"), "--csv"),
                       (("audit", run.id, "--json", "-"), "--json"),
                       (("explain", run.id, film, "--out", "-"), "--out")):
        rc, out, err = run_cli(capsys, *argv)
        assert (rc, out) == (2, "") and err.splitlines()[-1] == (
            f"error: {flag} - is standard output, which {flag} does not write to; name a file"), err
    assert snapshot(tmp_path) == before


def test_explain_from_a_pacs_checks_its_dicom_out_before_it_loads_the_model(tmp_path, capsys,
                                                                             monkeypatch):
    """Found in review of this fix: with --pacs, --dicom-out was checked only after the model
    was loaded and its CAM built (seconds, for a refusal the user could have had at once)."""
    from cxrlib.runs.run import Run

    def must_not_load(self):
        raise AssertionError("the model was loaded before --dicom-out was checked")

    monkeypatch.setattr(Run, "load_model", must_not_load)
    run = _run_on(dataset(tmp_path / "ds", per_class=2), "fp-pacs-order")
    taken = tmp_path / "results"
    taken.write_text("mine")
    rc, out, err = run_cli(capsys, "explain", run.id, "--pacs", "http://127.0.0.1:9/dicom-web",
                           "--study", "1.2.3", "--dicom-out", taken)
    assert (rc, out) == (2, "") and err.splitlines()[-1] == (
        f"error: --dicom-out {taken} is a file, not a folder"), err
    assert taken.read_text() == "mine"
