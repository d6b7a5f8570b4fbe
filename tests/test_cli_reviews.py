"""``python -m cxrlib reviews export``: the same rows as the store, by run id or prefix, and
clear exit codes for an unknown run, a folder given as the file, a damaged database."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd

from cxrlib.cli import main
from cxrlib.core import paths
from cxrlib.core.config import DataConfig, RunConfig
from cxrlib.reviews import Review, ReviewStore
from cxrlib.runs.registry import create_run


def _review(run_id: str, i: int) -> Review:
    return Review(reviewer=f"Dr {'AB'[i % 2]}", run_id=run_id, rel_path=f"COVID/{i}.png",
                  agrees_with_label=i % 2 == 0, agrees_with_prediction=True,
                  heatmap_location="markers", confidence=1 + i % 5, comment=f"film {i}",
                  label="COVID-19", prediction="Normal", review_id=f"{run_id}-{i}")


def test_export_writes_the_runs_reviews(workspace, tmp_path, capsys):
    run = create_run(RunConfig(data=DataConfig(root=str(tmp_path / "data"))), "fp")
    store = ReviewStore()
    for i in range(5):
        store.add(_review(run.id, i))
    store.add(_review("someotherrun", 0))
    out = tmp_path / "reviews.csv"
    assert main(["reviews", "export", run.id[:6], "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"5 reviews of run {run.id} -> {out}"
    back = pd.read_csv(out, keep_default_na=False)
    assert back["review_id"].tolist() == [f"{run.id}-{i}" for i in range(5)]
    assert back["comment"].tolist() == [f"film {i}" for i in range(5)]
    assert back["reviewer"].tolist() == ["Dr A", "Dr B", "Dr A", "Dr B", "Dr A"]
    assert main(["reviews", "export", "all", "--out", str(out), "--overwrite"]) == 0
    assert len(pd.read_csv(out)) == 6


def test_reviews_of_a_deleted_run_still_export(workspace, tmp_path):
    ReviewStore().add(_review("f00dcafe12345678", 1))
    out = tmp_path / "gone.csv"
    assert main(["reviews", "export", "f00dcafe", "--out", str(out)]) == 0
    assert pd.read_csv(out)["review_id"].tolist() == ["f00dcafe12345678-1"]


def test_errors_have_exit_codes(workspace, tmp_path, capsys):
    assert main(["reviews", "export", "nosuchrun", "--out", str(tmp_path / "x.csv")]) == 2
    run = create_run(RunConfig(data=DataConfig(root=str(tmp_path / "data"))), "fp")
    assert main(["reviews", "export", run.id, "--out", str(tmp_path) + "/"]) == 2
    capsys.readouterr()
    (paths.workspace() / "reviews.sqlite").write_bytes(b"not a database" * 100)
    assert main(["reviews", "export", run.id, "--out", str(tmp_path / "x.csv")]) == 4
    assert "review database" in capsys.readouterr().err


def test_the_command_runs_as_a_module(workspace, tmp_path):
    ReviewStore().add(_review("abcdef0123456789", 2))
    env = dict(os.environ, PYTHONPATH=str(paths.PROJECT_ROOT))
    done = subprocess.run([sys.executable, "-m", "cxrlib", "reviews", "export", "abcdef",
                           "--out", "-"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("review_id,run_id,rel_path")
    assert "abcdef0123456789-2" in done.stdout
