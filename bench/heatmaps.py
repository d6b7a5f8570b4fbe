"""Which heatmap to trust (issue 25): every CAM method at its default layer on a MobileNetV2 run's
**validation** films, measured with ROAD, and the default method chosen by the measurement.

Usage: ``.venv/bin/python bench/heatmaps.py [--films N] [--slow-films N] [--test-films N]
[--quick] [--methods a,b] [--run FOLDER] [--data DIR] [--workspace DIR]``

The run: ``--run`` names a finished run folder; else a head-mode MobileNetV2 (ImageNet) 3-class
run on ``--data`` (default ``../shared/datasets/cxr3``) is reused from ``--workspace`` (its
``models/runs``), or trained there (a fresh temporary workspace when none is given) through
:func:`cxrlib.runs.runner.start`.

**The rule, fixed before measuring.** The ranking reads only the run's validation split (the
split is the run folder's ``split.csv``): ``--films`` of its films (default 120, a seeded
sample). Per method (:func:`cxrlib.explain.trust.heatmap_trust`): ROAD MoRF / LeRF at 10-90 %
and their combined score (mean of LeRF - MoRF) with a patient-bootstrap 95 % CI (the split's
group key resampled), ``ms_per_film`` (warm, one film at the model's input size),
``cells_per_side``, the model-randomisation rank correlation (head re-initialised, 4 films) and
the CAM-in-lung share. ``random_map_road`` is uniform random maps on the same films. A method
*beats the random map* when its CI's lower end lies above the random map's score on its films.
``default_after`` is the best-ROAD method that beats the random map and explains a film in
< 50 ms (warm), among the methods measured on >= 120 validation films, and only when every
registered method was measured; otherwise the current default is kept (``default_rule_choice``
shows what a partial run would pick). A method that does not beat the random map is shown with
a warning on the Explain page (the stored result, ``heatmap_trust.json`` in the run folder).

The slow methods (:data:`SLOW_METHODS`: Score-CAM, Faster Score-CAM, occlusion; 0.3-2 s a
film, so never eligible for the default) are measured on ``--slow-films`` of the same validation films (default 30, a
seeded subset), each against the random map on those films; ``films`` per method says how many.
``--test-films N`` (default 0: dropped) scores the default before and after on N test films
as a check, labelled ``not_used_for_the_choice``. ``road_s_per_film`` is ROAD's own time per
film and map (9 fractions, both orders). ``--quick``: 20 validation films (6 for slow methods)
and four methods (gradcam, layercam, layercam-fused, occlusion).

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
SLOW_METHODS = ("scorecam", "faster-scorecam", "occlusion")
"""0.3-2 s a film (bench/explain.py: Score-CAM ~1.2 s, Faster Score-CAM ~0.3 s, occlusion
~1.9 s), so never the default (< 50 ms): measured on fewer films to keep the run in budget."""
FULL_FILMS = 120
KEEP = ("layer", "films", "road_combined", "road_combined_ci", "ms_per_film", "cells_per_side",
        "randomisation_rank_corr", "in_lung_share", "default", "beats_random", "flat_share",
        "random_map_road")


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


def _measure(model, x, groups, masks, methods, default, seed):
    """heatmap_trust on these films; each row gets its film count and its random-map reference,
    and the ROAD seconds in total come back for the per-film average."""
    from cxrlib.explain.trust import heatmap_trust

    trust = heatmap_trust(model, x, methods, groups=groups, lung_masks=masks, default=default,
                          seed=seed, progress=lambda name, d, n: print(f"{name}: {d}/{n} ({len(x)} films)",
                                                                       file=sys.stderr, flush=True))
    for row in trust["methods"].values():
        row["films"], row["random_map_road"] = len(x), trust["random_map_road"]
    maps = len(x) * (len(methods) + 1)  # the random map too
    return trust, trust["road_s_per_film"] * maps, maps


def _test_check(run, dataset, model, films, names, seed):
    """The defaults before and after on ``films`` test films: a check, never used for the choice."""
    from cxrlib.audit.heatmap_trust import trust_films

    x, groups, _, masks = trust_films(run, dataset, films, seed, split="test")
    trust, _, _ = _measure(model, x, groups, masks, sorted(set(names)), None, seed)
    return {"not_used_for_the_choice": True, "split": "test", "films": len(x),
            "random_map_road": trust["random_map_road"],
            "methods": {n: {"road_combined": r["road_combined"], "beats_random": r["beats_random"],
                            "road_combined_ci": [round(v, 4) for v in r["road_combined_ci"]]}
                        for n, r in trust["methods"].items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--films", type=int, default=None,
                        help=f"validation films (default {FULL_FILMS}; 20 with --quick)")
    parser.add_argument("--slow-films", type=int, default=None,
                        help="validation films for the slow methods (default 30; 6 with --quick)")
    parser.add_argument("--test-films", type=int, default=0,
                        help="test films for a check of the defaults, not used for the choice (0: none)")
    parser.add_argument("--quick", action="store_true", help="20 films, four methods")
    parser.add_argument("--methods", default=None, help="comma list of registry names (default all)")
    parser.add_argument("--run", type=Path, default=None, help="a finished run folder to measure")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workspace", type=Path, default=None,
                        help="CXR_WORKSPACE whose runs to reuse (default: a fresh temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    films = args.films or (20 if args.quick else FULL_FILMS)
    slow_films = args.slow_films or (6 if args.quick else 30)
    if films < 2 or slow_films < 2 or args.test_films < 0:
        parser.error("--films and --slow-films must be at least 2, --test-films at least 0")
    if args.run is None and (not (args.data / "manifest.csv").exists() or not WEIGHTS.exists()):
        print(json.dumps({"skipped": f"{args.data} or {WEIGHTS} not found"}))
        return 0
    if args.workspace is not None:
        os.environ["CXR_WORKSPACE"] = str(args.workspace.resolve())
    isolated_env("heatmaps", workspace=args.workspace is None and args.run is None)
    import numpy as np

    from cxrlib.audit.heatmap_trust import trust_films
    from cxrlib.core.config import ExplainConfig
    from cxrlib.explain import CAM_METHODS
    from cxrlib.explain.trust import choose_default, rank_methods, save_trust

    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    else:
        methods = list(QUICK_METHODS if args.quick else CAM_METHODS)
    unknown = [m for m in methods if m not in CAM_METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(CAM_METHODS)}")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    run, dataset = _find_run(args)
    if run.state != "done":
        print(json.dumps({"error": f"run {run.id} is {run.state}, not done"}))
        return 1
    run_s = time.perf_counter() - t0
    x, groups, _, masks = trust_films(run, dataset, films, args.seed, split="val")
    model = run.load_model()
    default_before = ExplainConfig().method
    t1 = time.perf_counter()
    fast = [m for m in methods if m not in SLOW_METHODS]
    slow = [m for m in methods if m in SLOW_METHODS]
    parts = [_measure(model, x, groups, masks, fast, default_before, args.seed)] if fast else []
    if slow:
        k = min(slow_films, len(x))
        pick = np.sort(np.random.default_rng(args.seed).choice(len(x), k, replace=False))
        parts.append(_measure(model, x[pick], [groups[i] for i in pick], [masks[i] for i in pick],
                              slow, default_before, args.seed))
    measure_s = time.perf_counter() - t1
    rows = {n: r for trust, _, _ in parts for n, r in trust["methods"].items()}
    ranking = rank_methods(rows)
    main_part = parts[0][0]
    eligible = {"methods": {n: r for n, r in rows.items() if r["films"] >= FULL_FILMS}}
    rule = choose_default(eligible)
    full = len(x) >= FULL_FILMS and set(methods) == set(CAM_METHODS)
    default_after = rule if full and rule else default_before
    trust = {"methods": {n: rows[n] for n in ranking}, "ranking": ranking, "split": "val",
             "random_map_road": main_part["random_map_road"],
             "random_map_road_ci": main_part["random_map_road_ci"], "films": main_part["films"],
             "road_s_per_film": round(sum(p[1] for p in parts) / sum(p[2] for p in parts), 3),
             "default_rule": rule, "run_id": run.id}
    save_trust(run.folder, {**trust, "bench": {"films": len(x), "slow_films": slow_films,
                                               "quick": args.quick}})
    check = (_test_check(run, dataset, model, args.test_films, {default_before, default_after},
                         args.seed) if args.test_films else None)
    def rounded(v):
        return [None if u is None else round(u, 4) for u in v] if isinstance(v, list) else v

    out = {
        "methods": {n: {k: rounded(r[k]) for k in KEEP} for n, r in trust["methods"].items()},
        "default_before": default_before, "default_after": default_after,
        "default_rule_choice": rule, "full_run": full, "split": "val",
        "random_map_road": trust["random_map_road"],
        "random_map_road_ci": rounded(trust["random_map_road_ci"]),
        "road_s_per_film": trust["road_s_per_film"], "films": len(x),
        "slow_films": min(slow_films, len(x)) if slow else 0, "test_check": check,
        "run": run.id, "run_s": round(run_s, 1), "measure_s": round(measure_s, 1),
        "model_input": int(x.shape[1]),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
