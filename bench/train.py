"""Benchmark of training on the shared cxr3 set: cache tiers, accuracy, fine-tune throughput.

Usage: ``.venv/bin/python bench/train.py [--data DIR] [--steps N] [--epochs E] [--aug] [--onednn-compare]``

On ``../shared/datasets/cxr3``, 3-class, grouped split (70/10/20), MobileNetV2 (ImageNet) in head
mode, runs started through :func:`cxrlib.runs.runner.start` (a background ``python -m cxrlib train``
process, TensorFlow import included) and followed with :func:`cxrlib.runs.runner.wait`:

* ``cold_s``: nothing cached (film decoding + preprocessing, backbone features, head fit);
* ``warm_s``: a new head config (another learning rate): tensors and features come from the caches;
* ``hit_s``: the finished cold run asked for again through ``runner.start`` (dataset scan for the
  fingerprint included; ``hit_known_fp_s`` when the caller already has the fingerprint);
* ``accuracy``, ``macro_auc``: the cold run's grouped test split; ``best_*`` the head config
  (of those tried; ``--aug`` adds one with a feature-augmented copy) with the lowest validation
  loss, selected without looking at the test split; ``random_split_accuracy``: the published
  random 80/20 split (test doubles as validation), for contrast;
* ``bootstrap_s``: the Evaluation page's 95 % intervals of the cold run's test split (patient-level
  bootstrap, 1000 resamples, :func:`cxrlib.evaluation.bootstrap_ci`), in this process;
* ``finetune_img_per_s``: :func:`cxrlib.training.engine.input_pipeline` (tf.data, rotation + flip) feeding
  a full MobileNetV2 fine-tune for N steps, vs ``fit_img_per_s``: plain ``model.fit`` on the
  same tensors already in memory as float32 (no augmentation), in this process; measured
  alternately twice, best of each.

Then (unless ``--skip-recipes``; in ``--workspace`` when given, reusing its finished runs):

* the fine-tune recipe, chosen on the grouped VALIDATION split (bench/train_recipes.py): head
  mode and :meth:`TrainConfig.finetune_recipe` at each ``--head-sizes`` / ``--finetune-sizes``,
  each with test-time augmentation none / shift / shift_scale; the lowest validation loss wins.
  It prints every candidate's validation figures, then the chosen one's test figures:
  ``finetune_accuracy``, ``finetune_macro_auc``, ``finetune_s`` (its run's training time;
  ``finetune_total_s`` adds the head run it starts from), ``chosen_recipe``, the 95 %
  patient-bootstrap intervals ``finetune_accuracy_ci95`` / ``finetune_macro_auc_ci95`` (is a
  miss more than the 360 test films can tell?); and ``finetune_random_split_accuracy``: the
  same recipe on a random split of the same fractions;
* ``binary_small_cnn``: CLAHE + small CNN, COVID-19 vs Normal, blocks (published at
  ``--cnn-sizes``, BatchNorm + global average pooling at ``--bn-gap-sizes``) and
  augmentation (small rotations without flip / none) chosen by validation loss on a random
  70/10/20 split (images independent, as published; the published fractions were 80/10/10);
  accuracy (with ``accuracy_ci95``), sensitivity, specificity, AUC (``macro_auc_ci95``),
  ``ppv_at_10pct`` and ``train_s`` there, and the same under ``grouped``;
* ``multiworker_ok``: a 2-worker run on 127.0.0.1 (tiny model) equals a single-process run.

``--onednn-compare`` also measures the fine-tune throughput in two fresh processes with
``TF_ENABLE_ONEDNN_OPTS=0`` and ``=1``. The LAST line printed is JSON. Timings on a shared
machine swing 2-3x with load. A missing data folder prints ``{"skipped": ...}`` and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, SHARED, WEIGHTS, isolated_env

DEFAULT_DATA = SHARED / "datasets" / "cxr3"
BINARY_TARGETS = {"accuracy": 0.96, "sensitivity": 0.947, "specificity": 0.966, "train_s": 300}
TARGETS = {"cold_s": 120, "warm_s": 20, "hit_s": 1, "bootstrap_s": 3, "accuracy": 0.956,
           "macro_auc": 0.99}


def _timed_run(cfg, fingerprint):
    from cxrlib.runs import runner

    t0 = time.perf_counter()
    run = runner.start(cfg, fingerprint=fingerprint)
    status = runner.wait(run, poll_s=0.2)
    seconds = time.perf_counter() - t0
    if status.get("state") != "done":
        log = run.log_path.read_text()[-3000:] if run.log_path.exists() else ""
        raise RuntimeError(f"run {run.id} ended {status.get('state')}: {status.get('error')}\n{log}")
    return run, seconds


def bootstrap_seconds(run, n_boot: int = 1000) -> float:
    """Seconds for the bootstrap CIs of a finished run's test split, as the Evaluation page asks."""
    from cxrlib import evaluation as ev

    y, probs, patients = ev.from_predictions(run.test_predictions(), list(run.classes))
    t0 = time.perf_counter()
    ev.bootstrap_ci(y, probs, list(run.classes), patients, n_boot=n_boot, seed=0)
    return round(time.perf_counter() - t0, 3)


