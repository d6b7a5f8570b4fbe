"""Training page: cached-configuration check, background start with live progress, cancel,
the runs table, and the warning for a split that puts patients on both sides."""
from __future__ import annotations

import time

import numpy as np
import pytest
from app_fixtures import (ROOT, app, app_workspace, fake_trainer, texts, tiny_config,  # noqa: F401
                          trained_run, wait_for)
from sklearn.metrics import roc_auc_score

from cxrlib.runs import registry

from cxrlib.runs import runner

from cxrlib.data import splits
from cxrlib.core.config import SplitConfig

PAGE = "views/training.py"


def _set_tiny(at, epochs: int = 5):
    at.selectbox(key="tr_family").set_value("tiny").run()
    at.number_input(key="tr_epochs_tiny").set_value(epochs)
    at.select_slider(key="tr_lr").set_value(1e-2)
    return at.run()


def test_cached_configuration_and_runs_table(app, trained_run):
    at = _set_tiny(app(PAGE))
    assert texts(at.title) == ["Training"]
    assert any(s.startswith("Already trained: this exact configuration is cached as run "
                            f"`{trained_run.id}`") for s in texts(at.success))
    table = at.dataframe[0].value
    row = table[table["id"] == trained_run.id].iloc[0]
    assert (row["state"], row["task"], row["model"], row["mode"], row["split"], row["epochs"]) == (
        "done", "3class", "tiny", "head", "grouped", "5/5")
    # accuracy and macro AUC recomputed from the run's test predictions, not read from metrics.json
    test = trained_run.predictions().query("split == 'test'")
    probs = test[[f"p_{c}" for c in trained_run.classes]].to_numpy()
    truth = test["label"].map({c: i for i, c in enumerate(trained_run.classes)}).to_numpy()
    assert row["accuracy"] == pytest.approx(np.mean(probs.argmax(axis=1) == truth))
    assert row["macro AUC"] == pytest.approx(roc_auc_score(truth, probs, multi_class="ovr"))
    at.number_input(key="tr_epochs_tiny").set_value(6).run()
    assert "Not trained yet on this dataset." in texts(at.caption)


def test_start_shows_live_progress_that_survives_a_refresh_and_cancel(app, monkeypatch):
    monkeypatch.setenv(runner.TRAIN_ENTRY_ENV, f"{ROOT / 'tests' / 'app_fixtures.py'}:fake_trainer")
    at = _set_tiny(app(PAGE), epochs=7)
    [b for b in at.button if b.label == "Start training"][0].click().run()
    run_id = at.session_state["watch_run"]
    run = registry.get_run(run_id)
    assert wait_for(lambda: run.status().get("epoch") == 1, 60)
    at.run()
    assert "Running" in texts(at.subheader)
    bars = [p.text for p in at.progress]
    assert any("epoch 1/3" in t and "ETA 1:05" in t for t in bars), bars
    assert any(s.startswith("This configuration is training now") for s in texts(at.info))
    assert [b for b in at.button if b.label == "Start training"][0].disabled

    fresh = _set_tiny(app(PAGE), epochs=7)  # a refresh: a new session, the run on disk
    assert any(run_id[:8] in p.text for p in fresh.progress)
    clicked = time.monotonic()
    [b for b in fresh.button if b.label == "Cancel"][0].click().run()
    assert time.monotonic() - clicked < 5  # the page does not wait for the process to end
    assert wait_for(lambda: run.status()["state"] == "cancelled", 20)
    fresh.run()
    table = fresh.dataframe[0].value
    assert table.set_index("id").loc[run_id, "state"] == "cancelled"
    assert not fresh.progress


def test_random_split_leakage_is_warned(app, synthetic_dataset):
    cfg = tiny_config(synthetic_dataset).replace(split=SplitConfig(kind="random", seed=3))
    fingerprint = runner.dataset_fingerprint(cfg)
    run = registry.create_run(cfg, fingerprint)
    from cxrlib.data.datasets import scan_dataset

    manifest = scan_dataset(synthetic_dataset).manifest
    side = splits.split_manifest(manifest, cfg.split)
    run.write_split(splits.split_table(manifest, side))
    run.write_status(state="done")
    # independent count: patients whose films fall on more than one side
    leaked = (manifest.assign(side=side).groupby("patient_id")["side"].nunique() > 1).sum()
    assert leaked > 0
    at = app(PAGE)
    warnings = [w for w in texts(at.warning) if w.startswith(f"Run `{run.id[:8]}`")]
    assert len(warnings) == 1
    assert f"puts {leaked} of 36 patients" in warnings[0] and "grouped split" in warnings[0]


