"""``train``: train a model, or return the finished run of the same configuration."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cxrlib.cli.common import EXIT_CANCELLED, EXIT_FAILED, UsageError, scan, warn
from cxrlib.cli.workers import add_worker_args, cluster_role, release_if_finished, train_worker
from cxrlib.core import paths
from cxrlib.core.config import (CNN_ARCHS, FINETUNE_RECIPE_SIZE, HEAD_FAMILIES, PREPROCESS_STEPS,
                                SCHEDULES, SMALL_CNN_RECIPE_ARCH, SMALL_CNN_RECIPE_SIZE,
                                STANDARDISE_METHODS, TTA_MODES,
                                PreprocessConfig, RunConfig, TrainConfig)


def register(sub) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser("train", help="train a model (or return the finished run of the same config)")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    g = p.add_argument_group("data and split")
    g.add_argument("--config", type=Path, help="RunConfig JSON file; the flags below override it")
    g.add_argument("--data", help=f"dataset folder (default {paths.default_data_dir()})")
    g.add_argument("--task", choices=("3class", "binary"), help=f"default {d.data.task}")
    g.add_argument("--bacterial", choices=("exclude", "class"), help="Kermany bacterial films")
    g.add_argument("--split", choices=("grouped", "random"),
                   help="grouped by patient/duplicate group (default) or the published random split")
    g.add_argument("--test-fraction", type=float, help=f"default {d.split.test_fraction}")
    g.add_argument("--val-fraction", type=float,
                   help=f"default {d.split.val_fraction}; 0 = test doubles as validation (published 80/20)")
    g.add_argument("--min-class-films", type=int, metavar="N",
                   help="refuse to train when a class has fewer readable films (default 5, "
                        "or $CXR_MIN_CLASS_FILMS)")
    g.add_argument("--min-class-patients", type=int, metavar="N",
                   help="grouped split: refuse when a class has fewer patients (default 2, "
                        "or $CXR_MIN_CLASS_PATIENTS)")
    g = p.add_argument_group("preprocessing")
    g.add_argument("--steps", help=f"comma list of {','.join(PREPROCESS_STEPS)} or 'none' "
                                   "(default white_balance; clahe for small_cnn, as published); "
                                   "lung_crop crops to the box of both lungs (learned segmenter) "
                                   "plus --lung-crop-margin, just before the resize")
    g.add_argument("--wb-percentile", type=float, help=f"default {d.preprocess.wb_percentile}")
    g.add_argument("--clahe-clip", type=float, help=f"default {d.preprocess.clahe_clip_limit}")
    g.add_argument("--clahe-grid", type=int, help=f"default {d.preprocess.clahe_tile_grid}")
    g.add_argument("--gamma", type=float, help=f"default {d.preprocess.gamma}")
    g.add_argument("--lung-crop-margin", type=float, metavar="FRACTION",
                   help=f"lung_crop: margin on each side as a fraction of the lungs' box "
                        f"(default {d.preprocess.lung_crop_margin:g}, chosen on validation films)")
    g.add_argument("--size", type=int, help=f"model input side in pixels (default {d.preprocess.size})")
    g.add_argument("--standardise", choices=STANDARDISE_METHODS,
                   help="intensity standardisation after the resize: nyul maps each film's "
                        "percentile landmarks onto a scale learned on the training rows (default none)")
    g = p.add_argument_group("model and training")
    g.add_argument("--model", choices=("mobilenetv2", "small_cnn", "tiny"), help=f"default {d.model.family}")
    g.add_argument("--weights", choices=("imagenet", "random"), help=f"default {d.model.weights}")
    g.add_argument("--cnn-arch", choices=CNN_ARCHS,
                   help="small CNN blocks: bn_gap (conv, BatchNorm, ReLU, max-pool; global average "
                        "pooling: the recipe's) or published (conv, max-pool, flatten)")
    g.add_argument("--mode", choices=("head", "finetune"),
                   help="head: frozen backbone, cached features (fast on CPU; default); finetune: "
                        "MobileNetV2 starts from the validated recipe (TrainConfig.finetune_recipe: "
                        "from the trained head, block_13 up, BatchNorm frozen, lr 1e-4, warm-up + "
                        "cosine, early stopping); the flags below override its values. The "
                        "small CNN always trains all its layers (finetune), from its validated "
                        "recipe (TrainConfig.small_cnn_recipe: bn_gap blocks, 128 px, peak lr "
                        "2e-3, warm-up + cosine over 20 epochs, early stopping, no augmentation)")
    g.add_argument("--published-finetune", action="store_true",
                   help="finetune: the published recipe instead (all layers, lr 1e-3, plateau; "
                        "the small CNN: published blocks, 224 px, 50 epochs, rotation + flip)")
    g.add_argument("--epochs", type=int, help=f"default {d.train.epochs}")
    g.add_argument("--batch-size", type=int, help=f"default {d.train.batch_size}")
    g.add_argument("--lr", type=float, help=f"Adam learning rate (default {d.train.learning_rate})")
    g.add_argument("--augment", dest="augment", action="store_const", const=True,
                   help="random rotation (and flip, see --hflip) while training (default: on; "
                        "off in the small CNN recipe)")
    g.add_argument("--no-augment", dest="augment", action="store_const", const=False,
                   help="no random rotation / flip")
    g.add_argument("--rotation", type=float, help=f"max rotation, fraction of a turn (default {d.train.rotation})")
    g.add_argument("--hflip", dest="hflip", action="store_const", const=True,
                   help="random horizontal flip (default: on, as published; off in the fine-tune recipe)")
    g.add_argument("--no-hflip", dest="hflip", action="store_const", const=False, help="no horizontal flip")
    g.add_argument("--feature-augment-copies", type=int,
                   help="head mode: augmented copies of each training film whose features are cached (default 0)")
    g.add_argument("--acquisition", type=float, metavar="STRENGTH",
                   help="head mode: acquisition-style augmentation of the feature copies "
                        "(border crops, downscale, blur, noise, JPEG; no flip), strength in "
                        "[0, 1] (default 0: off; needs --feature-augment-copies)")
    g.add_argument("--acquisition-contrast", type=float, metavar="STRENGTH",
                   help="head mode: random gamma / contrast / brightness of the same copies, "
                        "strength in [0, 1] (default 0: off)")
    g.add_argument("--source-balance", action="store_const", const=True,
                   help="head mode: every (class, source) cell weighs the same in the loss")
    g.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE epochs without val-loss gain")
    g.add_argument("--init-from-head", action="store_const", const=True,
                   help="finetune: start from the trained head of the matching head run")
    g.add_argument("--finetune-from", metavar="LAYER",
                   help="finetune: first layer that trains ('all' = every layer)")
    g.add_argument("--freeze-bn", dest="freeze_batchnorm", action="store_const", const=True,
                   help="finetune: BatchNorm layers in inference mode")
    g.add_argument("--train-bn", dest="freeze_batchnorm", action="store_const", const=False,
                   help="finetune: BatchNorm layers train (published)")
    g.add_argument("--schedule", choices=SCHEDULES, help="finetune: learning-rate schedule")
    g.add_argument("--warmup-epochs", type=int, help="finetune, cosine: epochs of linear warm-up")
    g.add_argument("--tta", choices=TTA_MODES,
                   help="test-time augmentation of the test predictions (no flips; default none)")
    g.add_argument("--seed", type=int, help="seed of the split and of training (default 42)")
    g = p.add_argument_group("execution")
    g.add_argument("--background", action="store_true",
                   help="start a detached process and return; follow it with `runs`")
    g.add_argument("--no-restart", dest="restart", action="store_false",
                   help="return a failed or cancelled run as it is instead of restarting it")
    g.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    add_worker_args(g)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of ``train``'s flags (over ``--config`` when given, else the defaults).

    Raises:
        ValueError: for an invalid value (the config dataclasses validate).
    """
    base = RunConfig()
    if args.config:
        record = json.loads(args.config.read_text(encoding="utf-8"))
        # A RunConfig dict, or a run folder's config.json (which wraps it under "config").
        if isinstance(record, dict) and "data" not in record:
            record = record.get("config", record)
        if not isinstance(record, dict) or not all(isinstance(v, dict) for v in record.values()):
            raise ValueError(f"{args.config} is not a RunConfig JSON object "
                             "(sections data, preprocess, model, split, train)")
        base = RunConfig.from_dict(record)

    def pick(**pairs: Any) -> dict[str, Any]:
        return {k: v for k, v in pairs.items() if v is not None}

    data = base.data.replace(**pick(root=args.data, task=args.task, bacterial=args.bacterial))
    if not args.config and args.data is None:
        data = data.replace(root=str(paths.default_data_dir()))
    model = base.model.replace(**pick(family=args.model, weights=args.weights))
    cnn_recipe = _uses_cnn_recipe(base, args, model.family)
    recipe_arch = SMALL_CNN_RECIPE_ARCH if cnn_recipe else None
    model = model.replace(**pick(cnn_arch=args.cnn_arch or recipe_arch))
    if args.cnn_arch is not None and model.family != "small_cnn":
        raise ValueError(f"--cnn-arch is a small CNN setting; --model {model.family} has none")
    if model.family not in HEAD_FAMILIES and args.mode == "head":
        raise ValueError("the small CNN has no pretrained backbone to freeze: it always trains "
                         "all its layers (--mode finetune, its default), not --mode head")
    steps = None
    if args.steps is not None:
        steps = () if args.steps.strip().lower() in ("", "none") else tuple(
            s.strip() for s in args.steps.split(",") if s.strip())
    elif cnn_recipe or (args.model == "small_cnn" and not args.config):
        steps = PreprocessConfig.published_clahe().steps  # the recipe's too, over another config
    recipe_size = (FINETUNE_RECIPE_SIZE if _uses_recipe(base, args, model.family)
                   else SMALL_CNN_RECIPE_SIZE if cnn_recipe else None)
    preprocess = base.preprocess.replace(**pick(
        steps=steps, wb_percentile=args.wb_percentile, clahe_clip_limit=args.clahe_clip,
        clahe_tile_grid=args.clahe_grid, gamma=args.gamma,
        size=args.size if args.size is not None else recipe_size,
        lung_crop_margin=args.lung_crop_margin, standardise=getattr(args, "standardise", None)))
    split = base.split.replace(**pick(kind=args.split, test_fraction=args.test_fraction,
                                      val_fraction=args.val_fraction, seed=args.seed))
    train = _train_base(base, args, model.family).replace(**pick(
        mode=args.mode, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        augment=args.augment, rotation=args.rotation, hflip=args.hflip,
        feature_augment_copies=args.feature_augment_copies, early_stopping=args.early_stopping,
        init_from_head=args.init_from_head, freeze_batchnorm=args.freeze_batchnorm,
        finetune_from=args.finetune_from, schedule=args.schedule,
        warmup_epochs=args.warmup_epochs, tta=args.tta, seed=args.seed,
        acquisition=getattr(args, "acquisition", None),
        acquisition_contrast=getattr(args, "acquisition_contrast", None),
        source_balance=getattr(args, "source_balance", None)))
    if args.finetune_from == "all":  # every layer trains (None, which pick() would drop)
        train = train.replace(finetune_from=None)
    if not train.augment and (args.rotation is not None or args.hflip):
        raise ValueError("--rotation / --hflip say how films are augmented, but this run trains "
                         "without augmentation (--no-augment, or the small CNN recipe's "
                         "default): add --augment")
    pretrained_only = [flag for flag, on in (("--init-from-head", train.init_from_head),
                                             ("--freeze-bn", train.freeze_batchnorm),
                                             ("--finetune-from", train.finetune_from is not None))
                       if on]
    if model.family == "small_cnn" and pretrained_only:
        raise ValueError(f"{', '.join(pretrained_only)}: settings of a pretrained backbone; the "
                         "small CNN starts from random weights (frozen BatchNorm would keep its "
                         "untrained statistics)")
    return RunConfig(data=data, preprocess=preprocess, model=model, split=split, train=train)


