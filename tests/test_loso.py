"""Leave-one-source-out, the source probe and subgroup flags on synthetic sets made here.

With a planted source shortcut (each source adds its own stripe texture to every film, each
class comes from two sources of its own, the disease sign is weak) a tiny head scores well on
its own test split, collapses at a held-out source, and the subgroup of a new hospital whose
films carry another class's texture is flagged. Without the shortcut (no texture, a clear sign,
sources holding every class) the held-out sources score close to the test split.
"""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrlib.core.classes import CLASSES, NORMAL
from cxrlib.data.synthetic import synthetic_film

SIZE = 64
PER_SOURCE = 20
# (frequency in cycles per film, angle in degrees) of each source's texture
TEXTURES = [(3, 0), (6, 90), (5, 45), (3, 135), (7, 0), (4, 90)]


def _texture(k: int) -> np.ndarray:
    freq, angle = TEXTURES[k]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    t = np.deg2rad(angle)
    return 40.0 * np.sin(2 * np.pi * freq * (xx * np.cos(t) + yy * np.sin(t)))


def _film(label: str, rng, sign: float) -> np.ndarray:
    """A fixed-anatomy drawing whose class sign is scaled by ``sign`` (1: as drawn)."""
    seed = int(rng.integers(1 << 30))
    normal = synthetic_film(NORMAL, SIZE, np.random.default_rng(seed), vary_anatomy=False)
    drawn = synthetic_film(label, SIZE, np.random.default_rng(seed), vary_anatomy=False)
    return normal.astype(np.float32) + sign * (drawn.astype(np.float32) - normal)


def make_sources(root, *, shortcut: bool, sources_of=None, seed: int = 0):
    """Six sources of ``PER_SOURCE`` films each. ``sources_of(k)`` gives each source's classes
    and texture; default: with ``shortcut`` source k holds class k % 3 only and has texture k,
    without it every source holds every class and no texture."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(6):
        for i in range(PER_SOURCE):
            if sources_of is not None:
                label, texture = sources_of(k, i)
            elif shortcut:
                label, texture = CLASSES[k % 3], k
            else:
                label, texture = CLASSES[i % 3], None
            film = _film(label, rng, 0.35 if shortcut else 1.0)
            if texture is not None:
                film = film + _texture(texture)
            folder = root / label
            folder.mkdir(parents=True, exist_ok=True)
            name = f"s{k}_{i:03d}.png"
            cv2.imwrite(str(folder / name), np.clip(film, 0, 255).astype(np.uint8))
            rows.append({"file": f"{label}/{name}", "label": label, "patient_id": f"p{k}-{i}",
                         "group_id": f"p{k}-{i}", "source": f"hospital-{k}"})
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def _train(root):
    from cxrlib.core.config import (DataConfig, ModelConfig, PreprocessConfig, RunConfig,
                                    SplitConfig, TrainConfig)
    from cxrlib.runs import runner

    cfg = RunConfig(data=DataConfig(root=str(root)), preprocess=PreprocessConfig(steps=(), size=SIZE),
                    model=ModelConfig(family="tiny", weights="random", head_units=(32, 16),
                                      head_dropout=(0.2, 0.1)),
                    split=SplitConfig(test_fraction=0.25, val_fraction=0.15, seed=1,
                                      group_duplicates=False),
                    train=TrainConfig(mode="head", epochs=40, batch_size=16, learning_rate=1e-2, seed=3))
    run = runner.train_foreground(cfg)
    assert run.status()["state"] == "done", run.status()
    return run


@pytest.fixture(scope="module")
def workspace_module(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_WORKSPACE", str(tmp_path_factory.mktemp("loso-workspace")))
        yield


@pytest.fixture(scope="module")
def shortcut_run(tmp_path_factory, workspace_module):
    return _train(make_sources(tmp_path_factory.mktemp("shortcut") / "data", shortcut=True))


@pytest.fixture(scope="module")
def fair_run(tmp_path_factory, workspace_module):
    return _train(make_sources(tmp_path_factory.mktemp("fair") / "data", shortcut=False))


def test_planted_source_shortcut_collapses_at_a_held_out_source(shortcut_run):
    from cxrlib.audit.loso import leave_one_source_out

    loso = leave_one_source_out(shortcut_run)
    table = loso.table.set_index("source")
    assert loso.test_accuracy >= 0.8  # the shortcut works in distribution
    assert loso.expected_accuracy <= 0.55  # and not at a source it never saw
    assert loso.expected_accuracy == pytest.approx(table["held_out_accuracy"].mean())
    assert sorted(table.index) == [f"hospital-{k}" for k in range(6)]
    assert table["n"].tolist() == [PER_SOURCE] * 6
    assert table["single_class"].all() and len(loso.notes) == 6
    for k in range(6):  # a single-class source measures that class's recall
        row = table.loc[f"hospital-{k}"]
        assert row["held_out_accuracy"] == pytest.approx(row[f"recall_{CLASSES[k % 3]}"])
        assert sum(row[f"predicted_{c}"] for c in CLASSES) == PER_SOURCE
    # every fold trained without the held-out source's films and on the rest of the train split
    assert (table["n_train"] < len(shortcut_run.split_table().query("split == 'train'"))).all()


def test_without_a_shortcut_held_out_sources_stay_close(fair_run):
    from cxrlib.audit.loso import leave_one_source_out

    loso = leave_one_source_out(fair_run)
    assert loso.test_accuracy >= 0.75
    assert loso.expected_accuracy >= loso.test_accuracy - 0.15
    assert not loso.table["single_class"].any() and not loso.notes


def test_source_probe_reads_the_texture(shortcut_run, fair_run):
    from cxrlib.audit.loso import loso_sources, run_features
    from cxrlib.audit.source_probe import source_probe

    for run, within_high in ((shortcut_run, True), (fair_run, False)):
        data = run_features(run)
        m = data.manifest
        probe = source_probe(data.features[0], loso_sources(m), m["group"], m["label"])
        assert probe["sources"] == 6 and probe["n"] == 6 * PER_SOURCE
        assert probe["majority_rate"] == pytest.approx(1 / 6)
        if within_high:  # two textured sources per class: the probe tells them apart
            assert probe["accuracy"] >= 0.9 and probe["within_class_balanced_accuracy"] >= 0.9
        else:  # identical sources: near chance (1/6 overall)
            assert probe["balanced_accuracy"] <= 0.45


@pytest.fixture(scope="module")
def new_hospital(tmp_path_factory):
    """A new hospital: sources 0-2 hold class k but the texture of class k+1's sources (their
    films look like another class's hospital); sources 3-5 look as in training."""
    swap = {0: 1, 1: 2, 2: 0}

    def sources_of(k, i):
        return CLASSES[k % 3], (swap[k % 3] if k < 3 else k)

    return make_sources(tmp_path_factory.mktemp("new") / "hospital", shortcut=True,
                        sources_of=sources_of, seed=7)


