"""Adversarial fine-tuning through the backbone against the plain fine-tune, one source held out.

What it runs (declared here, before anything trains): a leave-one-source-out FOLD, not all of
LOSO (five folds of fine-tuning would take hours on the 2-core CPU).

1. The run's films, split and cached frozen-backbone features (:func:`cxrlib.audit.loso.
   run_features`); sources by the one rule (:func:`cxrlib.audit.loso.loso_sources`). One
   source is held out with every film sharing a group with it, exactly as LOSO's fold does; the
   rest keep the run's train / validation rows.
2. The fold's head, trained on the cached features by the one head fit (what LOSO trains), is
   the start of both fine-tunes (the recipe's ``init_from_head``).
3. Two fine-tunes from those same weights, same films, seed, epochs and input (the run's cached
   tensors, 224 px for MobileNetV2): the fine-tune recipe (:meth:`cxrlib.core.config.
   TrainConfig.finetune_recipe`: block_13_expand up, BatchNorm frozen, peak rate 1e-4, warm-up
   + cosine, rotation, no flip) with ``--epochs``, no early stopping, best validation weights
   kept; once plain (``model.fit``, as the engine) and once with ``adversarial`` (the engine's
   :func:`cxrlib.training.full_fit.fit_adversarial`).
4. Each scored on the held-out source's films (all of them, as the Audit page's LOSO) and on
   the fold's validation films, with the best validation epoch's weights (what a run keeps)
   and with the last epoch's; a linear source probe (:func:`cxrlib.audit.source_probe.
   source_probe`) on the fine-tuned pooled features of those films, grouped folds (over all
   of them, which the class-confounded sources dominate, and within each class with two or
   more sources, balanced: the figure the branch should lower); and how often the trained
   branch itself names a validation film's source.

``--quick``: the same on a synthetic six-source set (tiny random backbone, 32 px) in a
temporary workspace, in well under a minute. Prints figures, ends with one JSON line.

    CXR_WORKSPACE=/path/ws python bench/adversarial_finetune.py --run <head run id> \\
        --hold-out ozanguldali --epochs 3 --adversarial 0.3
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def _quick_run(folder: Path):
    """A finished tiny head run on a synthetic six-source set (no shortcut)."""
    from cxrlib.core.config import (DataConfig, ModelConfig, PreprocessConfig, RunConfig,
                                    SplitConfig, TrainConfig)
    from cxrlib.data.synthetic import make_acquisition_shortcut_dataset
    from cxrlib.runs.runner import train_foreground

    root = folder / "set"
    make_acquisition_shortcut_dataset(root, shortcut=False, per_source=16, size=32)
    cfg = RunConfig(data=DataConfig(root=str(root)), preprocess=PreprocessConfig(steps=(), size=32),
                    model=ModelConfig(family="tiny", weights="random", head_units=(32, 16),
                                      head_dropout=(0.2, 0.1)),
                    split=SplitConfig(test_fraction=0.2, val_fraction=0.15, seed=1,
                                      group_duplicates=False),
                    train=TrainConfig(mode="head", epochs=10, batch_size=16, seed=3))
    return train_foreground(cfg)


def _fold(data, hold_out: str):
    """(held rows, train rows, val rows, sources) of the fold holding out ``hold_out``."""
    from cxrlib.audit.loso import loso_sources

    m = data.manifest
    source = loso_sources(m).to_numpy()
    names = sorted(set(source))
    match = [s for s in names if hold_out.lower() in s.lower()]
    if len(match) != 1:
        raise SystemExit(f"--hold-out {hold_out!r} names {len(match)} of the sources {names}")
    usable = (m["split"] != "excluded").to_numpy()
    held = usable & (source == match[0])
    pool = usable & ~held & ~m["group"].isin(set(m.loc[held, "group"])).to_numpy()
    tr = np.flatnonzero(pool & (m["split"] == "train").to_numpy())
    val = np.flatnonzero(pool & (m["split"] == "val").to_numpy())
    return match[0], np.flatnonzero(held), tr, val, source


class _EpochClock:
    """Seconds of every epoch (a Keras callback, made on first use)."""

    def __new__(cls):
        import keras

        class Clock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds, self._t = [], 0.0

            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._t)

        return Clock()


def _finetune(model, start, images, onehot, sources, tr, val, tcfg):
    """Fine-tune ``model`` from ``start`` weights as the engine does; returns (keeper, clock,
    branch or None). The model is left with its LAST epoch's weights (``keeper.restore()``
    puts the best validation epoch's back, as a run does)."""
    from cxrlib.models.epochs import best_weights
    from cxrlib.training.finetune import compile_classifier, fit_callbacks, prepare_finetune
    from cxrlib.training.full_fit import fit_adversarial
    from cxrlib.training.input_pipeline import input_pipeline

    model.set_weights(start)
    prepare_finetune(model, tcfg)
    compile_classifier(model, tcfg.learning_rate)
    steps = math.ceil(len(tr) / tcfg.batch_size)
    keeper, clock, adv = best_weights(), _EpochClock(), None
    cbs = [keeper, clock, *fit_callbacks(tcfg, steps)]
    if tcfg.adversarial:
        adv = fit_adversarial(model, images, tr, val, onehot, sources, tcfg, callbacks=cbs)
    else:
        model.fit(input_pipeline(images, tr, onehot, tcfg, training=True, epochs=range(tcfg.epochs)),
                  validation_data=input_pipeline(images, val, onehot, tcfg, training=False),
                  epochs=tcfg.epochs, steps_per_epoch=steps, callbacks=cbs, verbose=0, shuffle=False)
    return keeper, clock, adv