def test_damaged_runs_are_broken_rows_that_can_be_deleted_and_no_page_breaks(
        app, trained_run, synthetic_dataset, tmp_path, monkeypatch):
    """A truncated config.json or status.json of one run (issue 12): the Training page lists it
    as a broken row naming the run and the file, with a delete button; every page still works."""
    import shutil

    work = tmp_path / "workspace"
    shutil.copytree(trained_run.folder, work / "models" / "runs" / trained_run.id)
    monkeypatch.setenv("CXR_WORKSPACE", str(work))  # a copy: the shared workspace stays intact
    fingerprint = runner.dataset_fingerprint(tiny_config(synthetic_dataset))
    damaged = {}
    for epochs, name in ((7, "status.json"), (8, "config.json")):
        run = registry.create_run(tiny_config(synthetic_dataset, epochs=epochs), fingerprint)
        run.write_status(state="done", epoch=epochs, epochs=epochs)
        path = run.folder / name
        path.write_text(path.read_text()[:20])
        damaged[run.id] = name

    at = _set_tiny(app(PAGE))
    assert not at.exception
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[trained_run.id, "state"] == "done"
    for run_id, name in damaged.items():
        assert table.loc[run_id, "state"] == "broken" and f"{name} is damaged" in table.loc[run_id, "problem"]
    assert "Damaged runs" in texts(at.subheader)
    for run_id, name in damaged.items():
        assert any(e.startswith(f"Run `{run_id}`: **{name}** is damaged (") for e in texts(at.error))
    for page in ("views/home.py", "views/dataset.py", "views/preprocessing.py", "views/training.py",
                 "views/evaluation.py", "views/explain.py", "views/audit.py"):
        other = app(page)  # the fixture asserts no exception on every page
        assert other.session_state["run_id"] == trained_run.id  # damaged runs are never picked

    gone = next(iter(damaged))
    [b for b in at.button if b.key == f"delete_{gone}"][0].click().run()
    assert not at.exception and not (work / "models" / "runs" / gone).exists()
    assert gone not in set(at.dataframe[0].value["id"])
    assert (work / "models" / "runs" / trained_run.id).exists()


def test_a_class_too_small_to_train_is_an_error_box_and_start_is_disabled(app, tmp_path):
    from cxrlib.data.synthetic import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "small", n_per_class=6, size=64)
    for path in sorted((root / "Viral Pneumonia").iterdir())[3:]:
        path.unlink()  # 3 Viral films left
    at = _set_tiny(app(PAGE, data_dir=root))
    assert ("Training refused: cannot train the 3class task on " f"{root}: Viral Pneumonia has 3 "
            "readable films (at least 5 needed). Add films, choose another task, or lower the "
            "minimum (CXR_MIN_CLASS_FILMS, CXR_MIN_CLASS_PATIENTS).") in texts(at.error)
    assert [b for b in at.button if b.label == "Start training"][0].disabled


def test_the_recipe_mode_builds_the_validated_finetune_recipe(app):
    from cxrlib.core.config import FINETUNE_RECIPE_SIZE

    at = app(PAGE)
    at.selectbox(key="tr_family").set_value("mobilenetv2").run()
    at.radio(key="tr_mode_mobilenetv2").set_value("recipe").run()
    assert not at.exception
    captions = " ".join(texts(at.caption))
    assert f"→ {FINETUNE_RECIPE_SIZE} px" in captions  # the recipe's input size
    at.radio(key="tr_mode_mobilenetv2").set_value("finetune").run()
    assert "→ 224 px" in " ".join(texts(at.caption))  # the published fine-tune keeps 224


def test_the_small_cnn_starts_from_its_recipe_and_its_blocks_can_be_chosen(app, monkeypatch):
    import app_services
    from cxrlib.core.config import TrainConfig

    asked = []
    real = app_services.find_run
    monkeypatch.setattr(app_services, "find_run", lambda cfg, fp: asked.append(cfg) or real(cfg, fp))
    at = app(PAGE)
    at.selectbox(key="tr_family").set_value("small_cnn").run()
    assert not at.exception
    cfg = asked[-1]
    assert (cfg.model.cnn_arch, cfg.preprocess.size, cfg.preprocess.steps) == ("bn_gap", 128, ("clahe",))
    assert cfg.train == TrainConfig(mode="finetune", epochs=20, learning_rate=2e-3, schedule="cosine",
                                    warmup_epochs=1, early_stopping=5, augment=False)
    assert not [r for r in at.radio if r.key == "tr_cnn_arch"]  # the recipe fixes its blocks
    at.radio(key="tr_mode_small_cnn").set_value("finetune").run()
    assert not at.exception and asked[-1].model.cnn_arch == "published"  # the published defaults
    assert asked[-1].train.epochs == 50 and asked[-1].preprocess.size == 224
    at.radio(key="tr_cnn_arch").set_value("bn_gap").run()
    assert not at.exception
    assert (asked[-1].model.family, asked[-1].model.cnn_arch) == ("small_cnn", "bn_gap")
    at.selectbox(key="tr_family").set_value("tiny").run()  # no blocks choice there
    assert not at.exception and asked[-1].model.cnn_arch == "published"
    assert not [r for r in at.radio if r.key == "tr_cnn_arch"]


