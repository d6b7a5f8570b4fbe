"""The fine-tune recipe for a few epochs on whatever devices TensorFlow sees; one JSON line.

Usage: ``.venv/bin/python bench/gpu_check.py [--data DIR] [--epochs 3] [--size 224]``

Meant for a GPU machine (one or several GPUs: MirroredStrategy, mixed precision, XLA), as one
short command; on a CPU it proves the script works (``--data ../shared/datasets/cxr3-sample``
keeps it to a minute or two). It trains :meth:`TrainConfig.finetune_recipe` (MobileNetV2, grouped
split, starting from its head run, which is trained first and not timed) through the normal
engine in this process, in a fresh workspace, and prints ``{"devices", "gpus", "strategy",
"replicas", "mixed_precision", "xla", "img_per_s", ...}``. ``img_per_s`` is training films
times epochs over the fit's wall time (first-epoch graph tracing included, validation
excluded from the count but not from the time: a lower bound on the steady rate).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import SHARED, WEIGHTS, isolated_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "datasets" / "cxr3")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16,
                        help="global batch (split between the replicas)")
    args = parser.parse_args(argv)
    if not (args.data / "manifest.csv").exists() or not WEIGHTS.exists():
        print(json.dumps({"skipped": f"{args.data} or {WEIGHTS} not found"}))
        return 0
    isolated_env("gpu-check")
    from cxrlib.core.config import DataConfig, PreprocessConfig, RunConfig, TrainConfig
    from cxrlib.core.tfsetup import distribution_strategy, gpus, keras, tf
    from cxrlib.runs import runner
    from cxrlib.training.engine import head_run_config

    cfg = RunConfig(data=DataConfig(root=str(args.data)), preprocess=PreprocessConfig(size=args.size),
                    train=TrainConfig.finetune_recipe(epochs=args.epochs, early_stopping=None,
                                                      batch_size=args.batch_size))
    strategy = distribution_strategy()  # first: before any other TensorFlow op
    fp = runner.dataset_fingerprint(cfg)
    head = runner.train_foreground(head_run_config(cfg), fingerprint=fp)  # not timed
    t0 = time.perf_counter()
    run = runner.train_foreground(cfg, fingerprint=fp)
    wall = time.perf_counter() - t0
    status, metrics = run.status(), run.metrics()
    fit_s = metrics.get("timings", {}).get("fit_all")
    epochs = len(run.history())
    out = {"devices": [d.name for d in tf().config.list_logical_devices()],
           "gpus": [d.name for d in gpus()], "strategy": type(strategy).__name__,
           "replicas": int(strategy.num_replicas_in_sync),
           "mixed_precision": keras().mixed_precision.global_policy().name == "mixed_float16",
           "policy": keras().mixed_precision.global_policy().name, "xla": bool(gpus()),
           "state": status.get("state"), "error": status.get("error"),
           "head_state": head.status().get("state"), "epochs": epochs,
           "n_train": metrics.get("n_train"), "batch_size": args.batch_size, "size": args.size,
           "fit_s": fit_s, "run_s": round(wall, 1),
           "img_per_s": round(metrics["n_train"] * epochs / fit_s, 2) if fit_s else None,
           "val_accuracy_last": float(run.history()["val_accuracy"].iloc[-1]) if epochs else None,
           "tf_version": tf().__version__}
    print(json.dumps(out))
    return 0 if out["state"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
