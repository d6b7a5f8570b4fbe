"""A sweep's definition: a named search space over run settings, a budget and a selection rule.

A :class:`SweepSpec` is read from a small JSON file (or YAML when PyYAML is installed; it is
not a dependency) or built from flags. Settings are named by their config path,
``"<section>.<field>"`` (``"preprocess.clahe_clip_limit"``, ``"train.acquisition"``...). Example::

    {"name": "remedies", "data": "data/cxr3", "selection": "loso", "trials": 8,
     "base": {"model": {"family": "mobilenetv2"}, "train": {"epochs": 50}},
     "grid": {"train.acquisition": [0, 1.0], "train.source_balance": [false, true]},
     "fixed": {"train.feature_augment_copies": 2, "train.augment": false},
     "candidates": [{"name": "lung crop", "preprocess.steps": ["white_balance", "lung_crop"]}]}

The candidates are every ``candidates`` entry (named settings) then the Cartesian product of
``grid``, in order, each over ``base`` + ``fixed``; equal configs (after each config's
canonical form) are one candidate. ``trials`` and ``minutes`` bound the budget (the first
``trials`` candidates; no new candidate starts after ``minutes``). A plain grid: the spaces
here are small, every candidate is an ordinary cached run, and the order is reproducible.

``external`` (optional): a labelled folder from elsewhere, scored for every candidate
(``external_accuracy``, ``external_macro_auc``) and never used for the choice.

The selection rule is part of the spec and recorded before anything trains
(:mod:`cxrlib.sweep.study`): ``"loso"`` (highest expected accuracy at an unseen source, ties by
validation loss), ``"validation"`` (lowest validation loss) or ``"auto"`` (``loso`` when the
dataset has at least 3 sources, else ``validation``).
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrlib.core.config import RunConfig

SELECTIONS = ("auto", "loso", "validation")

REMEDY_SETTINGS = {
    "baseline": {},
    "acquisition": {"train.acquisition": 1.0},
    "acquisition+contrast": {"train.acquisition": 1.0, "train.acquisition_contrast": 0.5},
    "source_balance": {"train.source_balance": True},
    "nyul": {"preprocess.standardise": "nyul"},
    "lung_crop": {"preprocess.steps": ["white_balance", "lung_crop"]},
}
"""Each remedy alone, as sweep settings over a head-mode base (see docs/generalise.md): what the
benchmark and the Training page's Sweeps section offer."""


def remedy_candidates(names, copies: int = 2) -> list[dict]:
    """Named sweep candidates of :data:`REMEDY_SETTINGS`; the acquisition ones get ``copies``
    feature copies without rotation or flip (the copies are what the augmentation changes)."""
    out = []
    for name in names:
        settings = dict(REMEDY_SETTINGS[name])
        if settings.get("train.acquisition") or settings.get("train.acquisition_contrast"):
            settings.update({"train.feature_augment_copies": int(copies), "train.augment": False})
        out.append({"name": name, **settings})
    return out
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class SweepSpec:
    """See the module docstring. ``base`` is a partial :class:`RunConfig` dict."""

    name: str
    data: str | None = None
    selection: str = "auto"
    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)
    trials: int | None = None
    minutes: float | None = None
    external: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(str(self.name)):
            raise ValueError(f"sweep name {self.name!r}: letters, digits, '.', '_', '-' (at most 64)")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, not {self.selection!r}")
        if self.trials is not None and self.trials < 1:
            raise ValueError("trials must be >= 1")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError("minutes must be > 0")
        for key in [*self.grid, *self.fixed, *(k for c in self.candidates for k in c if k != "name")]:
            _split_key(key)
        if not all(isinstance(v, list) and v for v in self.grid.values()):
            raise ValueError("every grid setting needs a non-empty list of values")

    @classmethod
    def from_dict(cls, data: dict) -> "SweepSpec":
        known = {"name", "data", "selection", "base", "grid", "fixed", "candidates", "trials", "minutes",
                 "external"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"sweep spec: unknown keys {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return {"name": self.name, "data": self.data, "selection": self.selection, "base": self.base,
                "grid": self.grid, "fixed": self.fixed, "candidates": self.candidates,
                "trials": self.trials, "minutes": self.minutes, "external": self.external}


def load_spec(path: str | Path) -> SweepSpec:
    """A :class:`SweepSpec` from a JSON (or, with PyYAML installed, YAML) file.

    Raises:
        OSError: the file cannot be read. ValueError: it is not a valid spec.
    """
    text = Path(path).read_text(encoding="utf-8")
    if str(path).lower().endswith((".yaml", ".yml")):
        try:
            import yaml  # noqa: PLC0415
        except ImportError:
            raise ValueError(f"{path}: YAML needs PyYAML, which is not installed; write the "
                             "spec as JSON") from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a sweep spec is a JSON object")
    data.setdefault("name", Path(path).stem)
    return SweepSpec.from_dict(data)


def _split_key(key: str) -> tuple[str, str]:
    section, _, name = str(key).partition(".")
    if section not in ("data", "preprocess", "model", "split", "train") or not name:
        raise ValueError(f"setting {key!r}: write it as <section>.<field>, section one of "
                         "data, preprocess, model, split, train")
    return section, name


def apply_settings(base: RunConfig, settings: dict[str, Any]) -> RunConfig:
    """``base`` with ``{"section.field": value}`` applied (lists become tuples).

    Raises:
        ValueError: an unknown section or field, or a value the config refuses.
    """
    d = base.to_dict()
    for key, value in settings.items():
        section, name = _split_key(key)
        if name not in d[section]:
            raise ValueError(f"setting {key!r}: {section} has no field {name!r}")
        d[section][name] = value
    return RunConfig.from_dict(d)


@dataclass
class Candidate:
    """One point of the space: its name, the settings that define it, and its run config."""

    name: str
    settings: dict
    config: RunConfig


def candidates(spec: SweepSpec, data_root: str | None = None) -> list[Candidate]:
    """The spec's candidates in order (see the module docstring), equal configs once, at most
    ``spec.trials``."""
    base = RunConfig.from_dict({**RunConfig().to_dict(), **{k: {**RunConfig().to_dict()[k], **v}
                                                           for k, v in spec.base.items()}})
    root = data_root or spec.data
    if root:
        base = base.replace(data=base.data.replace(root=str(root)))
    points = [(c.get("name") or _label({k: v for k, v in c.items() if k != "name"}),
               {k: v for k, v in c.items() if k != "name"}) for c in spec.candidates]
    keys = list(spec.grid)
    for values in itertools.product(*(spec.grid[k] for k in keys)):
        settings = dict(zip(keys, values))
        points.append((_label(settings), settings))
    out, seen = [], set()
    for name, settings in points:
        cfg = apply_settings(base, {**spec.fixed, **settings})
        key = json.dumps(cfg.identity(), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(Candidate(name, settings, cfg))
    return out[:spec.trials] if spec.trials else out


def _label(settings: dict) -> str:
    if not settings:
        return "base"
    return ", ".join(f"{k.split('.', 1)[1]}={_text(v)}" for k, v in settings.items())


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(map(str, value)) or "none"
    return str(value)
