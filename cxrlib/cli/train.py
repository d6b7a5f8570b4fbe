"""``train``: train a model, or return the finished run of the same configuration."""
from __future__ import annotations

import argparse
import json
from typing import Any

from cxrlib.cli.common import (EXIT_CANCELLED, EXIT_FAILED, UsageError, report_failed_run, scan,
                               warn)
from cxrlib.cli.train_args import add_train_args as _add_train_args  # noqa: F401 (tests use it)
from cxrlib.cli.workers import cluster_role, release_if_finished, train_worker
from cxrlib.core import paths
from cxrlib.core.config import (FINETUNE_RECIPE_SIZE, HEAD_FAMILIES, SMALL_CNN_RECIPE_ARCH,
                                SMALL_CNN_RECIPE_SIZE, PreprocessConfig, RunConfig, TrainConfig,
                                preset_mode, run_preset)


def register(sub) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser("train", help="train a model (or return the finished run of the same config)")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of ``train``'s flags (over ``--config`` when given, else the defaults).

    Raises:
        ValueError: for an invalid value (the config dataclasses validate).
    """
    if not args.config:  # the family's preset (the Training page starts from it too)
        family = args.model or RunConfig().model.family
        mode = preset_mode(family, args.mode, published=getattr(args, "published_finetune", False))
        base = run_preset(family, mode, augment=True if args.augment else None)
    else:
        record = json.loads(args.config.read_text(encoding="utf-8"))
        # A RunConfig dict, or a run folder's config.json (which wraps it under "config").
        if isinstance(record, dict) and "data" not in record:
            record = record.get("config", record)
        if not isinstance(record, dict) or not all(isinstance(v, dict) for v in record.values()):
            raise ValueError(f"{args.config} is not a RunConfig JSON object "
                             "(sections data, preprocess, model, split, train)")
        pre = record.get("preprocess")
        if isinstance(pre, dict) and not pre.get("lung_model") and _lung_model(pre.get("steps")):
            record = {**record, "preprocess": {**pre, "lung_model": _lung_model(pre["steps"])}}
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
    elif cnn_recipe:  # over another family's --config (without one, the preset has them)
        steps = PreprocessConfig.published_clahe().steps
    recipe_size = (FINETUNE_RECIPE_SIZE if _uses_recipe(base, args, model.family)
                   else SMALL_CNN_RECIPE_SIZE if cnn_recipe else None)
    preprocess = base.preprocess.replace(**pick(
        steps=steps, wb_percentile=args.wb_percentile, clahe_clip_limit=args.clahe_clip,
        clahe_tile_grid=args.clahe_grid, gamma=args.gamma,
        size=args.size if args.size is not None else recipe_size,
        lung_crop_margin=args.lung_crop_margin, standardise=getattr(args, "standardise", None),
        lung_model=None if base.preprocess.lung_model else _lung_model(steps)))
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
        source_balance=getattr(args, "source_balance", None),
        adversarial=getattr(args, "adversarial", None),
        adversarial_warmup=getattr(args, "adversarial_warmup", None)))
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


def _lung_model(steps) -> str | None:
    """The installed lung segmenter's digest when ``steps`` crop to the lungs and name none
    (a hand-written ``--config`` or ``--steps``; a run's config.json names its own), else None."""
    from cxrlib.lungs.network import asset_digest  # noqa: PLC0415

    return asset_digest() if isinstance(steps, (list, tuple)) and "lung_crop" in steps else None


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
    """The TrainConfig the flags apply to over a ``--config``: switching a MobileNetV2 head
    config to ``--mode finetune``, or another family's to the small CNN, starts from that
    recipe (as :func:`run_preset` does without ``--config``), or with ``--published-finetune``
    from the published defaults; any other head config switched to a fine-tune is
    :meth:`TrainConfig.as_finetune` (its head-only remedies left behind)."""
    if _uses_recipe(base, args, family):
        return TrainConfig.finetune_recipe(seed=base.train.seed)
    if _uses_cnn_recipe(base, args, family):
        # --augment here, before the canonical form of "no augmentation" forgets the recipe's
        # hflip=False: rotations without a flip, as the bench's augmented candidate
        return TrainConfig.small_cnn_recipe(seed=base.train.seed,
                                            **({"augment": True} if args.augment else {}))
    if args.mode == "finetune" and base.train.mode != "finetune" and family == "mobilenetv2":
        return TrainConfig(mode="finetune", seed=base.train.seed)  # --published-finetune
    if base.train.mode == "head" and (args.mode == "finetune" or family not in HEAD_FAMILIES):
        # before the flags: a head-mode TrainConfig drops the fine-tune settings they may set,
        # and a fine-tune leaves the head-only remedies behind
        return base.train.as_finetune()
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
    from cxrlib.training.standardisation import resolve_standardisation  # noqa: PLC0415

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
    errors: list[Exception] = []  # why the run failed here: reported in one line below
    with ProgressBar("train") as bar:
        runner.train_foreground(cfg, fingerprint=fingerprint, on_error=errors.append,
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
        return report_failed_run(run, status, errors)
    return {"done": 0, "cancelled": EXIT_CANCELLED}.get(status.get("state"), EXIT_FAILED)


def headline_row(row: dict[str, Any]) -> dict[str, Any]:
    """A :func:`cxrlib.runs.registry.headline` row with its figures as 3-decimal text."""
    row = dict(row)
    for key in ("accuracy", "macro_auc"):
        row[key] = "-" if row[key] is None else f"{row[key]:.3f}"
    return row
