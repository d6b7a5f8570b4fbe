"""The Training page's form: model family, mode, split and training widgets, read into a
:class:`RunConfig` that starts from the family's preset (:func:`cxrlib.core.config.run_preset`, the
CLI's too)."""
from __future__ import annotations

import streamlit as st

from cxrlib.core.config import (CNN_ARCHS, PRESET_MODES, SMALL_CNN_RECIPE_ARCH, DataConfig,
                                PreprocessConfig, RunConfig, run_preset)
from cxrlib.core.config.presets import TINY_EPOCHS, has_head_remedy


MAX_EPOCHS = 200
"""The most epochs the Training page accepts."""

FAMILY_LABELS = {"mobilenetv2": "MobileNetV2 (ImageNet transfer learning, published 3-class)",
                 "small_cnn": "Small CNN (the CLAHE binary pipeline)",
                 "tiny": "Tiny (a few-kilobyte backbone: seconds on a CPU, for demos)"}


def training_ui(data: DataConfig, preprocess: PreprocessConfig | None) -> RunConfig | None:
    """Widgets for a training run; returns its :class:`RunConfig` (``None`` when invalid)."""
    left, right = st.columns(2)
    family = left.selectbox("Model family", list(FAMILY_LABELS), format_func=FAMILY_LABELS.get,
                            key="tr_family", persist_state="session")
    modes = list(PRESET_MODES[family])
    cnn = family == "small_cnn"
    labels = {"head": "head only (backbone frozen, fast)",
              "recipe": "validated recipe (about 4 min on a CPU)" if cnn
              else "fine-tune recipe (from the head, top blocks)",
              "finetune": "your settings (published defaults)" if cnn
              else "fine-tune all layers (published)"}
    mode = left.radio("Mode", modes, horizontal=True, key=f"tr_mode_{family}",
                      persist_state="session", format_func=labels.get,
                      help="The small CNN's recipe: BatchNorm + global average pooling blocks at "
                           "128 px, a peak learning rate of 2e-3 with a warm-up and cosine decay "
                           "over 20 epochs, early stopping, no augmentation "
                           "(TrainConfig.small_cnn_recipe, chosen on validation)." if cnn else
                           "The recipe starts from the trained head and fine-tunes from "
                           "block_13 up at 288 px with a warm-up and cosine decay, small "
                           "rotations and no flip "
                           "(TrainConfig.finetune_recipe, chosen on validation); its epochs and "
                           "learning rate are the recipe's.")
    recipe = mode == "recipe"
    if recipe:
        left.caption("The recipe sets its own epochs, learning rate and early stopping; those "
                     "widgets apply to the other modes.")
    weights, arch = "imagenet", SMALL_CNN_RECIPE_ARCH if cnn and recipe else "published"
    if cnn and not recipe:
        arch = left.radio("Blocks", CNN_ARCHS, horizontal=True, key="tr_cnn_arch",
                          persist_state="session",
                          format_func={"published": "published (conv, max-pool, flatten)",
                                       "bn_gap": "BatchNorm + global average pooling"}.get,
                          help="BatchNorm after each convolution and global average pooling "
                               "instead of the flatten: a third of the weights; it beat the "
                               "published blocks on validation (see the README's figures).")
    if family == "mobilenetv2":
        weights = left.radio("Backbone weights", ["imagenet", "random"], horizontal=True,
                             key="tr_weights", persist_state="session")
    split = left.radio("Split", ["grouped", "random"], horizontal=True, key="tr_split",
                       persist_state="session",
                       format_func={"grouped": "grouped by patient (recommended)",
                                    "random": "random by image (published)"}.get,
                       help="A random split can put one patient's films on both sides.")
    test_f = left.slider("Test share", 0.1, 0.4, 0.2, 0.05, key="tr_test", persist_state="session")
    val_f = left.slider("Validation share (0: the test split doubles as validation, as published)",
                        0.0, 0.3, 0.1, 0.05, key="tr_val", persist_state="session")
    # No max_value: the browser kept the last valid value of an out-of-range entry (it only
    # turned red) and training went on with it; the check below says so and refuses instead.
    epochs = right.number_input(f"Epochs (maximum, at most {MAX_EPOCHS})", min_value=1,
                                value=TINY_EPOCHS if family == "tiny" else 50,
                                key=f"tr_epochs_{family}", persist_state="session")
    too_many = epochs > MAX_EPOCHS and not recipe  # the recipe sets its own epochs
    if too_many:
        right.error(f"At most {MAX_EPOCHS} epochs: {int(epochs)} is too many. Lower it to start "
                    "training.", icon=":material/block:")
    batch = right.select_slider("Batch size", [4, 8, 16, 32, 64, 128], 16, key="tr_batch",
                                persist_state="session")
    lr = right.select_slider("Learning rate", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2], 1e-3,
                             format_func=lambda v: f"{v:g}", key="tr_lr", persist_state="session")
    if cnn and recipe:
        augment = False
        right.caption("The recipe trains without augmentation: small rotations scored worse on "
                      "validation.")
    elif mode == "head":  # the head trains on cached features: no rotation or flip can apply
        augment = None
        right.caption("Head mode trains on each film and 2 acquisition-style copies of it (no "
                      "rotation or flip): the remedy leave-one-source-out supports "
                      "(docs/generalise.md)." if has_head_remedy(family, mode) else
                      "Head mode trains on the backbone's cached features of each film: no "
                      "rotation or flip (fine-tuning offers them).")
    else:
        augment = right.checkbox("Augment: random rotation" + (" (no flip)" if recipe
                                                               else " and horizontal flip"),
                                 True, key="tr_aug", persist_state="session")
    patience = right.number_input("Early stopping patience (0 = none)", 0, 50, 0, key="tr_es",
                                  persist_state="session")
    seed = right.number_input("Seed", 0, 2**31 - 1, 42, key="tr_seed", persist_state="session")
    if too_many:  # every widget drawn first: the page keeps its layout
        return None
    try:
        # the family's preset (cxrlib.core.config.run_preset, the CLI's too), then the widgets
        preset = run_preset(family, mode, data.task, seed=int(seed),
                            augment=augment if recipe and not cnn else None)
        if recipe:
            train = preset.train.replace(batch_size=int(batch))
        else:
            # head mode (augment None) keeps its preset's: feature copies, or none at all
            train = preset.train.replace(epochs=int(epochs), batch_size=int(batch),
                                         learning_rate=float(lr),
                                         augment=preset.train.augment if augment is None
                                         else augment,
                                         early_stopping=int(patience) or None)
        return preset.replace(
            data=data, preprocess=preprocess or preset.preprocess,
            model=preset.model.replace(weights=weights, cnn_arch=arch),
            split=preset.split.replace(kind=split, test_fraction=test_f, val_fraction=val_f),
            train=train)
    except ValueError as exc:
        st.error(f"These settings are not valid: {exc}")
        return None


def left_out_of_training(ds, cfg) -> list[dict]:
    """Films of ``ds`` that failed to decode when ``cfg``'s preprocessing cached them, so training
    left them out (``rel_path``, ``reason``); a header scan cannot see these (corrupt JPEG data)."""
    from cxrlib.preprocessing.tensor_cache import cached_problems  # noqa: PLC0415

    return cached_problems(ds, cfg.preprocess) or []


def trainable_error(ds, cfg) -> str | None:
    """Why this dataset cannot train ``cfg``'s task (a class with too few films or patients),
    or None (:func:`cxrlib.data.checks.check_trainable`, the check the CLI's train makes)."""
    from cxrlib.data.checks import TooFewFilms, check_trainable  # noqa: PLC0415

    try:
        check_trainable(ds, cfg.data.task, cfg.split.kind)
    except TooFewFilms as exc:
        return str(exc)
    return None
