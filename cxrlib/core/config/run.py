"""The rest of a run's definition: which data, which model, which split, and the whole
:class:`RunConfig` whose hash (with the dataset fingerprint) is the run id; and how a CAM is drawn."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cxrlib.core.config.base import _Config, added_field, config_hash
from cxrlib.core.config.preprocess import PreprocessConfig
from cxrlib.core.config.train import TrainConfig


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


HEAD_FAMILIES = ("mobilenetv2", "tiny")
"""The model families with a frozen-backbone head mode; ``small_cnn`` has no pretrained backbone
and always trains all its layers (a ``RunConfig`` says so: its train mode is ``"finetune"``)."""


CNN_ARCHS = ("published", "bn_gap")
"""The small CNN's block designs (``ModelConfig.cnn_arch``)."""

SMALL_CNN_RECIPE_ARCH = "bn_gap"
"""The blocks of the small CNN recipe (trained as :meth:`TrainConfig.small_cnn_recipe`)."""


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
        cnn_arch: the small CNN's blocks (:data:`CNN_ARCHS`): ``"published"`` (convolution with
            ReLU, max-pool; flatten before the dense layer) or ``"bn_gap"`` (convolution,
            BatchNormalization, ReLU, max-pool; global average pooling before the dense layer:
            a third of the weights, chosen on validation by bench/train.py). Other families
            keep the default.
    """

    family: str = "mobilenetv2"
    weights: str = "imagenet"
    head_units: tuple[int, ...] = (512, 128, 64, 32)
    head_dropout: tuple[float, ...] = (0.7, 0.5, 0.3, 0.3)
    cnn_filters: tuple[int, ...] = (32, 64, 128, 128)
    cnn_dense: int = 64
    cnn_arch: str = added_field("published")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.family not in ("mobilenetv2", "small_cnn", "tiny"):
            raise ValueError(f"unknown model family {self.family!r}")
        if self.cnn_arch not in CNN_ARCHS:
            raise ValueError(f"cnn_arch must be one of {CNN_ARCHS}, not {self.cnn_arch!r}")
        if self.family != "small_cnn":  # no effect there: one run id
            object.__setattr__(self, "cnn_arch", "published")
        if self.weights not in ("imagenet", "random"):
            raise ValueError("weights must be 'imagenet' or 'random'")
        if len(self.head_units) != len(self.head_dropout):
            raise ValueError("head_units and head_dropout must have the same length")

    @property
    def label(self) -> str:
        """The family, with the small CNN's blocks when not the published ones (``small_cnn``,
        ``small_cnn[bn_gap]``): how run lists name a run's model."""
        return self.family + ("" if self.cnn_arch == "published" else f"[{self.cnn_arch}]")


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
        super().__post_init__()
        if self.kind not in ("grouped", "random"):
            raise ValueError("split kind must be 'grouped' or 'random'")
        if self.seed < 0:
            raise ValueError("the split seed must be >= 0")
        if not (0 < self.test_fraction < 1 and 0 <= self.val_fraction < 1
                and self.test_fraction + self.val_fraction < 1):
            raise ValueError("fractions must be in (0, 1) and sum to less than 1")
        if self.kind == "random":  # images are independent there: the setting changes nothing
            object.__setattr__(self, "group_duplicates", True)


