"""The bundled sample's one-click quick run, for real: MobileNetV2 head on 120 real films."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.realdata


def test_the_quick_run_on_the_bundled_sample_trains_in_well_under_a_minute(workspace, imagenet_weights):
    from app_services.firstrun import quick_run_config
    from cxrlib.core import paths
    from cxrlib.data.datasets import scan_dataset
    from cxrlib.runs import runner

    ds = scan_dataset(paths.SAMPLE_DIR).for_task("3class")
    assert len(ds.manifest) == 120 and ds.problems.empty
    run = runner.train_foreground(quick_run_config(ds, "3class"), fingerprint=ds.fingerprint)
    status, metrics = run.status(), run.metrics()
    assert status["state"] == "done", status
    assert metrics["seconds"] < 60, metrics["timings"]
    # 24 test films of 3 classes: far above the majority rate, the sample's shortcuts included.
    assert metrics["accuracy"] > metrics["majority_rate"] + 0.25, metrics