def test_a_new_hospital_with_swapped_textures_is_flagged(shortcut_run, new_hospital, tmp_path, capsys):
    """Evaluated by source, the swapped subgroups are flagged and the matched ones are not."""
    import pandas as pd

    from cxrlib.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", shortcut_run.id, "--data", str(new_hospital), "--by", "source",
                 "--out-dir", str(out), "--n-boot", "500"]) == 0
    table = pd.read_csv(out / "subgroups.csv").set_index("value")
    overall = (table["accuracy"] * table["n"]).sum() / table["n"].sum()
    for k in range(3):
        assert bool(table.loc[f"hospital-{k}", "flagged"]), table
        assert table.loc[f"hospital-{k}", "ci_high"] < overall
    for k in range(3, 6):
        assert not bool(table.loc[f"hospital-{k}", "flagged"])
    assert "FLAGGED" in capsys.readouterr().out


def test_external_check_reports_recall_by_subgroup(shortcut_run, new_hospital):
    """The audit's external-folder check: the class recall it averages is near 1 in the
    matched sources and near 0 in the swapped ones, and its subgroups say so."""
    from cxrlib.audit import external_check

    ext = external_check(shortcut_run, new_hospital)
    sub = ext["subgroups"]
    assert sub is not None and "source" in set(sub.table["column"])
    rows = sub.table[sub.table["column"] == "source"].set_index("value")
    for k in range(6):
        label = CLASSES[k % 3]
        recall = rows.loc[f"hospital-{k}", f"recall_{label}"]
        assert (recall <= 0.3) if k < 3 else (recall >= 0.7), (k, recall)
    assert set(ext["per_class_recall"]) == set(CLASSES)
    assert ext["films"] == 6 * PER_SOURCE


def test_evaluate_the_runs_own_test_split_by_subgroup(shortcut_run, tmp_path):
    """Without --data: the run's own test split, its stored predictions, cut by source and by
    a derived attribute; subgroups.csv has the documented columns, worst first."""
    import json

    import pandas as pd

    from cxrlib.cli import main

    out = tmp_path / "own"
    assert main(["evaluate", shortcut_run.id, "--by", "source", "--by", "small_copy",
                 "--out-dir", str(out), "--n-boot", "200"]) == 0
    test = shortcut_run.predictions().query("split == 'test'")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx((test["label"] == test["pred"]).mean())
    assert metrics["n"] == len(pd.read_csv(out / "predictions.csv")) == len(test)
    table = pd.read_csv(out / "subgroups.csv")
    required = ["column", "value", "n", "patients", "accuracy", "ci_low", "ci_high",
                *[f"recall_{c}" for c in CLASSES], "flagged"]
    assert all(c in table.columns for c in required)
    assert table["accuracy"].is_monotonic_increasing
    by_source = table[table["column"] == "source"]
    assert by_source["n"].sum() == len(test)
    assert table.loc[table["column"] == "small_copy", "value"].tolist() == ["small copy (<= 256 px)"]
    assert metrics["subgroups"]["by"] == ["source", "small_copy"]


def test_evaluate_folder_keeps_every_manifest_column(shortcut_run, tmp_path):
    """A folder's own manifest columns (here ``view``) come back with its predictions, matched
    by film: callers no longer rescan the folder to put them back."""
    from cxrlib.evaluation.predict import evaluate_folder

    root = make_sources(tmp_path / "extra", shortcut=True, seed=5)
    manifest = pd.read_csv(root / "manifest.csv")
    manifest["view"] = ["PA" if i % 3 else "AP" for i in range(len(manifest))]
    manifest.to_csv(root / "manifest.csv", index=False)
    _, predictions = evaluate_folder(shortcut_run, root)
    assert "view" in predictions
    expected = dict(zip(manifest["file"], manifest["view"]))
    assert predictions["view"].tolist() == [expected[r] for r in predictions["rel_path"]]
    assert list(predictions.columns[:6]) == ["rel_path", "path", "label", "patient_id",
                                             "group_id", "source"]
