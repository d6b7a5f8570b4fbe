"""The training engine on the synthetic dataset with the tiny backbone and a tiny small CNN."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlib.training import features

from cxrlib.runs import registry

from cxrlib.training import engine as train
from cxrlib.training.input_pipeline import input_pipeline
from cxrlib.core.config import (DataConfig, ModelConfig, PreprocessConfig, RunConfig, SplitConfig,
                           TrainConfig)
from cxrlib.data.datasets import scan_dataset

SIZE = 48


def _cfg(root, *, task="3class", family="tiny", **train_kw) -> RunConfig:
    train_defaults = dict(mode="head", epochs=30, batch_size=8, learning_rate=3e-3, seed=3)
    return RunConfig(
        data=DataConfig(root=str(root), task=task),
        preprocess=PreprocessConfig(steps=(), size=SIZE),
        model=ModelConfig(family=family, weights="random", head_units=(32, 16),
                          head_dropout=(0.2, 0.1), cnn_filters=(8, 16), cnn_dense=16),
        split=SplitConfig(test_fraction=0.25, val_fraction=0.15, seed=1),
        train=TrainConfig(**{**train_defaults, **train_kw}))


def _run(cfg: RunConfig) -> registry.Run:
    fp = scan_dataset(cfg.data.root).for_task(cfg.data.task).fingerprint
    return registry.create_run(cfg, fp)


@pytest.fixture(scope="module")
def head_run(synthetic_dataset, tmp_path_factory):
    """One finished head-mode run shared by the tests that only read it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_WORKSPACE", str(tmp_path_factory.mktemp("head-run")))
        run = _run(_cfg(synthetic_dataset))
        train.execute(run)
        yield run


def test_head_run_learns_and_writes_every_artifact(head_run):
    run = head_run
    status = run.status()
    assert status["state"] == "done", status
    for name in ("best.keras", "history.csv", "predictions.csv", "metrics.json", "split.csv"):
        assert (run.folder / name).is_file(), name
    preds = run.predictions()
    split = run.split_table()
    assert set(preds["split"]) == {"test"}
    assert sorted(preds["rel_path"]) == sorted(split.loc[split["split"] == "test", "rel_path"])
    probs = preds[[f"p_{c}" for c in run.classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # metrics.json agrees with an independent computation from predictions.csv
    accuracy = float((preds["pred"] == preds["label"]).mean())
    metrics = run.metrics()
    assert metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["accuracy"] >= 0.75  # synthetic classes are easy; chance is 1/3
    assert metrics["macro_auc"] >= 0.9
    covid = preds["label"] == "COVID-19"
    assert metrics["recall"]["COVID-19"] == pytest.approx(float((preds["pred"][covid] == "COVID-19").mean()))
    assert metrics["leakage"]["groups_on_several_sides"] == 0
    history = run.history()
    assert list(history["epoch"]) == list(range(1, 31))
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(history.columns)
    assert metrics["best_epoch"] == int(history["val_loss"].idxmin()) + 1
    assert status["epoch"] == 30 and status["metrics"]["accuracy"] == metrics["accuracy"]


def test_saved_model_reproduces_stored_predictions(head_run):
    from cxrlib.preprocessing.pipeline import to_model_input
    from cxrlib.preprocessing.tensor_cache import load_tensors

    run = head_run
    cfg = run.config
    ds = scan_dataset(cfg.data.root).for_task(cfg.data.task)
    tensors = load_tensors(ds, cfg.preprocess)
    assert tensors.hit
    preds = run.predictions()
    rows = [tensors.rel_paths.index(p) for p in preds["rel_path"]]
    model = run.load_model()
    probs = np.asarray(model.predict(to_model_input(np.asarray(tensors.images[rows])), verbose=0))
    stored = preds[[f"p_{c}" for c in run.classes]].to_numpy()
    np.testing.assert_allclose(probs, stored, atol=1e-4)


def test_a_tta_runs_stored_test_predictions_are_its_models_tta(synthetic_dataset, workspace):
    """With test-time augmentation the stored test probabilities are the saved model's average
    over the views (the plain pass the engine already made stands for the identity view)."""
    from cxrlib.models.tta import predict_tta
    from cxrlib.preprocessing.tensor_cache import load_tensors

    run = _run(_cfg(synthetic_dataset, epochs=5, tta="shift"))
    train.execute(run)
    assert run.status()["state"] == "done", run.status()
    ds = scan_dataset(run.config.data.root).for_task(run.config.data.task)
    tensors = load_tensors(ds, run.config.preprocess)
    test = run.predictions().query("split == 'test'")
    films = np.asarray(tensors.images[[tensors.rel_paths.index(p) for p in test["rel_path"]]])
    model = run.load_model()
    stored = test[[f"p_{c}" for c in run.classes]].to_numpy()
    np.testing.assert_allclose(stored, predict_tta(model, films, "shift"), atol=1e-4)
    assert not np.allclose(stored, predict_tta(model, films, "none"), atol=1e-4)


def test_features_are_computed_once_per_backbone(synthetic_dataset, workspace, monkeypatch):
    calls = []
    real = features.extract_features

    def counting(model, images, **kw):
        calls.append(len(images))
        return real(model, images, **kw)

    monkeypatch.setattr(features, "extract_features", counting)
    first = _run(_cfg(synthetic_dataset, epochs=2))
    train.execute(first)
    assert calls == [72]
    second = _run(_cfg(synthetic_dataset, epochs=2, learning_rate=1e-2))  # a new head config
    assert second.id != first.id
    train.execute(second)
    assert calls == [72], "the second run must reuse the cached features"
    assert first.metrics()["feature_cache_hit"] is False
    assert second.metrics()["feature_cache_hit"] is True
    augmented = _run(_cfg(synthetic_dataset, epochs=2, feature_augment_copies=2))
    train.execute(augmented)
    assert calls == [72, 72, 72]  # the originals come from the cache, 2 augmented copies do not
    assert augmented.status()["state"] == "done"


def test_augment_films_only_rotates_and_flips():
    rng = np.random.default_rng(0)
    films = rng.integers(0, 256, (6, 20, 20), dtype=np.uint8)
    flipped = features.augment_films(films, 0.0, True, np.random.default_rng(1))
    for original, out in zip(films, flipped):
        assert np.array_equal(out, original) or np.array_equal(out, original[:, ::-1])
    assert any(not np.array_equal(o, f) for o, f in zip(films, flipped))
    again = features.augment_films(films, 0.1, True, np.random.default_rng(1))
    np.testing.assert_array_equal(again, features.augment_films(films, 0.1, True,
                                                                np.random.default_rng(1)))


def test_input_pipeline_scales_and_augments_as_documented():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 16, 16), dtype=np.uint8)
    onehot = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 10)]
    idx = np.array([7, 2, 5, 0])
    plain = TrainConfig(batch_size=3, augment=False)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in
                   input_pipeline(images, idx, onehot, plain, training=False)])
    x, y = np.concatenate(xs), np.concatenate(ys)
    expected = np.repeat(images[idx].astype(np.float32)[..., None] / 255.0, 3, axis=-1)
    np.testing.assert_allclose(x, expected, atol=1e-6)
    np.testing.assert_array_equal(y, onehot[idx])
    flips = TrainConfig(mode="finetune", batch_size=4, augment=True, rotation=0.0, hflip=True, seed=5)
    seen = []
    for x, y in input_pipeline(images, idx, onehot, flips, training=True):
        for xi, yi in zip(x.numpy(), y.numpy()):
            grey = xi[..., 0] * 255.0
            match = [i for i in idx if np.allclose(grey, images[i], atol=1e-3)
                     or np.allclose(grey, images[i][:, ::-1], atol=1e-3)]
            assert len(match) == 1 and np.array_equal(yi, onehot[match[0]])
            seen.append(match[0])
    assert sorted(seen) == sorted(idx)


