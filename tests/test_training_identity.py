"""Exact identity in training: a fine-tune starts from its head run's weights, backbone features
are cached per ordered row list (the binary and 3-class tasks never share or mix an entry), and
near-duplicate clusters join the split's groups."""
from __future__ import annotations

import numpy as np

from cxrlib.runs import registry, runner
from cxrlib.training import engine, features
from test_train import _cfg, _run


def _head_weights(model):
    return [np.asarray(w) for w in model.weights if w.path.startswith(("head_dense", "predictions"))]


def test_init_from_head_starts_the_finetune_from_the_trained_head(workspace, synthetic_dataset):
    # A learning rate so small that one fine-tune epoch changes no weight: what the fine-tune
    # saves is then exactly where it started.
    cfg = _cfg(synthetic_dataset, mode="finetune", init_from_head=True, epochs=1,
               learning_rate=1e-12, augment=False)
    run = _run(cfg)
    runner.execute_run(run)  # the runner trains the head run first and passes its weights in
    assert run.status()["state"] == "done", run.status()
    head_cfg = engine.head_run_config(cfg)
    assert head_cfg.train.mode == "head" and not head_cfg.train.init_from_head
    head = registry.find_run(head_cfg, run.fingerprint)
    assert head is not None and head.status()["state"] == "done"
    assert run.metrics()["init_from_head_run"] == head.id
    started, trained = _head_weights(run.load_model()), _head_weights(head.load_model())
    assert started and len(started) == len(trained)
    for a, b in zip(started, trained):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # Without init_from_head the same fine-tune starts from a fresh head: different weights.
    fresh = _run(cfg.replace(train=cfg.train.replace(init_from_head=False)))
    engine.execute(fresh)
    assert any(not np.allclose(a, b) for a, b in zip(_head_weights(fresh.load_model()), trained))


def test_feature_cache_entries_are_keyed_by_the_ordered_rows(workspace):
    from cxrlib.core.config import ModelConfig, PreprocessConfig
    from cxrlib.models import backbone_and_head, build_model

    model = build_model(ModelConfig(family="tiny", head_units=(4,), head_dropout=(0.0,)), 3, 32)
    backbone, _ = backbone_and_head(model)
    rng = np.random.default_rng(0)
    films = rng.integers(0, 256, (6, 32, 32), dtype=np.uint8)
    names = [f"f{i}.png" for i in range(6)]
    kw = dict(fingerprint="fp", preprocess_cfg=PreprocessConfig(steps=(), size=32),
              model_cfg=ModelConfig(family="tiny"))
    three = features.cached_features(backbone, films, rel_paths=names, **kw)
    binary = features.cached_features(backbone, films[:4], rel_paths=names[:4], **kw)
    assert not three.hit and not binary.hit and three.key != binary.key
    assert binary.features.shape == (1, 4, three.features.shape[-1])
    np.testing.assert_allclose(binary.features[0], three.features[0][:4], atol=1e-6)
    again = features.cached_features(backbone, films[:4], rel_paths=names[:4], **kw)
    assert again.hit and again.key == binary.key
    # The same films in another order are other rows: another entry, never a mixed one.
    order = [3, 2, 1, 0]
    swapped = features.cached_features(backbone, films[order], rel_paths=[names[i] for i in order], **kw)
    assert not swapped.hit and swapped.key != binary.key
    np.testing.assert_allclose(swapped.features[0], binary.features[0][order], atol=1e-6)


def test_a_damaged_or_foreign_feature_entry_is_rebuilt_not_read(workspace):
    from cxrlib.core.config import ModelConfig, PreprocessConfig
    from cxrlib.core.paths import cache_dir
    from cxrlib.models import backbone_and_head, build_model

    backbone, _ = backbone_and_head(build_model(ModelConfig(family="tiny", head_units=(4,),
                                                            head_dropout=(0.0,)), 3, 32))
    films = np.random.default_rng(1).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    kw = dict(rel_paths=["a", "b", "c"], fingerprint="fp", model_cfg=ModelConfig(family="tiny"),
              preprocess_cfg=PreprocessConfig(steps=(), size=32))
    first = features.cached_features(backbone, films, **kw)
    folder = cache_dir("features") / first.key
    np.save(folder / "features.npy", np.zeros((2, 5), np.float32))  # what a mixed write leaves
    rebuilt = features.cached_features(backbone, films, **kw)
    assert not rebuilt.hit
    np.testing.assert_allclose(rebuilt.features, first.features, atol=1e-6)
    assert features.cached_features(backbone, films, **kw).hit
    assert not list(folder.parent.glob(".*partial*"))