def _finished(cfg: RunConfig, fingerprint: str) -> bool:
    from cxrlib.runs.registry import find_run  # noqa: PLC0415

    run = find_run(cfg, fingerprint)
    return run is not None and run.raw_status().get("state") == "done"


def _uses_recipe(base: RunConfig, args: argparse.Namespace, family: str) -> bool:
    """Whether ``--mode finetune`` switches a MobileNetV2 head config to the fine-tune recipe."""
    return (args.mode == "finetune" and base.train.mode != "finetune" and family == "mobilenetv2"
            and not getattr(args, "published_finetune", False))


def _uses_cnn_recipe(base: RunConfig, args: argparse.Namespace, family: str) -> bool:
    """Whether ``--model small_cnn`` starts from the small CNN recipe: a switch to the small CNN
    (from the defaults or another family's ``--config``) without ``--published-finetune``."""
    return (family == "small_cnn" and base.model.family != "small_cnn"
            and not getattr(args, "published_finetune", False))


def _train_base(base: RunConfig, args: argparse.Namespace, family: str) -> TrainConfig:
    """The TrainConfig the flags apply to: switching a MobileNetV2 head config to ``--mode
    finetune`` starts from :meth:`TrainConfig.finetune_recipe` (a head's learning rate is not a
    fine-tune's; the recipe's input size is :data:`FINETUNE_RECIPE_SIZE` unless ``--size``);
    switching to the small CNN starts from :meth:`TrainConfig.small_cnn_recipe` (its blocks
    :data:`SMALL_CNN_RECIPE_ARCH`, its size :data:`SMALL_CNN_RECIPE_SIZE`, unless ``--cnn-arch`` / ``--size``);
    with ``--published-finetune`` either starts from the published defaults."""
    if _uses_recipe(base, args, family):
        return TrainConfig.finetune_recipe(seed=base.train.seed)
    if _uses_cnn_recipe(base, args, family):
        # --augment here, before the canonical form of "no augmentation" forgets the recipe's
        # hflip=False: rotations without a flip, as the bench's augmented candidate
        return TrainConfig.small_cnn_recipe(seed=base.train.seed,
                                            **({"augment": True} if args.augment else {}))
    if args.mode == "finetune" and base.train.mode != "finetune" and family == "mobilenetv2":
        return TrainConfig(mode="finetune", seed=base.train.seed)  # --published-finetune
    if family not in HEAD_FAMILIES and base.train.mode == "head":
        # before the flags: a head-mode TrainConfig drops the fine-tune settings they may set
        return base.train.replace(mode="finetune")
    return base.train