def throughput(data: Path, steps: int, repeats: int = 2) -> dict:
    """Fine-tune img/s: our tf.data pipeline vs plain model.fit on in-memory float32 tensors."""
    import numpy as np

    from cxrlib import models

    from cxrlib.training.input_pipeline import input_pipeline
    from cxrlib.core.classes import task_classes
    from cxrlib.core.config import ModelConfig, PreprocessConfig, TrainConfig
    from cxrlib.data.datasets import scan_dataset
    from cxrlib.preprocessing.pipeline import to_model_input
    from cxrlib.preprocessing.tensor_cache import load_tensors
    from cxrlib.core.tfsetup import tf

    tf()
    import keras

    ds = scan_dataset(data).for_task("3class")
    images = load_tensors(ds, PreprocessConfig()).images
    classes = task_classes("3class")
    onehot = np.eye(3, dtype=np.float32)[[classes.index(c) for c in ds.manifest["label"]]]
    tcfg = TrainConfig(mode="finetune", batch_size=16)
    n = tcfg.batch_size * (steps + 2)
    idx = np.random.default_rng(0).permutation(len(images))[:n]

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    def img_per_s(fit) -> float:
        keras.utils.set_random_seed(0)
        model = models.build_model(ModelConfig(), classes, 224)
        model.compile(keras.optimizers.Adam(1e-4), "categorical_crossentropy")
        clock = Clock()
        fit(model, clock)
        t = clock.times[2:]  # the first two steps trace the graph
        return tcfg.batch_size * (len(t) - 1) / (t[-1] - t[0])

    def ours(model, clock):
        model.fit(input_pipeline(images, idx, onehot, tcfg, training=True), epochs=1,
                  verbose=0, callbacks=[clock], shuffle=False)

    x = to_model_input(np.asarray(images[idx]))

    def plain(model, clock):
        model.fit(x, onehot[idx], batch_size=tcfg.batch_size, epochs=1, verbose=0,
                  callbacks=[clock], shuffle=False)

    # Alternate and keep each one's best: the load of a shared machine drifts during the bench.
    rates = {"fit_img_per_s": [], "finetune_img_per_s": []}
    for _ in range(repeats):
        rates["fit_img_per_s"].append(img_per_s(plain))
        rates["finetune_img_per_s"].append(img_per_s(ours))
    return {k: round(max(v), 2) for k, v in rates.items()}


