"""How a model is fitted: :class:`TrainConfig`, with the published defaults and the fine-tune recipe."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cxrlib.core.config.base import _Config, added_field

FINETUNE_RECIPE_SIZE = 288
SMALL_CNN_RECIPE_SIZE = 128


SCHEDULES = ("plateau", "cosine")


TTA_MODES = ("none", "shift", "shift_scale")


_FINETUNE_ONLY = ("init_from_head", "finetune_from", "freeze_batchnorm", "schedule",
                  "warmup_epochs")
_HEAD_ONLY = ("acquisition", "acquisition_contrast", "source_balance")


@dataclass(frozen=True)
class TrainConfig(_Config):
    """How a model is fitted. Defaults: the published recipe; :meth:`finetune_recipe` is the
    validated fine-tune recipe (the default of ``python -m cxrlib train --mode finetune``).

    Attributes:
        mode: ``"head"`` (backbone frozen, its features cached: the fast CPU path) or
            ``"finetune"`` (backbone layers trainable, as published).
        epochs: maximum epochs (published 50).
        batch_size: published 16. Under several replicas (GPUs, workers) it is the global batch,
            split evenly between them.
        learning_rate: Adam learning rate (Keras default 1e-3); with ``schedule="cosine"`` the
            peak rate, reached after the warm-up.
        augment: random rotation + horizontal flip (fine-tune mode; in head mode see
            ``feature_augment_copies``).
        rotation: max rotation as a fraction of a full turn (Keras ``RandomRotation`` factor).
        hflip: random horizontal flip.
        feature_augment_copies: head mode only: extra augmented copies of each training image
            whose backbone features are cached too (0 = no augmentation in head mode).
        early_stopping: patience in epochs on validation loss, or ``None`` for none.
        init_from_head: fine-tune mode: start from the trained head of the matching head run.
        finetune_from: fine-tune mode, MobileNetV2 / tiny: name of the first layer that trains
            (e.g. ``"block_13_expand"``); every layer before it keeps its weights (a learning
            rate of 0: the discriminative rate in its simplest form, and half the backward
            pass on a CPU). ``None``: every layer trains (published).
        freeze_batchnorm: fine-tune mode: BatchNormalization layers stay in inference mode
            (moving statistics and scale/offset frozen), the usual rule when fine-tuning a
            pretrained network on small batches. Published: False (they train).
        schedule: fine-tune mode: ``"plateau"`` (ReduceLROnPlateau, factor 0.3, patience 2:
            published) or ``"cosine"`` (linear warm-up over ``warmup_epochs``, then cosine
            decay to 0 at ``epochs``, set every step).
        warmup_epochs: fine-tune mode, cosine schedule: epochs of linear warm-up from 0.
        tta: test-time augmentation of the run's predictions: ``"none"``, ``"shift"`` (the
            film and 4 copies shifted by 4 % of the side) or ``"shift_scale"`` (those and 2
            copies scaled by 0.92 and 1.08); the probabilities are averaged. No flips (a
            chest film is not left-right symmetric). See :mod:`cxrlib.models.tta`.
        seed: seeds weight initialisation, shuffling and augmentation.
        acquisition: head mode: strength in [0, 1] of the acquisition-style augmentation of the
            ``feature_augment_copies`` (random border crops, downscale-then-upscale, blur,
            noise, JPEG re-encoding; no flip: :mod:`cxrlib.preprocessing.acquisition`); 0 = off.
        acquisition_contrast: head mode: strength in [0, 1] of its random gamma, contrast and
            brightness (the same copies); 0 = off.
        source_balance: head mode: every (class, source) cell of the training rows weighs the
            same in the loss (:mod:`cxrlib.training.source_balance`).
        adversarial: fine-tune mode: the gradient-reversal weight (lambda) of a class-conditional
            source branch on the backbone's pooled features, trained with the model so that the
            trainable upper blocks learn to hide the film's source (Ganin & Lempitsky 2015;
            class-conditional as in CDANN and Trivedi et al. 2022, who report up to +0.13 AUC at
            held-out hospitals: :mod:`cxrlib.training.adversary`); 0 = off. It costs a fine-tune:
            the backbone's forward pass and the upper blocks' backward pass every epoch (on the
            2-core CPU 15-20 s an epoch for 927 films at 224 px, against ~0.3 s for a head
            epoch on cached features; the branch adds little). Measured on one cxr3 fold at
            weight 1 it HURT: held-out 0.41 against 0.55 plain (docs/generalise.md).
        adversarial_warmup: with ``adversarial``: DANN's schedule, the weight rising from 0 to
            ``adversarial`` as ``2 / (1 + exp(-10 p)) - 1`` over the training's progress ``p``;
            False: the full weight from the first step.
    """

    mode: str = "head"
    epochs: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-3
    augment: bool = True
    rotation: float = 0.05
    hflip: bool = True
    feature_augment_copies: int = 0
    early_stopping: int | None = None
    init_from_head: bool = False
    finetune_from: str | None = None
    freeze_batchnorm: bool = False
    schedule: str = "plateau"
    warmup_epochs: int = 0
    tta: str = "none"
    seed: int = 42
    acquisition: float = added_field(0.0)
    acquisition_contrast: float = added_field(0.0)
    source_balance: bool = added_field(False)
    adversarial: float = added_field(0.0)
    adversarial_warmup: bool = added_field(True)

    def as_finetune(self, **changes) -> TrainConfig:
        """This config as a fine-tune, then ``changes``: the head-only remedies (acquisition
        copies, source balancing) are left behind, as the feature copies are, where a fine-tune
        asked for with them is refused."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return self.replace(**{"mode": "finetune", **{n: defaults[n] for n in _HEAD_ONLY},
                               **changes})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 <= self.acquisition <= 1 and 0 <= self.acquisition_contrast <= 1):
            raise ValueError("acquisition and acquisition_contrast (augmentation strengths) must be in [0, 1]")
        if self.mode != "head" and (self.acquisition or self.acquisition_contrast or self.source_balance):
            raise ValueError("acquisition augmentation and source balancing are head-mode "
                             "remedies (cached feature copies, weighted head loss); not in finetune")
        if self.adversarial < 0:
            raise ValueError(f"adversarial (the gradient-reversal weight) must be >= 0, not {self.adversarial}")
        if self.adversarial and self.mode == "head":
            raise ValueError("adversarial fine-tuning trains the backbone's upper blocks: it needs "
                             "finetune mode (the head-only branch is measured by the audit)")
        if not self.adversarial:  # no branch, no schedule: one run id
            object.__setattr__(self, "adversarial_warmup", True)
        if self.mode == "head" and self.feature_augment_copies == 0:  # no copies to augment
            object.__setattr__(self, "acquisition", 0.0)
            object.__setattr__(self, "acquisition_contrast", 0.0)
        if self.mode not in ("head", "finetune"):
            raise ValueError("mode must be 'head' or 'finetune'")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and learning_rate > 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}")
        if self.tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {TTA_MODES}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError("warmup_epochs must be in [0, epochs)")
        if self.feature_augment_copies < 0 or self.seed < 0 or (self.early_stopping or 0) < 0:
            raise ValueError("feature_augment_copies, seed and early_stopping must be >= 0")
        if not 0 <= self.rotation <= 0.5:
            raise ValueError("rotation must be in [0, 0.5] (a fraction of a full turn)")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        if self.mode == "head":
            for name in _FINETUNE_ONLY:
                object.__setattr__(self, name, defaults[name])
        elif not self.init_from_head:  # cached-feature copies: head mode, or the head it starts from
            object.__setattr__(self, "feature_augment_copies", defaults["feature_augment_copies"])
        # Augmentation settings that augment nothing change no pixel, so they are canonical
        # (one run id): head mode without feature copies keeps the defaults; no rotation and no
        # flip is no augmentation.
        if self.mode == "head" and self.feature_augment_copies == 0:
            no_effect, augment = True, defaults["augment"]
        else:
            no_effect, augment = not (self.augment and (self.rotation > 0 or self.hflip)), False
        if no_effect:
            object.__setattr__(self, "augment", augment)
            object.__setattr__(self, "rotation", defaults["rotation"])
            object.__setattr__(self, "hflip", defaults["hflip"])

    @classmethod
    def finetune_recipe(cls, **overrides: Any) -> "TrainConfig":
        """The fine-tune recipe chosen on the grouped VALIDATION split of cxr3 (bench/train.py).

        Start from the trained head; train from ``block_13_expand`` up (the lower blocks keep
        their ImageNet weights) with BatchNorm in inference mode at a peak rate of 1e-4, 1 epoch
        of warm-up then cosine decay, early stopping on validation loss (patience 3, best
        weights kept), augmentation by small rotations only (no flip: a chest film is not
        left-right symmetric, the heart is on the left), no test-time augmentation; with
        :data:`FINETUNE_RECIPE_SIZE` px input. On validation (180 films) it beat head mode, the
        same recipe with the published horizontal flip (val loss 0.041 vs 0.048) and at 224 px,
        with and without TTA; a validation split this small cannot separate such close recipes
        reliably (see the README's measured figures). ``overrides`` replace any field.
        """
        recipe = dict(mode="finetune", epochs=10, learning_rate=1e-4, hflip=False,
                      init_from_head=True, finetune_from="block_13_expand", freeze_batchnorm=True,
                      schedule="cosine", warmup_epochs=1, early_stopping=3)
        return cls(**{**recipe, **overrides})

    @classmethod
    def small_cnn_recipe(cls, **overrides: Any) -> "TrainConfig":
        """How the small CNN recipe trains, chosen on the random-split VALIDATION films of cxr3's
        COVID-19 vs Normal task (bench/train.py): with the blocks
        :data:`cxrlib.core.config.SMALL_CNN_RECIPE_ARCH` (``ModelConfig.cnn_arch``) at :data:`SMALL_CNN_RECIPE_SIZE` px, Adam at a peak rate of
        2e-3 after 1 epoch of warm-up, cosine decay over 20 epochs, early stopping on
        validation loss (patience 5, best weights kept), no augmentation (small rotations
        scored worse on validation). About 4 minutes on the 2-core CPU. ``overrides`` replace
        any field."""
        recipe = dict(mode="finetune", epochs=20, learning_rate=2e-3, schedule="cosine",
                      warmup_epochs=1, early_stopping=5, augment=False, hflip=False)
        return cls(**{**recipe, **overrides})

