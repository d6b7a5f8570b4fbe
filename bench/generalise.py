"""Benchmark of issue 23: the shortcut remedies and the sweep that chooses among them by
leave-one-source-out (LOSO), on the shared cxr3 set.

Usage: ``.venv/bin/python bench/generalise.py [--data DIR] [--space remedies|full|grid16]
[--only NAME,NAME] [--copies K] [--epochs E] [--minutes M] [--quick]``

Candidates (every one an ordinary cached head-mode run of MobileNetV2/ImageNet on the default
grouped split; :mod:`cxrlib.sweep`):

* ``--space remedies`` (default): ``baseline`` and each remedy alone: ``acquisition``
  (``--copies`` acquisition-style feature copies, strength 1), ``acquisition+contrast`` (the
  same with gamma/contrast at 0.5), ``source_balance``, ``nyul`` (intensity standardisation),
  ``lung_crop``;
* ``--space grid16``: 16 candidates over feature remedies, head settings and source balance
  (:func:`grid16`; candidates differing only in head settings share one feature extraction,
  and the JSON counts the new feature-cache entries, ``feature_extractions``);
* ``--space full``: the 16-candidate grid acquisition {0, 1} x contrast {0, 0.5} x
  source balance {off, on} x standardisation {none, nyul} (with ``--copies`` feature copies).

``--only`` keeps the named candidates (e.g. ``baseline,acquisition``). Selection: ``loso``
(declared before anything trains). It trains in the workspace ``CXR_WORKSPACE`` names (a
temporary one when unset), so its runs and the sweep folder can be inspected afterwards.
``--quick``: the planted acquisition-shortcut synthetic set (tests/test_generalise.py) with the
tiny backbone instead of cxr3: seconds, for checking the script, not a measurement of cxr3.

The LAST line printed is JSON: ``candidates`` (per candidate ``name``, ``run_id``, ``settings``,
``val_loss``, ``val_accuracy``, ``loso_expected_accuracy``, ``loso_per_source``,
``source_probe_accuracy``, ``train_s``, ``selected``), ``chosen`` (its run id),
``chosen_test_accuracy``, ``chosen_test_macro_auc``, ``baseline_loso_expected_accuracy``,
``sweep_s``, ``selection``, ``n_candidates``, ``feature_extractions`` and ``tensor_builds``
(new feature- and tensor-cache entries the sweep made), ``sweep``, ``data``. A missing data
folder prints ``{"skipped": ...}``. ``--minutes``: no candidate starts after M minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import _common

COMPACT_HEAD = {"model.head_units": [128], "model.head_dropout": [0.5], "train.batch_size": 64}
"""The grid16 space's second head: one 128-unit layer (dropout 0.5), batches of 64 (a quarter of
the steps of the published head's 16, so its six fits a candidate, run + 5 LOSO folds, are cheap)."""


def grid16(copies: int) -> dict:
    """The 16 named candidates of ``--space grid16``: feature remedies {none, acquisition,
    acquisition + contrast, Nyul} x heads {published, compact, compact at lr 3e-4} x source
    balance, cut to 16 and ordered so the cached features come first. Feature extractions:
    the originals and acquisition copies 1-2 are shared by every head setting; acquisition +
    contrast adds its 2 copies, Nyul its originals (new tensors too): 3 new extractions."""
    acq = {"train.acquisition": 1.0, "train.feature_augment_copies": copies, "train.augment": False}
    con = {**acq, "train.acquisition_contrast": 0.5}
    nyul = {"preprocess.standardise": "nyul"}
    bal = {"train.source_balance": True}
    slow = {**COMPACT_HEAD, "train.learning_rate": 3e-4}
    named = [("baseline", {}), ("acquisition", acq), ("source_balance", bal),
             ("compact", COMPACT_HEAD), ("compact+balance", {**COMPACT_HEAD, **bal}),
             ("compact+acquisition", {**COMPACT_HEAD, **acq}),
             ("compact+acquisition+balance", {**COMPACT_HEAD, **acq, **bal}),
             ("compact-lr3e-4", slow), ("compact-lr3e-4+acquisition", {**slow, **acq}),
             ("compact+acquisition+contrast", {**COMPACT_HEAD, **con}),
             ("compact+acquisition+contrast+balance", {**COMPACT_HEAD, **con, **bal}),
             ("compact-lr3e-4+acquisition+contrast", {**slow, **con}),
             ("acquisition+contrast", con), ("compact+nyul", {**COMPACT_HEAD, **nyul}),
             ("compact+nyul+balance", {**COMPACT_HEAD, **nyul, **bal}), ("nyul", nyul)]
    return dict(named)


