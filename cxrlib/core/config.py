"""Frozen configuration dataclasses, one per pipeline step, with the published defaults.

A run's identity is :func:`config_hash` of its configs plus the dataset fingerprint, so every
field here that changes a result must be a field (not a global), and fields must be plain JSON
values (str, int, float, bool, None, tuples of those).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

PREPROCESS_STEPS = ("white_balance", "clahe", "gamma")


class _Config:
    """Mixin: dict round-trip and a stable content hash."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(_as_declared(f.type, getattr(self, f.name)))
                for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Build from a dict; unknown keys raise, list values become tuples."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def hash(self) -> str:
        return config_hash(self)


def _as_declared(declared: Any, value: Any) -> Any:
    """Ints in float fields become floats, so ``0`` and ``0.0`` give the same run id."""
    if declared in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if str(declared).startswith("tuple[float") and isinstance(value, tuple):
        return tuple(float(v) for v in value)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def config_hash(*parts: Any, length: int = 16) -> str:
    """Stable hex digest of configs (dataclasses with ``to_dict``), dicts and strings."""
    payload = [p.to_dict() if hasattr(p, "to_dict") else p for p in parts]
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True)
class DataConfig(_Config):
    """Which images a run uses.

    Attributes:
        root: dataset folder (any layout :func:`cxrlib.data.datasets.scan_dataset` reads).
        task: ``"3class"`` (COVID-19 / Normal / Viral Pneumonia) or ``"binary"`` (COVID-19 vs Normal).
        bacterial: Kermany's bacterial pneumonia films: ``"exclude"`` or ``"class"`` (own class,
            then ignored by both tasks, but counted and shown by the dataset page).
    """

    root: str = "data"
    task: str = "3class"
    bacterial: str = "exclude"


@dataclass(frozen=True)
class PreprocessConfig(_Config):
    """How a decoded film becomes a model-sized grey image.

    Order (chosen on purpose, documented in the README): ``white_balance`` runs per channel on the
    decoded film at native resolution, as published; then the film is converted to grey; the
    other ``steps`` run on the grey film in the given order at native resolution; finally it is
    resized to ``size`` x ``size`` with ``INTER_AREA``. The model sees the grey film repeated on
    3 channels and scaled to [0, 1].

    Attributes:
        steps: ordered subset of ``("white_balance", "clahe", "gamma")``. White balance, when
            present, always runs first (it is defined per colour channel). The config is
            canonical: white balance is listed first, a gamma of 1.0 drops its step, and the
            settings of steps that do not run take their defaults, so configs that give the
            same pixels are equal and hash alike.
        wb_percentile: white-balance percentile ``perc``: channel values at ``perc`` and
            ``100 - perc`` percent map to 0 and 255 (published 0.05).
        clahe_clip_limit: CLAHE clip limit (published 2.0).
        clahe_tile_grid: CLAHE tiles per side (published 8, i.e. 8x8).
        gamma: output = 255 * (input / 255) ** gamma; 1.0 is the identity.
        size: side of the square model input in pixels.
    """

    steps: tuple[str, ...] = ("white_balance",)
    wb_percentile: float = 0.05
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    gamma: float = 1.0
    size: int = 224

    def __post_init__(self) -> None:
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
        self._canonicalise()

    def _canonicalise(self) -> None:
        """One config per set of pixels, so equal preprocessing gives one run id.

        White balance runs first whatever the listed order (it is defined per colour channel),
        so it is listed first; a gamma of 1.0 is the identity, so its step is dropped; and the
        settings of a step that does not run are set to their defaults (they change nothing).
        """
        steps = tuple(self.steps)
        if "white_balance" in steps:
            steps = ("white_balance", *(s for s in steps if s != "white_balance"))
        if float(self.gamma) == 1.0:
            steps = tuple(s for s in steps if s != "gamma")
        object.__setattr__(self, "steps", steps)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        unused = {"white_balance": ("wb_percentile",), "clahe": ("clahe_clip_limit", "clahe_tile_grid"),
                  "gamma": ("gamma",)}
        for step, names in unused.items():
            if step not in steps:
                for name in names:
                    object.__setattr__(self, name, defaults[name])

    @classmethod
    def published_mobilenet(cls) -> "PreprocessConfig":
        """White balance (perc 0.05) -> grey -> 224 px: the MobileNetV2 pipeline."""
        return cls(steps=("white_balance",))

    @classmethod
    def published_clahe(cls) -> "PreprocessConfig":
        """CLAHE 2.0 / 8x8 -> 224 px: the small-CNN pipeline."""
        return cls(steps=("clahe",))


