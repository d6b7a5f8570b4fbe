"""The starting configuration of a run: one preset per model family x mode x task.

The CLI (``python -m cxrlib train`` without ``--config``) and the Training page both start from
:func:`run_preset` and apply their own flags or widgets over it, so a family and a mode mean the
same run in both:

* ``head``: the backbone frozen, the published head trained on cached features
  (``mobilenetv2``, ``tiny``); MobileNetV2's with :data:`HEAD_REMEDY`, the shortcut remedy
  the leave-one-source-out measurement supports;
* ``recipe``: the validated recipe, chosen on validation: MobileNetV2's fine-tune recipe
  (:meth:`TrainConfig.finetune_recipe` at :data:`FINETUNE_RECIPE_SIZE` px) or the small CNN's
  (:meth:`TrainConfig.small_cnn_recipe`, :data:`SMALL_CNN_RECIPE_ARCH` blocks at
  :data:`SMALL_CNN_RECIPE_SIZE` px);
* ``finetune``: every layer trained with the published settings.

Preprocessing follows the family's published pipeline (white balance for MobileNetV2, CLAHE for
the small CNN). The ``tiny`` family is for demos and tests: grey films as they are at 96 px (its
fixed standardisation is measured on unprocessed films; white balance would put its features
off-scale) and 10 epochs.
"""
from __future__ import annotations

from cxrlib.core.config.preprocess import PreprocessConfig
from cxrlib.core.config.run import SMALL_CNN_RECIPE_ARCH, DataConfig, ModelConfig, RunConfig, SplitConfig
from cxrlib.core.config.train import FINETUNE_RECIPE_SIZE, SMALL_CNN_RECIPE_SIZE, TrainConfig

PRESET_MODES = {"mobilenetv2": ("head", "recipe", "finetune"), "tiny": ("head", "finetune"),
                "small_cnn": ("recipe", "finetune")}
"""The modes of each family, its default first."""

TINY_EPOCHS = 10

HEAD_REMEDY = {"feature_augment_copies": 2, "augment": False, "acquisition": 1.0}
"""The shortcut remedy a MobileNetV2 head run starts with (its preset and the Home page's quick
run): 2 acquisition-style feature copies of every training film, no rotation or flip.

The rule (docs/generalise.md, "Which remedy the presets use"): a remedy enters a preset only if,
with the preset's own head, its sweep candidate raised leave-one-source-out (LOSO) accuracy over
the baseline with a 95 % paired-bootstrap interval above 0 (:func:`cxrlib.sweep.gains.loso_gain`)
and its validation accuracy is at most :data:`REMEDY_VAL_TOLERANCE` below the baseline's (the
test split is never part of a choice); of several, the largest gain, a tie (within 0.005) going
to the one with fewer settings. Measured on cxr3 (sweep ``generalise-grid16``, published head):
acquisition +0.051 [0.036, 0.066], validation accuracy 0.989 against 0.983 (the test split, read
afterwards as a check only: 0.944 against 0.931); acquisition + contrast +0.051 [0.036, 0.066]
(a tie, one setting more); source balance +0.025 [0.016, 0.033]; Nyul standardisation -0.002 [-0.019, 0.015] (no). With
a one-layer head the acquisition copies gained too (+0.042 [0.026, 0.057]), so the quick run's
small head takes them as well. ``--feature-augment-copies 0`` (CLI) trains without them. The
fine-tune recipe has none: the remedies are head-mode settings.
"""

REMEDY_VAL_TOLERANCE = 0.01
"""Validation accuracy a remedy may cost against the baseline and still enter a preset (about 2
of the 180 validation films of cxr3)."""


def has_head_remedy(family: str, mode: str) -> bool:
    """Whether a family's preset in ``mode`` trains with :data:`HEAD_REMEDY` (MobileNetV2's head
    only: its augmentation is the remedy's, whatever a form's rotation box says)."""
    return (family, mode) == ("mobilenetv2", "head")


def preset_mode(family: str, mode: str | None = None, *, published: bool = False) -> str:
    """The preset mode of a family asked to train in ``mode`` (``head`` / ``finetune``, the
    CLI's ``--mode``): the small CNN and a MobileNetV2 fine-tune start from their recipes
    unless ``published`` (the published settings) is asked for."""
    if family == "small_cnn":
        return "finetune" if published else "recipe"
    if mode == "finetune":
        return "finetune" if published or family != "mobilenetv2" else "recipe"
    return "head"


def run_preset(family: str = "mobilenetv2", mode: str | None = None, task: str = "3class", *,
               seed: int = 42, augment: bool | None = None) -> RunConfig:
    """The run a family trains in a mode for a task, before any flag or widget changes it.

    Args:
        family: ``mobilenetv2``, ``small_cnn`` or ``tiny``.
        mode: one of ``PRESET_MODES[family]`` (default: the first).
        task: ``3class`` or ``binary``.
        seed: the split's and the training's seed.
        augment: a recipe's augmentation when not its own (given to the recipe, so that its
            own rotation and flip settings survive: the small CNN recipe trains without
            augmentation, and with it rotates without a flip).

    Raises:
        ValueError: an unknown family, or a mode the family has not.
    """
    if family not in PRESET_MODES:
        raise ValueError(f"unknown model family {family!r}; choose from {sorted(PRESET_MODES)}")
    mode = mode or PRESET_MODES[family][0]
    if mode not in PRESET_MODES[family]:
        raise ValueError(f"{family} has no {mode!r} mode; choose from {PRESET_MODES[family]}")
    cnn, recipe = family == "small_cnn", mode == "recipe"
    extra = {} if augment is None else {"augment": augment}
    if family == "tiny":
        preprocess = PreprocessConfig(steps=(), size=96)
    else:
        preprocess = PreprocessConfig.published_clahe() if cnn else PreprocessConfig.published_mobilenet()
    if recipe:
        preprocess = preprocess.replace(size=SMALL_CNN_RECIPE_SIZE if cnn else FINETUNE_RECIPE_SIZE)
        recipe_of = TrainConfig.small_cnn_recipe if cnn else TrainConfig.finetune_recipe
        train = recipe_of(seed=seed, **extra)
    else:
        remedy = HEAD_REMEDY if has_head_remedy(family, mode) else {}
        train = TrainConfig(mode=mode, seed=seed, **{**remedy, **extra},
                            **({"epochs": TINY_EPOCHS} if family == "tiny" else {}))
    model = ModelConfig(family=family, **({"cnn_arch": SMALL_CNN_RECIPE_ARCH} if cnn and recipe else {}))
    return RunConfig(data=DataConfig(task=task), preprocess=preprocess, model=model,
                     split=SplitConfig(seed=seed), train=train)