def build_spec(args, root: str):
    from cxrlib.sweep.space import REMEDY_SETTINGS, SweepSpec, remedy_candidates  # noqa: PLC0415

    if args.quick:
        base = {"preprocess": {"steps": [], "size": 64},
                "model": {"family": "tiny", "weights": "random", "head_units": [32, 16],
                          "head_dropout": [0.2, 0.1]},
                "split": {"test_fraction": 0.25, "val_fraction": 0.15, "seed": 1, "group_duplicates": False},
                "train": {"epochs": 40, "batch_size": 16, "learning_rate": 1e-2, "seed": 3}}
        named = {k: REMEDY_SETTINGS[k] for k in ("baseline", "acquisition", "source_balance", "nyul")}
    else:
        base = {"train": {"mode": "head", "epochs": args.epochs}}
        named = dict(REMEDY_SETTINGS)
        if args.space == "full":
            named = {}
            for acq in (0.0, 1.0):
                for contrast in (0.0, 0.5):
                    for balance in (False, True):
                        for std in ("none", "nyul"):
                            name = "+".join(n for n, on in (("acquisition", acq), ("contrast", contrast),
                                                            ("balance", balance), ("nyul", std == "nyul")) if on)
                            named[name or "baseline"] = {"train.acquisition": acq,
                                                         "train.acquisition_contrast": contrast,
                                                         "train.source_balance": balance,
                                                         "preprocess.standardise": std}
        if args.space == "grid16":
            named = grid16(args.copies)
    if args.only:
        keep = [n.strip() for n in args.only.split(",")]
        unknown = [n for n in keep if n not in named]
        if unknown:
            raise SystemExit(f"unknown candidates {unknown}; choose from {sorted(named)}")
        named = {n: named[n] for n in keep}
    if args.space == "grid16" and not args.quick:
        cands = [{"name": n, **s} for n, s in named.items()]
    elif args.space == "full" and not args.quick:
        cands = [{"name": n, **s, **({"train.feature_augment_copies": args.copies, "train.augment": False}
                                     if s["train.acquisition"] or s["train.acquisition_contrast"] else {})}
                 for n, s in named.items()]
    else:
        cands = remedy_candidates(named, args.copies)
    name = args.name or ("generalise-quick" if args.quick else f"generalise-{args.space}")
    return SweepSpec(name=name, data=root, selection="loso", base=base, candidates=cands,
                     minutes=args.minutes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=_common.SHARED / "datasets" / "cxr3")
    parser.add_argument("--space", choices=("remedies", "full", "grid16"), default="remedies")
    parser.add_argument("--only", help="comma-separated candidate names to keep")
    parser.add_argument("--copies", type=int, default=2, help="feature copies of the acquisition candidates")
    parser.add_argument("--epochs", type=int, default=50, help="head epochs (published 50)")
    parser.add_argument("--name", help="sweep name (default generalise-<space>)")
    parser.add_argument("--minutes", type=float, help="budget: no candidate starts after M minutes")
    parser.add_argument("--quick", action="store_true", help="synthetic planted set, tiny backbone")
    args = parser.parse_args(argv)
    _common.isolated_env("generalise", workspace=not os.environ.get("CXR_WORKSPACE"))
    if args.quick:
        from cxrlib.data.synthetic import make_acquisition_shortcut_dataset  # noqa: PLC0415

        root = make_acquisition_shortcut_dataset(Path(tempfile.mkdtemp(prefix="cxr-planted-")) / "data",
                                                 shortcut=True, size=64, scale=0.5, quality=40)
        args.copies = 6
    else:
        if not (args.data / "manifest.csv").exists() or not _common.WEIGHTS.exists():
            print(json.dumps({"skipped": f"{args.data} or {_common.WEIGHTS} not found"}))
            return 0
        root = args.data
    from cxrlib.sweep.study import run_sweep  # noqa: PLC0415

    spec = build_spec(args, str(root))

    def progress(s: dict) -> None:
        print(f"[{s.get('done')}/{s.get('total')}] {s.get('candidate')}: {s.get('message') or ''}",
              file=sys.stderr, flush=True)

    from cxrlib.core import paths  # noqa: PLC0415

    def entries(kind: str) -> set:
        return {p.name for p in paths.cache_dir(kind).iterdir()} if paths.cache_dir(kind).is_dir() else set()

    before = {k: entries(k) for k in ("features", "tensors")}
    result = run_sweep(spec, progress=progress)
    made = {k: len(entries(k) - before[k]) for k in before}  # new cache entries: extractions
    keys = ("name", "run_id", "settings", "val_loss", "val_accuracy", "loso_expected_accuracy",
            "loso_per_source", "source_probe_accuracy", "train_s", "selected")
    cands = [{k: r.get(k) for k in keys} for r in result["candidates"]]
    base = next((r for r in cands if r["name"] == "baseline"), None)
    print(json.dumps({"candidates": cands, "chosen": result["chosen"], "chosen_name": result["chosen_name"],
                      "chosen_test_accuracy": result["chosen_test_accuracy"],
                      "chosen_test_macro_auc": result["chosen_test_macro_auc"],
                      "baseline_loso_expected_accuracy": base and base["loso_expected_accuracy"],
                      "sweep_s": result["sweep_s"], "selection": result["selection"],
                      "n_candidates": len(cands), "feature_extractions": made["features"],
                      "tensor_builds": made["tensors"], "sweep": spec.name,
                      "data": "synthetic planted shortcut (--quick)" if args.quick else str(root),
                      "workspace": os.environ.get("CXR_WORKSPACE")}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
