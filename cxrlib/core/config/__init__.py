"""Frozen configuration dataclasses, one per pipeline step, with the published defaults.

A run's identity is :func:`config_hash` of its configs plus the dataset fingerprint
(:func:`run_id`). The configs live in :mod:`.base` (the common base and the
hash), :mod:`.preprocess`, :mod:`.train` and :mod:`.run` (data, model, split, the whole run, and
the explanation settings); this package is their one namespace.
"""
from cxrlib.core.config.base import config_hash
from cxrlib.core.config.preprocess import (LUNG_CROP_MARGIN, NYUL_PERCENTILES, PREPROCESS_STEPS,
                                           STANDARDISE_METHODS, PreprocessConfig)
from cxrlib.core.config.presets import PRESET_MODES, preset_mode, run_preset
from cxrlib.core.config.run import (CNN_ARCHS, HEAD_FAMILIES, SMALL_CNN_RECIPE_ARCH, DataConfig,
                                    ExplainConfig, ModelConfig, RunConfig, SplitConfig, run_id)
from cxrlib.core.config.train import (FINETUNE_RECIPE_SIZE, SCHEDULES, SMALL_CNN_RECIPE_SIZE,
                                      TTA_MODES, TrainConfig)

__all__ = ["CNN_ARCHS", "PRESET_MODES", "preset_mode", "run_preset", "FINETUNE_RECIPE_SIZE", "HEAD_FAMILIES", "LUNG_CROP_MARGIN", "NYUL_PERCENTILES", "PREPROCESS_STEPS",
           "STANDARDISE_METHODS",
           "SCHEDULES", "SMALL_CNN_RECIPE_ARCH", "SMALL_CNN_RECIPE_SIZE", "TTA_MODES", "DataConfig", "ExplainConfig", "ModelConfig", "PreprocessConfig", "RunConfig",
           "SplitConfig", "TrainConfig", "config_hash", "run_id"]