def test_cancel_stops_the_run(synthetic_dataset, workspace):
    run = _run(_cfg(synthetic_dataset, epochs=40, seed=11))
    checks = []
    train.execute(run, cancel_check=lambda: checks.append(1) or len(checks) > 80)
    assert run.status()["state"] == "cancelled"
    assert not (run.folder / "predictions.csv").exists()
    assert not (run.folder / "metrics.json").exists()


def test_dataset_change_fails_the_run_clearly(synthetic_dataset, workspace):
    cfg = _cfg(synthetic_dataset)
    run = registry.create_run(cfg, "not-the-fingerprint")
    with pytest.raises(train.DatasetChanged):
        train.execute(run)
    status = run.status()
    assert status["state"] == "failed" and "DatasetChanged" in status["error"]


@pytest.mark.parametrize("arch", ["published", "bn_gap"])
def test_binary_small_cnn_finetune_resumes_after_interruption(synthetic_dataset, workspace, arch):
    cfg = _cfg(synthetic_dataset, task="binary", family="small_cnn", mode="finetune", epochs=3,
               batch_size=8, learning_rate=1e-3)
    cfg = cfg.replace(model=cfg.model.replace(cnn_arch=arch))
    run = _run(cfg)

    def stop_in_epoch_two() -> bool:  # the first epoch's checkpoint is then on disk
        return (run.folder / "checkpoint.json").exists()

    train.execute(run, cancel_check=stop_in_epoch_two)
    assert run.status()["state"] == "cancelled"
    assert pd.read_json(run.folder / "checkpoint.json", typ="series")["epoch"] == 1
    train.execute(run)
    status = run.status()
    assert status["state"] == "done", status
    metrics = run.metrics()
    assert metrics["resumed_from_epoch"] == 1
    assert list(run.history()["epoch"]) == [1, 2, 3]
    preds = run.predictions()
    assert set(preds["label"]) <= {"COVID-19", "Normal"}
    np.testing.assert_allclose(preds["p_COVID-19"] + preds["p_Normal"], 1.0, atol=1e-5)
    model = run.load_model()
    assert model.get_layer("p_positive").output.shape[-1] == 1
    if arch == "bn_gap":
        from cxrlib.explain import get_cam

        # the saved model carries the BatchNorm statistics it learned (not the initial 0 / 1)
        assert not np.allclose(model.get_layer("bn_0").moving_variance.numpy(), 1.0)
        x = np.random.default_rng(0).random((2, SIZE, SIZE, 3), dtype=np.float32)
        heat, probs = get_cam("gradcam", model)(x)
        assert heat.shape[0] == 2 and np.isfinite(heat).all()
        np.testing.assert_allclose(probs, np.asarray(model(x, training=False)), atol=1e-5)


def test_head_training_is_deterministic(synthetic_dataset, tmp_path, monkeypatch):
    """Two trainings of one config (fresh workspaces, so nothing is reused) predict identically:
    shuffling comes from a seeded numpy generator, dropout from Keras's seeded generators."""
    cfg = _cfg(synthetic_dataset, epochs=6, seed=7)
    outputs = []
    for attempt in ("a", "b"):
        monkeypatch.setenv("CXR_WORKSPACE", str(tmp_path / attempt))
        run = _run(cfg)
        train.execute(run)
        assert run.status()["state"] == "done"
        outputs.append((run.predictions(), run.history()))
    (preds_a, hist_a), (preds_b, hist_b) = outputs
    pd.testing.assert_frame_equal(preds_a, preds_b, check_exact=True)
    pd.testing.assert_frame_equal(hist_a, hist_b, check_exact=True)