@dataclass(frozen=True)
class ExplainConfig(_Config):
    """A CAM explanation and how it is drawn.

    Attributes:
        method: registered CAM method name (``"gradcam"``, ``"gradcam++"``, ``"scorecam"``...).
            The default is the one place the Explain page, the CLI and the audit take it from,
            chosen by ``bench/heatmaps.py``'s rule on a cxr3 MobileNetV2 run's validation films
            (docs/heatmaps.md): XGrad-CAM, the best ROAD score among the methods under 50 ms a
            film (Grad-CAM before; the two intervals overlap).
        layer: layer name, or ``None`` for the method's default: for MobileNetV2 the published
            ``block_16_depthwise`` for methods taking signed activations (Grad-CAM, HiResCAM),
            ``out_relu`` for those needing non-negative ones; the last fitting conv layer otherwise.
        target: class index to explain, or ``None`` for the predicted class.
        alpha: heatmap opacity in the overlay (published 0.4).
        colormap: OpenCV colormap name (published ``"jet"``).
        contour: draw iso-contours of the heatmap instead of a filled colour map.
        threshold: heatmap values below this share of the maximum are not drawn: the film's
            pixels stay as they are (0, published: the whole film is tinted).
        smoothing: ``"none"``, ``"tta"`` (shifts and zooms averaged in the film's frame, no
            flip), ``"eigen"`` or ``"tta+eigen"`` (:mod:`cxrlib.explain.smoothing`).
    """

    method: str = "xgradcam"
    layer: str | None = None
    target: int | None = None
    alpha: float = 0.4
    colormap: str = "jet"
    contour: bool = False
    threshold: float = 0.0
    smoothing: str = added_field("none")


@dataclass(frozen=True)
class RunConfig(_Config):
    """Everything that defines a training run; its hash plus the data fingerprint is the run id.

    A family without a head mode (:data:`HEAD_FAMILIES`: the small CNN) trains every layer: its
    train mode must be ``"finetune"`` (a head-mode ``TrainConfig`` has already dropped the
    fine-tune settings, such as ``augment=False``, so it is refused rather than converted). An
    older run's config.json that spelled it ``"head"`` loads (:meth:`from_dict`) as what the
    engine trained: the same settings in finetune mode. Such a run keeps its folder and its id;
    asking for its configuration again gives the finetune spelling's id.
    """

    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model.family not in HEAD_FAMILIES and self.train.mode == "head":
            raise ValueError("the small CNN has no pretrained backbone to freeze: it always "
                             "trains all its layers (TrainConfig(mode='finetune'))")
        if self.model.family not in HEAD_FAMILIES and self.train.adversarial:
            raise ValueError("adversarial fine-tuning reads a backbone's pooled features: "
                             f"{', '.join(HEAD_FAMILIES)} only, not {self.model.family}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name).to_dict() for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        kinds = {"data": DataConfig, "preprocess": PreprocessConfig, "model": ModelConfig,
                 "split": SplitConfig, "train": TrainConfig}
        unknown = set(data) - set(kinds)
        if unknown:
            raise ValueError(f"RunConfig: unknown sections {sorted(unknown)}")
        bad = [k for k, v in data.items() if not isinstance(v, dict)]
        if bad:
            raise ValueError(f"RunConfig: section {bad[0]!r} must be an object, not {data[bad[0]]!r}")
        family = (data.get("model") or {}).get("family", ModelConfig().family)
        train = data.get("train") or {}
        if family not in HEAD_FAMILIES and train.get("mode", TrainConfig().mode) == "head":
            # an older run's spelling: finetune BEFORE parsing, or head mode's canonical form
            # would drop the fine-tune settings it holds (augment=False...)
            data = {**data, "train": {**train, "mode": "finetune"}}
        return cls(**{k: kinds[k].from_dict(v) for k, v in data.items()})

    def identity(self) -> dict[str, Any]:
        """The part of the config that defines results: the dataset root path is left out
        (the dataset fingerprint stands for its content), so a moved dataset keeps its runs."""
        d = {f.name: getattr(self, f.name).identity_dict() for f in dataclasses.fields(self)}
        d["data"] = {k: v for k, v in d["data"].items() if k != "root"}
        return d


def run_id(cfg: RunConfig, fingerprint: str) -> str:
    """The id of the run of ``cfg`` on the dataset with ``fingerprint`` (16 hex digits): the
    run folder's name (:mod:`cxrlib.runs.registry`), and what the workers of a cluster compare."""
    return config_hash(cfg.identity(), fingerprint)