def test_a_second_run_waits_in_the_queue_with_its_position_and_cancel_takes_it_out(app, monkeypatch):
    monkeypatch.setenv(runner.TRAIN_ENTRY_ENV, f"{ROOT / 'tests' / 'app_fixtures.py'}:fake_trainer")
    monkeypatch.setenv("CXR_MAX_RUNS", "1")
    at = _set_tiny(app(PAGE), epochs=11)
    [b for b in at.button if b.label == "Start training"][0].click().run()
    first = registry.get_run(at.session_state["watch_run"])
    try:
        assert wait_for(lambda: first.status().get("epoch") == 1, 60)
        at.number_input(key="tr_epochs_tiny").set_value(12).run()
        [b for b in at.button if b.label == "Start training"][0].click().run()
        second = registry.get_run(at.session_state["watch_run"])
        assert second != first and second.status()["state"] == "queued" and second.pid is None
        at.run()
        bars = {p.text.split(" — ")[0][:8]: p.text for p in at.progress}
        assert "queued, position 1 of 1" in bars[second.id[:8]], bars
        assert "epoch 1/3" in bars[first.id[:8]]
        table = at.dataframe[0].value.set_index("id")
        assert table.loc[second.id, "state"] == "queued, position 1 of 1"
        assert table.loc[first.id, "state"] == "running"
        assert f"This configuration waits for a free slot (run `{second.id}`, queued, position 1 of 1)." \
            in texts(at.info)
        cancels = [b for b in at.button if b.label == "Cancel"]
        cancels[[p.text[:8] for p in at.progress].index(second.id[:8])].click().run()
        assert second.status()["state"] == "cancelled"  # at once: no process to stop
        assert first.status()["state"] == "running" and not second.log_path.exists()
    finally:
        runner.cancel(first.id, grace_s=10)


def test_epochs_above_the_maximum_disable_start_with_a_message(app):
    """Issue 26, bug 5: 300 epochs (the maximum is 200) turned the box red, but "Start
    training" stayed enabled and trained the last valid value."""
    at = _set_tiny(app(PAGE), epochs=300)
    assert not at.exception, [e.value for e in at.exception]
    assert any(e.startswith("At most 200 epochs: 300 is too many") for e in texts(at.error))
    start = [b for b in at.button if b.label == "Start training"]
    assert len(start) == 1 and start[0].disabled
    at = _set_tiny(at, epochs=200)
    assert not [b for b in at.button if b.label == "Start training"][0].disabled


def test_the_mobilenetv2_head_says_it_trains_with_the_measured_remedy(app):
    at = app(PAGE)
    at.selectbox(key="tr_family").set_value("mobilenetv2").run()
    assert not at.exception
    assert any(c.startswith("Head mode trains on each film and 2 acquisition-style copies")
               for c in texts(at.caption))
    at.radio(key="tr_mode_mobilenetv2").set_value("finetune").run()
    assert not any(c.startswith("Head mode trains") for c in texts(at.caption))


def test_the_augment_box_is_offered_only_where_it_changes_the_run(app, monkeypatch):
    """Bug: in head mode the Augment box was shown for every family and changed nothing: a head
    trains on cached backbone features, so a rotation or a flip cannot apply
    (``TrainConfig`` makes them canonical). The Tiny head drew it with no word; now head mode
    says why there is none, and the box is back in fine-tune mode, where it sets the run."""
    import app_services

    asked = []
    real = app_services.find_run
    monkeypatch.setattr(app_services, "find_run", lambda cfg, fp: asked.append(cfg) or real(cfg, fp))
    at = _set_tiny(app(PAGE))
    assert at.radio(key="tr_mode_tiny").value == "head"
    assert not [c for c in at.checkbox if c.key == "tr_aug"]
    assert any(c.startswith("Head mode trains on the backbone's cached features")
               for c in texts(at.caption))
    at.radio(key="tr_mode_tiny").set_value("finetune").run()
    for ticked in (False, True):
        at.checkbox(key="tr_aug").set_value(ticked).run()
        assert not at.exception, [e.value for e in at.exception]
        assert (asked[-1].model.family, asked[-1].train.mode) == ("tiny", "finetune")
        assert asked[-1].train.augment is ticked
    at.selectbox(key="tr_family").set_value("mobilenetv2").run()  # its head: the remedy's copies
    assert not [c for c in at.checkbox if c.key == "tr_aug"]
    assert asked[-1].train.feature_augment_copies == 2
