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
* ``metadata_balanced_accuracy`` / ``majority_rate``: the baseline's balanced accuracy (chance
  1/3) and the test split's majority-class rate (the chance level of its accuracy);
* ``loso`` (per held-out source: accuracy, n), ``loso_expected_accuracy`` (mean over sources),
  ``loso_s`` (all folds, features cached), ``adversarial_loso_expected_accuracy`` (the same with
  the source-adversarial head, weight ``cxrlib.audit.generalisation.ADVERSARIAL_WEIGHT``);
* ``source_probe_accuracy``: a linear probe naming the source from the backbone features;
* ``worst_subgroups``: the three worst test-split subgroups (n, accuracy, CI);
* ``duplicates_20k_s``: the duplicate search (candidates + confirmation, hashes computed) on a
  set of 12 hard links of every film under new names in a temporary folder (21 600 films for
  cxr3), in a process of its own, with ``duplicates_20k_scan_s`` (the decoding pass),
  ``duplicates_20k_peak_mb`` (that process's peak memory) and the pairs and clusters found;
* ``lung_masks``: where the lung masks came from (``dataset`` / ``predicted``: the learned
  segmenter) and how many were ``flagged`` as poor (left out of the shares and the masked
  evaluation); ``cam_in_lung_share_classical``: the same shares, same films and CAMs, with the
  classical masks the first audit used (the old values); ``lung_crop``: the same run with the
  lung-crop step, its ``cnn_accuracy``, ``lungs_blanked_accuracy`` and ``cam_in_lung_share``
  (``bench/_lung_audit.py``; ``--no-lung-crop`` skips that run);
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
    parser.add_argument("--copies", type=int, default=12, help="hard links per film for duplicates_20k_s")
    parser.add_argument("--no-lung-crop", action="store_true", help="skip the lung-crop run")
    parser.add_argument("--dups-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dups_only is not None:  # the child process of duplicates_20k_s
        isolated_env("audit-dups", workspace=False)
        return _duplicates_child(args.dups_only)
    if not (args.data / "manifest.csv").exists() or not WEIGHTS.exists():
        print(json.dumps({"skipped": f"{args.data} or {WEIGHTS} not found"}))
        return 0
    isolated_env("audit")
    from cxrlib.runs import runner
    from cxrlib.audit import audit_run
    from cxrlib.data.duplicates import find_duplicates
    from cxrlib.audit.generalisation import ADVERSARIAL_WEIGHT
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
    report = audit_run(run, dataset=dataset, max_films=args.max_films, adversarial=ADVERSARIAL_WEIGHT)
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
    gen = report.generalisation
    if gen is not None and gen.loso is not None:
        print(gen.loso.table.drop(columns=["classes"]).to_string(index=False))
    if gen is not None and gen.loso_adversarial is not None:
        print(gen.loso_adversarial.table[["source", "held_out_accuracy"]].to_string(index=False))
    if gen is not None and gen.subgroups is not None:
        print(gen.subgroups.table[["column", "value", "n", "accuracy", "ci_low", "ci_high", "flagged"]]
              .head(8).to_string(index=False))
    from _lung_audit import lung_figures

    lungs = lung_figures(run, cfg, dataset, report, args.max_films, crop=not args.no_lung_crop)
    dups = _duplicates_at_scale(args.data, args.copies)
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
        **lungs,
        "metadata_confounded": report.metadata.confounded,
        "metadata_balanced_accuracy": _r(s["metadata_balanced_accuracy"]),
        "majority_rate": _r(s["majority_rate"]),
        "loso": {k: {"accuracy": _r(v["accuracy"]), "n": v["n"]} for k, v in (s["loso"] or {}).items()},
        "loso_expected_accuracy": _r(s["loso_expected_accuracy"]), "loso_s": s["loso_s"],
        "adversarial_loso_expected_accuracy": _r(s["adversarial_loso_expected_accuracy"]),
        "source_probe_accuracy": _r(s["source_probe_accuracy"]),
        "source_probe_within_class_balanced_accuracy": _r(s["source_probe_within_class_balanced_accuracy"]),
        "worst_subgroups": [{k: (_r(v) if isinstance(v, float) else v) for k, v in w.items()}
                            for w in (s["worst_subgroups"] or [])],
        **dups,
        "train_s": round(train_s, 1), "audit_s": round(audit_s, 1), "duplicates_cached_s": round(cached_s, 2),
        **{f"{k}_s": round(v, 2) for k, v in s["timings"].items()},
    }
    print(json.dumps(result))
    return 0


def _duplicates_at_scale(data: Path, copies: int) -> dict:
    """``copies`` hard links of every film of ``data`` under new names in a temporary folder,
    then the duplicate search on them in a child process (its own peak memory)."""
    import os
    import shutil
    import subprocess
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="cxr-bench-dups-"))
    try:
        for path in sorted(p for p in data.rglob("*") if p.is_file() and p.suffix.lower() in
                           (".jpg", ".jpeg", ".png")):
            folder = root / path.parent.relative_to(data)
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(copies):
                try:
                    os.link(path, folder / f"k{k}_{path.name}")
                except OSError:  # another file system: copies (decoded each, found all the same)
                    shutil.copyfile(path, folder / f"k{k}_{path.name}")
        out = subprocess.run([sys.executable, __file__, "--dups-only", str(root)], check=True,
                             capture_output=True, text=True, env=os.environ.copy())
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _peak_mb() -> int:
    """This process's peak resident memory (VmHWM: of this program only; getrusage's maxrss
    keeps the high-water mark of the parent it was forked from, the trained run's TensorFlow)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    import resource  # noqa: PLC0415 - not Linux: the best there is

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _duplicates_child(root: Path) -> int:

    from cxrlib.data.duplicates import clusters_from_pairs, find_duplicate_pairs
    from cxrlib.data.film_scan import scan_films
    from cxrlib.data.datasets import scan_dataset

    dataset = scan_dataset(root)
    t0 = time.perf_counter()
    sig = scan_films(dataset.manifest, fingerprint=dataset.fingerprint, use_cache=False)
    scan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pairs = find_duplicate_pairs(dataset.manifest, signatures=sig)
    clusters = clusters_from_pairs(dataset.manifest, pairs)
    search_s = time.perf_counter() - t0
    print(json.dumps({"duplicates_20k_films": len(dataset.manifest), "duplicates_20k_s": round(search_s, 2),
                      "duplicates_20k_scan_s": round(scan_s, 2), "duplicates_20k_pairs": int(len(pairs)),
                      "duplicates_20k_clusters": int(clusters["cluster_id"].nunique()) if len(clusters) else 0,
                      "duplicates_20k_peak_mb": _peak_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
