"""How a decoded film becomes a model-sized grey image: :class:`PreprocessConfig`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cxrlib.core.config.base import _Config, added_field

PREPROCESS_STEPS = ("white_balance", "clahe", "gamma", "lung_crop")

STANDARDISE_METHODS = ("none", "nyul")
"""Intensity standardisation of the model-sized film (:mod:`cxrlib.preprocessing.standardise`)."""

NYUL_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 60.0, 70.0, 80.0, 90.0, 99.0)
"""Nyúl–Udupa landmarks: the percentiles of each film mapped onto the learned standard scale."""


# Margin of the lung-crop step, a fraction of the lungs' box on each side. Chosen on the
# segmenter's VALIDATION films (bench/lung_crop.py): the smallest margin at which the crop made
# from the predicted mask keeps the human-annotated lungs of nearly every film.
LUNG_CROP_MARGIN = 0.05


@dataclass(frozen=True)
class PreprocessConfig(_Config):
    """How a decoded film becomes a model-sized grey image.

    Order (chosen on purpose, documented in the README): ``white_balance`` runs per channel on the
    decoded film at native resolution, as published; then the film is converted to grey; CLAHE
    and gamma run on the grey film in the given order at native resolution; then ``lung_crop``
    cuts the film to the box of both lungs plus ``lung_crop_margin`` (the box comes from the
    learned lung segmenter run on the decoded film); finally it is resized to ``size`` x ``size``
    with ``INTER_AREA``. The model sees the grey film repeated on 3 channels and scaled to [0, 1].

    Attributes:
        steps: ordered subset of ``("white_balance", "clahe", "gamma", "lung_crop")``. White
            balance, when present, always runs first (it is defined per colour channel) and the
            lung crop last, just before the resize (it only chooses which pixels are resized).
            The config is canonical: white balance is listed first and the lung crop last, a
            gamma of 1.0 drops its step, and the settings of steps that do not run take their
            defaults, so configs that give the same pixels are equal and hash alike.
        wb_percentile: white-balance percentile ``perc``: channel values at ``perc`` and
            ``100 - perc`` percent map to 0 and 255 (published 0.05).
        clahe_clip_limit: CLAHE clip limit (published 2.0).
        clahe_tile_grid: CLAHE tiles per side (published 8, i.e. 8x8).
        gamma: output = 255 * (input / 255) ** gamma; 1.0 is the identity.
        lung_crop_margin: lung crop: added on every side of the lungs' box, as a fraction of
            the box's own width (left, right) and height (top, bottom); see
            :data:`LUNG_CROP_MARGIN` for how the default was chosen.
        lung_model: lung crop: the lung segmenter whose masks give the box, as
            :func:`cxrlib.lungs.network.asset_digest` (the installed one's: pass
            ``lung_model=asset_digest()``). Required with the crop: the config takes it as a
            value and never reads a weights file. Part of the config because the crop, and so
            every pixel the model sees, depends on those weights: a retrained segmenter is a
            new run and new caches.
        size: side of the square model input in pixels.
        standardise: ``"none"`` or ``"nyul"``: after the resize, each film's intensity
            landmarks (:data:`NYUL_PERCENTILES`) are mapped piecewise-linearly onto
            ``standard_scale`` (Nyúl & Udupa 1999; :mod:`cxrlib.preprocessing.standardise`).
        standard_scale: the learned standard landmarks (one per percentile), learned on the
            run's TRAINING rows only (:func:`cxrlib.training.standardisation.resolve_standardisation`)
            and so stored with the run in its config; empty until learned.
    """

    steps: tuple[str, ...] = ("white_balance",)
    wb_percentile: float = 0.05
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    gamma: float = 1.0
    lung_crop_margin: float = LUNG_CROP_MARGIN
    lung_model: str = ""
    size: int = 224
    standardise: str = added_field("none")
    standard_scale: tuple[float, ...] = added_field(())

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [s for s in self.steps if s not in PREPROCESS_STEPS]
        if bad:
            raise ValueError(f"unknown preprocessing steps {bad}; choose from {PREPROCESS_STEPS}")
        if len(set(self.steps)) != len(self.steps):
            raise ValueError(f"repeated preprocessing step in {self.steps}")
        if not 0 <= self.wb_percentile < 50:
            raise ValueError("wb_percentile must be in [0, 50)")
        if self.clahe_clip_limit <= 0 or self.clahe_tile_grid < 1:
            raise ValueError("CLAHE clip limit must be > 0 and tile grid >= 1")
        if self.gamma <= 0 or self.size < 8:
            raise ValueError("gamma must be > 0 and size >= 8")
        if not 0 <= self.lung_crop_margin <= 1:
            raise ValueError("lung_crop_margin must be in [0, 1]")
        if self.standardise not in STANDARDISE_METHODS:
            raise ValueError(f"standardise must be one of {STANDARDISE_METHODS}, not {self.standardise!r}")
        if self.standardise == "none":  # a scale that maps nothing: one run id
            object.__setattr__(self, "standard_scale", ())
        scale = tuple(self.standard_scale)
        if scale and (len(scale) != len(NYUL_PERCENTILES) or any(b < a for a, b in zip(scale, scale[1:]))
                      or not 0 <= scale[0] <= scale[-1] <= 255):
            raise ValueError(f"standard_scale must be {len(NYUL_PERCENTILES)} non-decreasing "
                             "values in [0, 255] (learned on the training rows)")
        self._canonicalise()

    def _canonicalise(self) -> None:
        """One config per set of pixels, so equal preprocessing gives one run id.

        White balance runs first whatever the listed order (it is defined per colour channel),
        so it is listed first; the lung crop runs last (just before the resize), so it is listed
        last; a gamma of 1.0 is the identity, so its step is dropped; and the settings of a step
        that does not run are set to their defaults (they change nothing).
        """
        steps = tuple(self.steps)
        if "white_balance" in steps:
            steps = ("white_balance", *(s for s in steps if s != "white_balance"))
        if "lung_crop" in steps:
            steps = (*(s for s in steps if s != "lung_crop"), "lung_crop")
        if float(self.gamma) == 1.0:
            steps = tuple(s for s in steps if s != "gamma")
        object.__setattr__(self, "steps", steps)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        unused = {"white_balance": ("wb_percentile",), "clahe": ("clahe_clip_limit", "clahe_tile_grid"),
                  "gamma": ("gamma",), "lung_crop": ("lung_crop_margin", "lung_model")}
        for step, names in unused.items():
            if step not in steps:
                for name in names:
                    object.__setattr__(self, name, defaults[name])
        if "lung_crop" in steps and not self.lung_model:
            raise ValueError("the lung crop needs lung_model, the digest of the lung segmenter "
                             "it crops with: lung_model=cxrlib.lungs.network.asset_digest()")

    @classmethod
    def published_mobilenet(cls) -> "PreprocessConfig":
        """White balance (perc 0.05) -> grey -> 224 px: the MobileNetV2 pipeline."""
        return cls(steps=("white_balance",))

    @classmethod
    def published_clahe(cls) -> "PreprocessConfig":
        """CLAHE 2.0 / 8x8 -> 224 px: the small-CNN pipeline."""
        return cls(steps=("clahe",))