def _branch_accuracy(adv, pooled, onehot_rows, sources_rows) -> float | None:
    """How often the trained source branch names the source of films (their true classes given;
    films of sources it was not trained on are left out)."""
    if adv is None:
        return None
    known = np.isin(sources_rows, adv.names)
    pred = adv.branch(np.concatenate([pooled, onehot_rows], 1)).numpy().argmax(1)
    return float((np.asarray(adv.names)[pred] == sources_rows)[known].mean())


def _score(model, images, rows, onehot, batch: int):
    """(accuracy, pooled features) of ``rows``."""
    from cxrlib.training.adversary import backbone_joint
    from cxrlib.training.input_pipeline import input_pipeline
    from cxrlib.core.config import TrainConfig

    ds = input_pipeline(images, rows, onehot, TrainConfig(batch_size=batch), training=False)
    probs, pooled = backbone_joint(model).predict(ds.map(lambda x, y: x), verbose=0)
    return float((probs.argmax(1) == onehot[rows].argmax(1)).mean()), pooled


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="synthetic six-source set, tiny backbone")
    p.add_argument("--run", help="the finished head-mode run (its data, split, features, head)")
    p.add_argument("--hold-out", default="ozanguldali", help="a unique part of the held-out source's name")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--adversarial", type=float, default=0.3, help="the gradient-reversal weight")
    p.add_argument("--no-warmup", action="store_true", help="the full weight from the first step")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's 1e-4)")
    args = p.parse_args(argv)
    t0, load_before = time.perf_counter(), _load()
    tmp = None
    if args.quick:
        tmp = tempfile.TemporaryDirectory(prefix="advft-")
        os.environ["CXR_WORKSPACE"] = str(Path(tmp.name) / "ws")
        run = _quick_run(Path(tmp.name))
        hold_out = "hospital-0"
    else:
        if not args.run:
            p.error("--run (a finished head-mode run of CXR_WORKSPACE) or --quick")
        from cxrlib.runs.registry import get_run

        run, hold_out = get_run(args.run), args.hold_out
    from cxrlib.audit.loso import run_features
    from cxrlib.audit.source_probe import source_probe
    from cxrlib.core.config import TrainConfig
    from cxrlib.data.datasets import scan_dataset
    from cxrlib.models import backbone_and_head
    from cxrlib.preprocessing.tensor_cache import load_tensors
    from cxrlib.training.head_fit import fit_head, fresh_head

    cfg = run.config
    data = run_features(run)
    name, held, tr, val, sources = _fold(data, hold_out)
    classes = data.classes
    onehot = np.eye(len(classes), dtype=np.float32)[[classes.index(c) for c in data.manifest["label"]]]
    images = load_tensors(scan_dataset(cfg.data.root, bacterial=cfg.data.bacterial)
                          .for_task(cfg.data.task), cfg.preprocess).images
    head = fresh_head(data.head, cfg.train.seed)
    fit_head(head, data.features, tr, val, onehot, cfg.train, sources=sources)
    model = run.load_model()
    backbone_and_head(model)[1].set_weights(head.get_weights())  # the fold's head on the model
    start = model.get_weights()
    start_acc, _ = _score(model, images, held, onehot, cfg.train.batch_size)
    print(f"run {run.id} ({cfg.model.family}, {cfg.preprocess.size} px); held out {name}: "
          f"{len(held)} films; fold train {len(tr)}, val {len(val)}; fold head alone on the "
          f"held-out source {start_acc:.3f}; load {load_before}", flush=True)
    results = {}
    for label, lam in (("plain", 0.0), ("adversarial", args.adversarial)):
        tcfg = TrainConfig.finetune_recipe(epochs=args.epochs, early_stopping=None,
                                           warmup_epochs=min(1, args.epochs - 1),
                                           adversarial=lam, adversarial_warmup=not args.no_warmup)
        if cfg.model.family == "tiny":
            tcfg = tcfg.replace(finetune_from=None, learning_rate=1e-3)
        if args.lr:
            tcfg = tcfg.replace(learning_rate=args.lr)
        t = time.perf_counter()
        keeper, clock, adv = _finetune(model, start, images, onehot, sources, tr, val, tcfg)
        fit_s = time.perf_counter() - t
        r = {}
        for when in ("last", "best"):  # the last epoch's weights, then the best validation's
            if when == "best":
                keeper.restore()
            held_acc, held_pooled = _score(model, images, held, onehot, tcfg.batch_size)
            val_acc, val_pooled = _score(model, images, val, onehot, tcfg.batch_size)
            rows = np.concatenate([val, held])
            probe = source_probe(np.concatenate([val_pooled, held_pooled]), sources[rows],
                                 data.manifest["group"].to_numpy()[rows],
                                 data.manifest["label"].to_numpy()[rows], seed=cfg.train.seed)
            r[when] = {"held_out_accuracy": held_acc, "val_accuracy": val_acc,
                       "source_probe_accuracy": probe["accuracy"],
                       "source_probe_within_class": probe["within_class_balanced_accuracy"],
                       "branch_val_source_accuracy": _branch_accuracy(adv, val_pooled, onehot[val],
                                                                      sources[val])}
            print(f"{label:12s} {when:4s} held-out {held_acc:.3f}  val acc {val_acc:.3f}  "
                  f"source probe {probe['accuracy']:.3f} (within class, balanced "
                  f"{probe['within_class_balanced_accuracy']})  branch on val "
                  f"{r[when]['branch_val_source_accuracy']}", flush=True)
        results[label] = {**r["best"], **{f"{k}_last_epoch": v for k, v in r["last"].items()},
                          "val_loss": keeper.best, "best_epoch": keeper.best_epoch,
                          "epoch_s": [round(x, 1) for x in clock.seconds],
                          "seconds_per_epoch": round(float(np.median(clock.seconds)), 1),
                          "fit_s": round(fit_s, 1)}
        print(f"{label:12s} val loss {keeper.best:.4f} (epoch {keeper.best_epoch}); epochs "
              f"{results[label]['epoch_s']} s (median {results[label]['seconds_per_epoch']})", flush=True)
    gain = results["adversarial"]["held_out_accuracy"] - results["plain"]["held_out_accuracy"]
    print(f"held-out gain of the adversarial branch: {gain:+.3f}")
    out = {"run": run.id, "quick": args.quick, "held_out_source": name, "n_held_out": int(len(held)),
           "n_train": int(len(tr)), "n_val": int(len(val)), "fold_head_held_out_accuracy": start_acc,
           **{f"{k}_{label}": v for label, r in results.items() for k, v in r.items()},
           "held_out_gain": gain,
           "settings": {"epochs": args.epochs, "adversarial": args.adversarial,
                        "adversarial_warmup": not args.no_warmup, "size": cfg.preprocess.size,
                        "family": cfg.model.family, "learning_rate": tcfg.learning_rate,
                        "recipe": "finetune_recipe, no early stopping"},
           "total_s": round(time.perf_counter() - t0, 1), "load_before": load_before,
           "load_after": _load()}
    print(json.dumps(out))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
