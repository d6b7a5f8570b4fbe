"""The ``train`` command's flags (also read by ``sweep`` candidates' configs): one argparse
group each for the data, the preprocessing and the model and training settings."""
from __future__ import annotations

import argparse

from pathlib import Path

from cxrlib.cli.workers import add_worker_args
from cxrlib.core import paths
from cxrlib.core.config import (CNN_ARCHS, PREPROCESS_STEPS, SCHEDULES, STANDARDISE_METHODS,
                                TTA_MODES, RunConfig)


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Add every flag of ``train`` (its defaults shown from :class:`RunConfig`)."""
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
                   help="head mode: augmented copies of each training film whose features are cached "
                        "(default 2 with acquisition 1.0 for the MobileNetV2 head preset, the measured remedy: "
                        "docs/generalise.md; 0 trains the plain head; otherwise 0)")
    g.add_argument("--acquisition", type=float, metavar="STRENGTH",
                   help="head mode: acquisition-style augmentation of the feature copies "
                        "(border crops, downscale, blur, noise, JPEG; no flip), strength in "
                        "[0, 1] (default 1.0 for the MobileNetV2 head preset, else 0: off; needs "
                        "--feature-augment-copies)")
    g.add_argument("--acquisition-contrast", type=float, metavar="STRENGTH",
                   help="head mode: random gamma / contrast / brightness of the same copies, "
                        "strength in [0, 1] (default 0: off)")
    g.add_argument("--source-balance", action="store_const", const=True,
                   help="head mode: every (class, source) cell weighs the same in the loss")
    g.add_argument("--adversarial", type=float, metavar="LAMBDA",
                   help="finetune: gradient-reversal weight of a class-conditional source branch "
                        "on the backbone's pooled features (the upper blocks learn to hide the "
                        "source; costs a fine-tune: ~20 s an epoch per 1000 films on a 2-core CPU; "
                        "hurt on cxr3 at 1.0, see docs/generalise.md); "
                        "default 0: off")
    g.add_argument("--no-adversarial-warmup", dest="adversarial_warmup", action="store_const",
                   const=False, help="--adversarial: the full weight from the first step "
                                     "(default: DANN's warm-up from 0)")
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