def recipes(args, result: dict) -> None:
    """The fine-tune recipe and small-CNN sections (bench/train_recipes.py) and the 2-worker run."""
    import train_recipes

    from cxrlib.core.config import DataConfig, RunConfig
    from cxrlib.runs import runner

    if args.workspace:
        args.workspace.mkdir(parents=True, exist_ok=True)
        os.environ["CXR_WORKSPACE"] = str(args.workspace)
    sizes = {k: [int(v) for v in getattr(args, k).split(",") if v]
             for k in ("head_sizes", "finetune_sizes", "cnn_sizes", "bn_gap_sizes")}
    fp = runner.dataset_fingerprint(RunConfig(data=DataConfig(root=str(args.data))))
    result.update(train_recipes.finetune_section(args.data, fp, _timed_run,
                                                 head_sizes=sizes["head_sizes"],
                                                 finetune_sizes=sizes["finetune_sizes"]))
    result["binary_small_cnn"] = train_recipes.binary_section(
        args.data, runner.dataset_fingerprint, _timed_run, sizes=sizes["cnn_sizes"],
        bn_gap_sizes=sizes["bn_gap_sizes"])
    small = result["binary_small_cnn"]  # the published ~96 % / 94.7 % / 96.6 %, random split
    small["targets"] = BINARY_TARGETS
    small["met"] = {k: small[k] <= v if k.endswith("_s") else small[k] >= v
                    for k, v in BINARY_TARGETS.items()}
    mw = train_recipes.multiworker_check()
    result.update(multiworker_ok=mw["ok"], multiworker=mw)
    print(f"2-worker run on 127.0.0.1: ok={mw['ok']} ({mw})", flush=True)
    TARGETS.update(finetune_accuracy=0.956, finetune_macro_auc=0.995)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=10, help="fine-tune steps timed")
    parser.add_argument("--epochs", type=int, default=50, help="head epochs (published 50)")
    parser.add_argument("--onednn-compare", action="store_true")
    parser.add_argument("--aug", action="store_true", help="also a head run with 1 augmented copy")
    parser.add_argument("--throughput-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path,
                        help="workspace for the recipe / small-CNN sections (finished runs there "
                             "are reused: their recorded training times are reported); the cache "
                             "tiers always start from an empty one")
    parser.add_argument("--head-sizes", default="224,288", help="head-mode candidate input sizes")
    parser.add_argument("--finetune-sizes", default="224,288",
                        help="fine-tune recipe candidate input sizes")
    parser.add_argument("--cnn-sizes", default="128,160", help="small CNN candidate input sizes")
    parser.add_argument("--bn-gap-sizes", default="128",
                        help="input sizes of the small CNN candidates with BatchNorm + GAP blocks")
    parser.add_argument("--skip-recipes", action="store_true", help="only the cache tiers")
    args = parser.parse_args(argv)
    if not (args.data / "manifest.csv").exists() or not WEIGHTS.exists():
        print(json.dumps({"skipped": f"{args.data} or {WEIGHTS} not found"}))
        return 0
    if args.throughput_only:  # a child of --onednn-compare (or a quick look on its own)
        if "CXR_WORKSPACE" not in os.environ:
            isolated_env("train")
        sys.path.insert(0, str(ROOT))
        print(json.dumps(throughput(args.data, args.steps)))
        return 0
    isolated_env("train")
    from cxrlib.runs import runner
    from cxrlib.core.config import DataConfig, RunConfig, SplitConfig, TrainConfig

    # Head recipe = the TrainConfig defaults (Adam 1e-3, batch 16, no feature augmentation).
    # Compared on the grouped VALIDATION split of cxr3 (best val loss / val accuracy, one seed):
    # lr 1e-3: 0.064 / 0.989; 3e-4: 0.074 / 0.978; 1e-4: 0.074 / 0.983; 1 augmented feature
    # copy at 1e-3: 0.097 / 0.978, at 3e-4: 0.071 / 0.989. None beat the default on validation,
    # so the default stays (differences are within the noise of a 180-film validation split).
    base = RunConfig(data=DataConfig(root=str(args.data), task="3class"),
                     train=TrainConfig(mode="head", epochs=args.epochs, learning_rate=1e-3))
    fingerprint = runner.dataset_fingerprint(base)
    result: dict = {"device": "cpu", "cpus": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)}

    cold_run, result["cold_s"] = _timed_run(base, fingerprint)
    m = cold_run.metrics()
    result.update(accuracy=m["accuracy"], macro_auc=m["macro_auc"], recall=m["recall"],
                  best_epoch=m.get("best_epoch"), feature_s=m.get("feature_seconds"))
    print(f"cold {result['cold_s']:.1f} s  accuracy {m['accuracy']:.3f}  AUC {m['macro_auc']:.4f}",
          flush=True)
    result["bootstrap_s"] = bootstrap_seconds(cold_run)
    warm_cfg = base.replace(train=base.train.replace(learning_rate=3e-4))
    warm_run, result["warm_s"] = _timed_run(warm_cfg, fingerprint)
    print(f"warm {result['warm_s']:.1f} s  accuracy {warm_run.metrics()['accuracy']:.3f}", flush=True)
    t0 = time.perf_counter()
    hit = runner.start(base)
    result["hit_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    runner.start(base, fingerprint=fingerprint)
    result["hit_known_fp_s"] = round(time.perf_counter() - t0, 4)
    assert hit.id == cold_run.id and hit.status()["state"] == "done"

    heads = {"lr1e-3": cold_run, "lr3e-4": warm_run}
    if args.aug:  # one augmented copy: its features cost another extraction pass
        aug_cfg = base.replace(train=base.train.replace(feature_augment_copies=1))
        heads["lr1e-3+aug1"], result["aug1_s"] = _timed_run(aug_cfg, fingerprint)
    # The "best" head config is chosen by its best VALIDATION loss (history.csv), never by test
    # accuracy: choosing on the test split would make best_accuracy an optimistic estimate.
    val_loss = {k: float(r.history()["val_loss"].min()) for k, r in heads.items()}
    best = min(heads, key=val_loss.get)
    result.update(head_configs={k: {"best_val_loss": round(val_loss[k], 4),
                                    "accuracy": r.metrics()["accuracy"],
                                    "macro_auc": r.metrics()["macro_auc"]} for k, r in heads.items()},
                  best_config=best, best_accuracy=heads[best].metrics()["accuracy"],
                  best_macro_auc=heads[best].metrics()["macro_auc"])
    random_cfg = base.replace(split=SplitConfig(kind="random", val_fraction=0.0))
    random_run, _ = _timed_run(random_cfg, fingerprint)
    result["random_split_accuracy"] = random_run.metrics()["accuracy"]
    result["random_split_leakage_groups"] = random_run.metrics()["leakage"]["groups_on_several_sides"]
    print(f"random split accuracy {result['random_split_accuracy']:.3f}", flush=True)

    result.update(throughput(args.data, args.steps))
    result["finetune_vs_fit"] = round(result["finetune_img_per_s"] / result["fit_img_per_s"], 3)
    if args.onednn_compare:
        for flag in ("0", "1"):
            env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=flag)
            out = subprocess.run([sys.executable, __file__, "--throughput-only", "--data",
                                  str(args.data), "--steps", str(args.steps)], env=env,
                                 capture_output=True, text=True, check=True).stdout
            result[f"onednn_{flag}"] = json.loads(out.strip().splitlines()[-1])
    if not args.skip_recipes:
        recipes(args, result)
    result["targets"] = TARGETS
    result["met"] = {k: (result[k] <= v if k.endswith("_s") else result[k] >= v)
                     for k, v in TARGETS.items()}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
