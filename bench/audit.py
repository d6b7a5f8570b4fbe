"""Benchmark of the trust audit on the shared cxr3 set with a head-mode MobileNetV2 run.

Usage: ``.venv/bin/python bench/audit.py [--data DIR] [--epochs E] [--max-films N]``

Trains (or reuses, in a temporary workspace) a 3-class MobileNetV2 (ImageNet) head-mode run with
the default grouped split through :func:`cxrlib.runs.runner.start`, then runs
:func:`cxrlib.audit.audit_run` on it and reports:

* ``metadata_accuracy``: the metadata-only random forest on the run's test split;
* ``cnn_accuracy``: the run's own test accuracy;
* ``cam_in_lung_share``: mean Grad-CAM mass inside the lungs, per class and ``all``;
* ``lungs_blanked_accuracy`` / ``lungs_only_accuracy`` / ``unmasked_accuracy``;
* ``duplicate_clusters`` (and ``duplicate_pairs``): near-duplicate clusters found in the set;
* ``reliable_lung_masks``: share of test films whose lung mask passed its quality check;
* timings: ``scan_films_s`` (decode + hash 1800 films, cold), ``duplicates_s`` (candidates +
  confirmation), ``duplicates_cached_s`` (the whole duplicate search again, hashes cached), etc.

The LAST line printed is JSON. A missing data folder prints ``{"skipped": ...}`` and exits 0.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import SHARED, WEIGHTS, isolated_env

DEFAULT_DATA = SHARED / "datasets" / "cxr3"


def _r(v, nd=4):
    return None if v is None else round(float(v), nd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=50, help="head epochs (published 50)")
    parser.add_argument("--max-films", type=int, default=None, help="cap on test films for CAM / masking")
    args = parser.parse_args(argv)
    if not (args.data / "manifest.csv").exists() or not WEIGHTS.exists():
        print(json.dumps({"skipped": f"{args.data} or {WEIGHTS} not found"}))
        return 0
    isolated_env("audit")
    from cxrlib.runs import runner
    from cxrlib.audit import audit_run, find_duplicates
    from cxrlib.core.config import DataConfig, RunConfig, TrainConfig
    from cxrlib.data.datasets import scan_dataset

    dataset = scan_dataset(args.data).for_task("3class")
    cfg = RunConfig(data=DataConfig(root=str(args.data), task="3class"),
                    train=TrainConfig(mode="head", epochs=args.epochs))
    t0 = time.perf_counter()
    run = runner.start(cfg, fingerprint=dataset.fingerprint)
    status = runner.wait(run, poll_s=0.5)
    train_s = time.perf_counter() - t0
    if status.get("state") != "done":
        print(json.dumps({"error": f"run {run.id} ended {status.get('state')}: {status.get('error')}"}))
        return 1
    t0 = time.perf_counter()
    report = audit_run(run, dataset=dataset, max_films=args.max_films)
    audit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    find_duplicates(dataset.manifest, fingerprint=dataset.fingerprint)
    cached_s = time.perf_counter() - t0
    s = report.summary()
    for sentence in report.verdicts:
        print("-", sentence)
    print(report.masked.to_string(index=False))
    print(report.attention_summary.to_string(index=False))
    print(report.metadata.importances.head(6).to_string(index=False))
    print(report.per_source.to_string(index=False))
    result = {
        "data": str(args.data), "films": len(dataset.manifest), "run_id": run.id,
        "test_films": int(len(report.attention)),
        "metadata_accuracy": _r(s["metadata_accuracy"]), "cnn_accuracy": _r(s["cnn_accuracy"]),
        "cam_in_lung_share": {k: _r(v) for k, v in s["cam_in_lung_share"].items()},
        "lungs_blanked_accuracy": _r(s["lungs_blanked_accuracy"]),
        "lungs_only_accuracy": _r(s["lungs_only_accuracy"]),
        "unmasked_accuracy": _r(s["unmasked_accuracy"]),
        "duplicate_clusters": s["duplicate_clusters"], "duplicate_pairs": int(len(report.duplicate_pairs)),
        "leakage": s["leakage"],
        "reliable_lung_masks": _r((report.attention["mask_method"] == "threshold").mean(), 3),
        "metadata_confounded": report.metadata.confounded,
        "train_s": round(train_s, 1), "audit_s": round(audit_s, 1), "duplicates_cached_s": round(cached_s, 2),
        **{f"{k}_s": round(v, 2) for k, v in s["timings"].items()},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
