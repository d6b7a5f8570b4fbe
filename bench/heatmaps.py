"""Which heatmap to trust (issue 25): every CAM method at its default layer on a MobileNetV2 run's
test films, measured with ROAD, and the default method chosen by the measurement.

Usage: ``.venv/bin/python bench/heatmaps.py [--films N] [--quick] [--methods a,b] [--run FOLDER]
[--data DIR] [--workspace DIR]``

The run: ``--run`` names a finished run folder; else a head-mode MobileNetV2 (ImageNet) 3-class
run on ``--data`` (default ``../shared/datasets/cxr3``) is reused from ``--workspace`` (its
``models/runs``), or trained there (a fresh temporary workspace when none is given) through
:func:`cxrlib.runs.runner.start`.

On ``--films`` test films (default 120, a seeded sample), per method
(:func:`cxrlib.explain.trust.heatmap_trust`): ROAD MoRF / LeRF curves at 10-90 % and their
combined score (mean of LeRF - MoRF) with a patient-bootstrap 95 % CI (the split's group key is
resampled), ``ms_per_film`` (warm, one film at the model's input size), ``cells_per_side``, the
model-randomisation rank correlation (head re-initialised, 4 films), and the CAM-in-lung share
(dataset masks where there are any, else the learned segmenter's; flagged masks left out).
``random_map_road`` is the score of uniform random maps on the same films, the reference;
``road_s_per_film`` is ROAD's own time per film and map (9 fractions, both orders).

``default_after`` is the rule's choice (the best ROAD method that beats the random map and takes
< 50 ms a film) only when every registered method was measured on >= 120 films; otherwise the
current default is kept and ``default_rule_choice`` shows what the partial run would pick.
``--quick``: 20 films and four methods (gradcam, layercam, layercam-fused, occlusion).
The result is also stored in the run folder (``heatmap_trust.json``) for the Explain page.

The LAST line printed is JSON. A missing data folder or weights file prints ``{"skipped": ...}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _common import SHARED, WEIGHTS, isolated_env

DEFAULT_DATA = SHARED / "datasets" / "cxr3"
QUICK_METHODS = ("gradcam", "layercam", "layercam-fused", "occlusion")
FULL_FILMS = 120


def _find_run(args):
    """The run to measure, and its dataset."""
    from cxrlib.core.config import DataConfig, RunConfig, TrainConfig
    from cxrlib.data.datasets import scan_dataset
    from cxrlib.runs import runner
    from cxrlib.runs.run import Run

    if args.run is not None:
        run = Run(args.run)
        dataset = scan_dataset(run.config.data.root).for_task(run.config.data.task)
        return run, dataset
    dataset = scan_dataset(args.data).for_task("3class")
    cfg = RunConfig(data=DataConfig(root=str(args.data), task="3class"),
                    train=TrainConfig(mode="head"))
    run = runner.start(cfg, fingerprint=dataset.fingerprint)  # an existing run is returned as is
    runner.wait(run, poll_s=0.5)
    return run, dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--films", type=int, default=None, help=f"test films (default {FULL_FILMS}; 20 with --quick)")
    parser.add_argument("--quick", action="store_true", help="20 films, four methods")
    parser.add_argument("--methods", default=None, help="comma list of registry names (default all)")
    parser.add_argument("--run", type=Path, default=None, help="a finished run folder to measure")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workspace", type=Path, default=None,
                        help="CXR_WORKSPACE whose runs to reuse (default: a fresh temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    films = args.films or (20 if args.quick else FULL_FILMS)
    if films < 2:
        parser.error("--films must be at least 2")
    if args.run is None and (not (args.data / "manifest.csv").exists() or not WEIGHTS.exists()):
        print(json.dumps({"skipped": f"{args.data} or {WEIGHTS} not found"}))
        return 0
    if args.workspace is not None:
        os.environ["CXR_WORKSPACE"] = str(args.workspace.resolve())
    isolated_env("heatmaps", workspace=args.workspace is None and args.run is None)
    from cxrlib.audit.heatmap_trust import trust_films
    from cxrlib.core.config import ExplainConfig
    from cxrlib.explain import CAM_METHODS
    from cxrlib.explain.trust import heatmap_trust, save_trust

    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    else:
        methods = list(QUICK_METHODS if args.quick else CAM_METHODS)
    unknown = [m for m in methods if m not in CAM_METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(CAM_METHODS)}")
    t0 = time.perf_counter()
    run, dataset = _find_run(args)
    if run.state != "done":
        print(json.dumps({"error": f"run {run.id} is {run.state}, not done"}))
        return 1
    run_s = time.perf_counter() - t0
    x, groups, _, masks = trust_films(run, dataset, films, args.seed)
    model = run.load_model()
    default_before = ExplainConfig().method
    t1 = time.perf_counter()
    trust = heatmap_trust(model, x, methods, groups=groups, lung_masks=masks,
                          default=default_before, seed=args.seed,
                          progress=lambda name, d, n: print(f"{name}: {d}/{n}", file=sys.stderr))
    measure_s = time.perf_counter() - t1
    save_trust(run.folder, {**trust, "bench": {"films": len(x), "quick": args.quick}})
    full = len(x) >= FULL_FILMS and set(methods) == set(CAM_METHODS)
    rule = trust["default_rule"]
    keep = ("layer", "road_combined", "road_combined_ci", "ms_per_film", "cells_per_side",
            "randomisation_rank_corr", "in_lung_share", "default", "beats_random", "flat_share")
    out = {
        "methods": {n: {k: r[k] for k in keep} for n, r in trust["methods"].items()},
        "default_before": default_before,
        "default_after": rule if full and rule else default_before,
        "default_rule_choice": rule, "full_run": full,
        "random_map_road": trust["random_map_road"], "random_map_road_ci": trust["random_map_road_ci"],
        "road_s_per_film": trust["road_s_per_film"], "films": len(x),
        "run": run.id, "run_s": round(run_s, 1), "measure_s": round(measure_s, 1),
        "model_input": int(x.shape[1]),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
