"""The audit's external set that holds the run's own training or validation films (the same
content, found by digest): the report says how many, and the accuracy is on the others only."""
from __future__ import annotations

import shutil

import pytest
from app_fixtures import app_workspace, trained_run  # noqa: F401 (fixtures: the shared tiny run)

from cxrlib.audit import external_check
from cxrlib.audit.findings import WARNING


def _seen_and_test(run):
    split = run.split_table()
    seen = split[split["split"].isin(["train", "val"])]
    return seen, split[split["split"] == "test"]


def test_the_runs_own_dataset_as_external_set_says_so(trained_run, synthetic_dataset):
    seen, test = _seen_and_test(trained_run)
    ext = external_check(trained_run, synthetic_dataset)
    assert ext["seen_films"] == len(seen)
    assert ext["films"] == len(test)  # the accuracy is on the films the run never fitted on
    predictions = trained_run.test_predictions()
    expected = float((predictions["label"] == predictions["pred"]).mean())
    assert ext["external_accuracy"] == pytest.approx(expected)
    verdict = ext["verdict"]
    assert verdict.severity == WARNING and verdict.code == "external"
    assert f"{len(seen)} of the {len(seen) + len(test)} films" in verdict.text
    assert "trained or validated on" in verdict.text


def test_an_external_set_of_only_seen_films_gives_no_accuracy(trained_run, synthetic_dataset,
                                                              tmp_path, capsys):
    seen, _ = _seen_and_test(trained_run)
    folder = tmp_path / "copies"
    for rel in seen["rel_path"].astype(str).head(9):
        target = folder / rel  # class folders, as the original
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(synthetic_dataset / rel, target.with_name("copy-" + target.name))
    ext = external_check(trained_run, folder)
    assert (ext["seen_films"], ext["films"], ext["external_accuracy"]) == (9, 0, None)
    assert ext["verdict"].severity == WARNING
    assert "all 9 films" in ext["verdict"].text and "no accuracy" in ext["verdict"].text

    from cxrlib.cli import main

    assert main(["audit", trained_run.id[:8], "--external", str(folder), "--steps", "per_source"]) == 0
    out = capsys.readouterr().out
    assert "all 9 films" in out and '"seen_films": 9' in out