def cmd_train(args: argparse.Namespace) -> int:
    from cxrlib.runs import runner  # noqa: PLC0415
    from cxrlib.runs.registry import create_run  # noqa: PLC0415
    from cxrlib.runs.run import Run  # noqa: PLC0415
    from cxrlib.runs.registry import headline  # noqa: PLC0415

    if args.run_dir is not None:  # the runner's detached process
        return runner.execute_run(Run(args.run_dir))
    try:
        cfg = config_from_args(args)
    except OSError as exc:  # a --config file that is not there or not readable
        raise UsageError(f"{exc.filename}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from cxrlib.data.checks import check_trainable  # noqa: PLC0415

    dataset = scan(cfg.data.root, cfg.data.bacterial).for_task(cfg.data.task)
    check_trainable(dataset, cfg.data.task, cfg.split.kind, min_films=args.min_class_films,
                    min_patients=args.min_class_patients)  # before any run folder exists
    fingerprint = dataset.fingerprint
    from cxrlib.preprocessing.standardise import resolve_standardisation  # noqa: PLC0415

    cfg = resolve_standardisation(cfg, dataset=dataset)  # issue 23: scale from the training rows
    role = cluster_role(args)  # sets TF_CONFIG from --workers before TensorFlow is imported
    if (cfg.model.family == "mobilenetv2" and cfg.model.weights == "imagenet"
            and not _finished(cfg, fingerprint)):
        from cxrlib.models.weights import resolve_imagenet_weights  # noqa: PLC0415

        resolve_imagenet_weights()  # WeightsUnavailable here: before any run folder exists
    if role is not None and not role.chief:
        return train_worker(cfg, fingerprint, role, background=args.background)
    if role is not None:
        release_if_finished(cfg, fingerprint)
    if args.background:
        run = runner.start(cfg, fingerprint=fingerprint, restart=args.restart)
        status = run.status()
        print(f"run {run.id}\nfolder {run.folder}\nstate {status.get('state')}")
        return 0
    from cxrlib.cli.progress import ProgressBar, status_line  # noqa: PLC0415

    run = create_run(cfg, fingerprint)
    print(f"run {run.id}\nfolder {run.folder}", flush=True)
    with ProgressBar("train") as bar:
        runner.train_foreground(cfg, fingerprint=fingerprint,
                                on_status=lambda s: bar.update(*status_line(s)))
    status = run.status()
    row = headline_row(headline(run))
    print(f"state {status.get('state')}\naccuracy {row['accuracy']}\nmacro_auc {row['macro_auc']}")
    leak = run.leakage
    if leak.get("patients_on_several_sides") or leak.get("groups_on_several_sides"):
        warn(f"{leak.get('patients_on_several_sides')} patients and "
             f"{leak.get('groups_on_several_sides')} groups are on more than one side of the split")
    from cxrlib.preprocessing.tensor_cache import cached_problems  # noqa: PLC0415

    for film in cached_problems(dataset, cfg.preprocess) or []:  # decoding found what a scan cannot
        warn(f"left out of training: {film['rel_path']}: {film['reason']}")
    if status.get("error"):
        print(f"error: {status['error']} (log: {run.log_path})", file=sys.stderr)
    return {"done": 0, "cancelled": EXIT_CANCELLED}.get(status.get("state"), EXIT_FAILED)


def headline_row(row: dict[str, Any]) -> dict[str, Any]:
    """A :func:`cxrlib.runs.registry.headline` row with its figures as 3-decimal text."""
    row = dict(row)
    for key in ("accuracy", "macro_auc"):
        row[key] = "-" if row[key] is None else f"{row[key]:.3f}"
    return row
