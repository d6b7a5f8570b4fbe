"""Real-data tier: head-mode MobileNetV2 with the shared ImageNet weights on ../shared/datasets/cxr3."""
from __future__ import annotations

import numpy as np
import pytest

from cxrlib.runs import registry

from cxrlib.training import engine as train
from cxrlib.core.config import DataConfig, RunConfig, TrainConfig
from cxrlib.data.datasets import scan_dataset

pytestmark = pytest.mark.realdata


def test_mobilenetv2_head_run_on_cxr3_is_far_above_chance(cxr3, imagenet_weights, workspace):
    from cxrlib.data.imageio import read_film
    from cxrlib.evaluation.predict import predict_films

    cfg = RunConfig(data=DataConfig(root=str(cxr3), task="3class"),
                    train=TrainConfig(mode="head", epochs=20, early_stopping=6))
    run = registry.create_run(cfg, scan_dataset(cxr3).for_task("3class").fingerprint)
    train.execute(run)
    assert run.status()["state"] == "done", run.status()
    metrics = run.metrics()
    preds = run.predictions()
    assert metrics["n_test"] == len(preds) >= 300
    assert metrics["leakage"]["groups_on_several_sides"] == 0  # grouped split
    # chance is 1/3; the published pipeline reports 0.956 (random split, fine-tuned)
    assert metrics["accuracy"] == pytest.approx(float((preds["pred"] == preds["label"]).mean()))
    assert metrics["accuracy"] >= 0.8
    assert metrics["macro_auc"] >= 0.9
    assert min(metrics["recall"].values()) >= 0.6
    # The saved full-image model gives the stored probabilities straight from the files.
    sample = preds.iloc[:: max(1, len(preds) // 6)]
    films = [read_film(p) for p in sample["path"]]
    probs = predict_films(run.load_model(), films, cfg.preprocess)
    stored = sample[[f"p_{c}" for c in run.classes]].to_numpy()
    np.testing.assert_allclose(probs, stored, atol=2e-3)
