"""User-named outputs against hostile targets: a command's own inputs, the dataset of the run it
uses, the real folder of a linked run, and paths that are not regular files. Each case asserts the
message, the exit code and that nothing the user had was changed (the helpers are the standing
suite's, ``tests/test_bad_inputs.py``)."""
from __future__ import annotations

import json

import pytest

from test_bad_inputs import dataset, fresh, run_cli, snapshot

pytestmark = pytest.mark.usefixtures(fresh.__name__)  # the standing suite's fresh workspace


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