@dataclass(frozen=True)
class ModelConfig(_Config):
    """Model family and architecture.

    Attributes:
        family: ``"mobilenetv2"`` (ImageNet transfer learning), ``"small_cnn"`` (the CLAHE
            pipeline's CNN) or ``"tiny"`` (a few-kilobyte backbone for tests and demos).
        weights: ``"imagenet"`` or ``"random"`` (MobileNetV2 only; an explicit user choice).
        head_units: dense layers of the MobileNetV2 head (published 512, 128, 64, 32).
        head_dropout: dropout after each head layer (published 0.7, 0.5, 0.3, 0.3).
        cnn_filters: filters of the small CNN's conv + max-pool blocks.
        cnn_dense: units of the small CNN's dense layer before the output.
    """

    family: str = "mobilenetv2"
    weights: str = "imagenet"
    head_units: tuple[int, ...] = (512, 128, 64, 32)
    head_dropout: tuple[float, ...] = (0.7, 0.5, 0.3, 0.3)
    cnn_filters: tuple[int, ...] = (32, 64, 128, 128)
    cnn_dense: int = 64

    def __post_init__(self) -> None:
        if self.family not in ("mobilenetv2", "small_cnn", "tiny"):
            raise ValueError(f"unknown model family {self.family!r}")
        if self.weights not in ("imagenet", "random"):
            raise ValueError("weights must be 'imagenet' or 'random'")
        if len(self.head_units) != len(self.head_dropout):
            raise ValueError("head_units and head_dropout must have the same length")


@dataclass(frozen=True)
class SplitConfig(_Config):
    """How images are divided into train / validation / test.

    Attributes:
        kind: ``"grouped"`` (default: stratified by class and grouped by ``group_id``, so no
            patient or duplicate group is on two sides), ``"random"`` (published random
            stratified split, images independent) .
        test_fraction: share of the data in the test split (published 0.2).
        val_fraction: share in the validation split (0.1 for the published 80/10/10; with 0
            the test split doubles as validation, as in the published 80/20, and the run
            records that its test metrics are then optimistic).
        seed: the split is a pure function of the manifest and this seed.
        group_duplicates: grouped split only: the near-duplicate clusters the audit's duplicate
            search finds (cached per dataset) join the group key, so a near-duplicate pair can
            never straddle the split.
    """

    kind: str = "grouped"
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    seed: int = 42
    group_duplicates: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("grouped", "random"):
            raise ValueError("split kind must be 'grouped' or 'random'")
        if not (0 < self.test_fraction < 1 and 0 <= self.val_fraction < 1
                and self.test_fraction + self.val_fraction < 1):
            raise ValueError("fractions must be in (0, 1) and sum to less than 1")
        if self.kind == "random":  # images are independent there: the setting changes nothing
            object.__setattr__(self, "group_duplicates", True)


@dataclass(frozen=True)
class TrainConfig(_Config):
    """How a model is fitted (published defaults).

    Attributes:
        mode: ``"head"`` (backbone frozen, its features cached: the fast CPU path) or
            ``"finetune"`` (all layers trainable, as published).
        epochs: maximum epochs (published 50).
        batch_size: published 16.
        learning_rate: Adam learning rate (Keras default 1e-3).
        augment: random rotation + horizontal flip (fine-tune mode; in head mode see
            ``feature_augment_copies``).
        rotation: max rotation as a fraction of a full turn (Keras ``RandomRotation`` factor).
        hflip: random horizontal flip.
        feature_augment_copies: head mode only: extra augmented copies of each training image
            whose backbone features are cached too (0 = no augmentation in head mode).
        early_stopping: patience in epochs on validation loss, or ``None`` for none.
        init_from_head: fine-tune mode: start from the trained head of the matching head run.
        seed: seeds weight initialisation, shuffling and augmentation.
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
    seed: int = 42

    def __post_init__(self) -> None:
        if self.mode not in ("head", "finetune"):
            raise ValueError("mode must be 'head' or 'finetune'")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and learning_rate > 0")


@dataclass(frozen=True)
class ExplainConfig(_Config):
    """A CAM explanation and how it is drawn.

    Attributes:
        method: registered CAM method name (``"gradcam"``, ``"gradcam++"``, ``"scorecam"``...).
        layer: layer name, or ``None`` for the model's default (``block_16_depthwise`` for
            MobileNetV2, as published; the last conv layer otherwise).
        target: class index to explain, or ``None`` for the predicted class.
        alpha: heatmap opacity in the overlay (published 0.4).
        colormap: OpenCV colormap name (published ``"jet"``).
        contour: draw iso-contours of the heatmap instead of a filled colour map.
    """

    method: str = "gradcam"
    layer: str | None = None
    target: int | None = None
    alpha: float = 0.4
    colormap: str = "jet"
    contour: bool = False


@dataclass(frozen=True)
class RunConfig(_Config):
    """Everything that defines a training run; its hash plus the data fingerprint is the run id."""

    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name).to_dict() for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        kinds = {"data": DataConfig, "preprocess": PreprocessConfig, "model": ModelConfig,
                 "split": SplitConfig, "train": TrainConfig}
        unknown = set(data) - set(kinds)
        if unknown:
            raise ValueError(f"RunConfig: unknown sections {sorted(unknown)}")
        return cls(**{k: kinds[k].from_dict(v) for k, v in data.items()})

    def identity(self) -> dict[str, Any]:
        """The part of the config that defines results: the dataset root path is left out
        (the dataset fingerprint stands for its content), so a moved dataset keeps its runs."""
        d = self.to_dict()
        d["data"] = {k: v for k, v in d["data"].items() if k != "root"}
        return d