def test_near_duplicate_clusters_join_the_split_groups(workspace, synthetic_dataset, tmp_path, monkeypatch):
    from cxrlib.data import duplicates

    root = synthetic_dataset
    covid = sorted(p.name for p in (root / "COVID-19").iterdir())
    normal = sorted(p.name for p in (root / "Normal").iterdir())
    planted = {f"COVID-19/{covid[0]}": "dup:x", f"Normal/{normal[5]}": "dup:x",
               f"COVID-19/{covid[9]}": "dup:y", f"Normal/{normal[17]}": "dup:y"}
    monkeypatch.setattr(duplicates, "duplicate_clusters", lambda ds, progress=None: planted)
    cfg = _cfg(root, epochs=1)
    run = _run(cfg)
    engine.execute(run)
    table = run.split_table().set_index("rel_path")
    for name in ("dup:x", "dup:y"):
        films = [p for p, c in planted.items() if c == name]
        assert table.loc[films, "dup_cluster"].tolist() == [name, name]
        assert table.loc[films, "split"].nunique() == 1  # never on two sides
    assert run.metrics()["leakage"]["clusters_on_several_sides"] == 0
    off = _run(cfg.replace(split=cfg.split.replace(group_duplicates=False)))
    assert off.id != run.id
    engine.execute(off)
    groups = off.split_table().set_index("rel_path")["group"]
    # Without the clusters, the two films of dup:x are two patients, two groups.
    assert groups[f"COVID-19/{covid[0]}"] != groups[f"Normal/{normal[5]}"]
    assert table.loc[f"COVID-19/{covid[0]}", "group"] == table.loc[f"Normal/{normal[5]}", "group"]


def test_a_dataset_without_near_duplicates_gets_empty_cluster_ids(workspace, synthetic_dataset,
                                                                   monkeypatch):
    """No clusters at all: the mapped column is all missing (float NaN), and filling it with ""
    is refused by pandas 4 (a Pandas4Warning today, an error then)."""
    import warnings

    from cxrlib.data import duplicates

    monkeypatch.setattr(duplicates, "duplicate_clusters", lambda ds, progress=None: {})
    run = _run(_cfg(synthetic_dataset, epochs=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.filterwarnings("error", message=".*not supported as a fill value.*")
        engine.execute(run)
    table = run.split_table()
    assert run.status()["state"] == "done"
    assert table["dup_cluster"].isna().all()  # split.csv reads an empty id back as missing


def test_a_dead_writers_partial_feature_folder_is_removed_a_live_ones_kept(workspace):
    """A process killed while writing a feature entry leaves its hidden build folder behind;
    the next writer of that entry removes it (the tensor cache's rule), but not the folder of
    a writer still alive."""
    import os
    import shutil
    import subprocess
    import sys

    from cxrlib.core.config import ModelConfig, PreprocessConfig
    from cxrlib.core.paths import cache_dir
    from cxrlib.models import backbone_and_head, build_model

    backbone, _ = backbone_and_head(build_model(ModelConfig(family="tiny", head_units=(4,),
                                                            head_dropout=(0.0,)), 3, 32))
    films = np.random.default_rng(2).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    kw = dict(rel_paths=["a", "b", "c"], fingerprint="fp", model_cfg=ModelConfig(family="tiny"),
              preprocess_cfg=PreprocessConfig(steps=(), size=32))
    key = features.cached_features(backbone, films, **kw).key
    root = cache_dir("features")
    shutil.rmtree(root / key)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    dead_partial = root / f".{key}.partial-{dead}-deadbeef"
    live_partial = root / f".{key}.partial-{os.getppid()}-cafef00d"
    for folder in (dead_partial, live_partial):
        folder.mkdir()
        np.save(folder / "features.npy", np.ones((2, 5), np.float32))
    assert not features.cached_features(backbone, films, **kw).hit
    assert not dead_partial.exists() and live_partial.exists()


def test_the_engine_starts_no_run_it_is_handed_its_head_run(workspace, synthetic_dataset):
    """The runner resolves prerequisites: the engine given a fine-tune from its head run, but no
    head run, fails with a clear message instead of training one itself."""
    import pytest

    cfg = _cfg(synthetic_dataset, mode="finetune", init_from_head=True, epochs=1, augment=False)
    assert engine.prerequisite(cfg) == engine.head_run_config(cfg)
    assert engine.prerequisite(cfg.replace(train=cfg.train.replace(init_from_head=False))) is None
    run = _run(cfg)
    with pytest.raises(ValueError, match="runner, which trains the head run first"):
        engine.execute(run)
    assert run.status()["state"] == "failed"
    assert registry.find_run(engine.head_run_config(cfg), run.fingerprint) is None
