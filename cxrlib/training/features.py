"""Frozen-backbone features, computed once per dataset / preprocessing / backbone and cached.

Head-mode training never runs the backbone more than once for the same inputs: the pooled
features of every film of the dataset (all splits, so any split or head config reuses them) are
stored under ``paths.cache_dir("features")/<key>/``, one entry per copy. The key is a hash of the
dataset fingerprint, the ordered list of films (so the 3-class and the binary task's rows, or any
other subset, are separate entries), the preprocessing config, the backbone's identity (family,
weights choice, input size, and a digest of its actual weight values) and, for an augmented
copy, its index and the augmentation settings (the originals' entry is shared by every
augmentation setting). An entry is a folder built under a hidden name and renamed into place
when complete, so concurrent writers never leave a mixed entry (the first one to finish wins);
on loading, its rows and shape are checked against what was asked for.

Augmentation in head mode (``TrainConfig.feature_augment_copies = k``): besides each film, ``k``
randomly rotated (uniform within +-``rotation`` of a full turn, reflected borders) and randomly
horizontally flipped (probability 0.5 when ``hflip``) copies are made with a generator seeded by
``(seed, copy)``, and their backbone features are cached too. The head then trains on the
original plus the ``k`` copies of every *training* film; validation and test use the original
films only. The augmentation is thus a fixed set of ``k`` variants per film, not a fresh random
draw every epoch as in fine-tune mode. ``k = 0`` (the default) means no augmentation in head mode.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cxrlib.core import paths
from cxrlib.core.config import ModelConfig, PreprocessConfig, config_hash
from cxrlib.core.fsutil import partial_folder, read_json, write_json_atomic

CACHE_VERSION = 1


@dataclass
class FeatureSet:
    """Backbone features of every film of a dataset.

    Attributes:
        features: ``float32 (copies + 1, N, D)``; ``features[0]`` are the original films in
            manifest order, ``features[k]`` the k-th augmented copy.
        key: the cache key (folder name) of the original films' features.
        hit: True when everything was read from the cache (no backbone computation).
        seconds: time spent computing or reading.
    """

    features: np.ndarray
    key: str
    hit: bool
    seconds: float


def weights_digest(model) -> str:
    """sha256 (16 hex) of a model's weight values: identifies a backbone exactly."""
    h = hashlib.sha256()
    for w in model.weights:
        arr = np.ascontiguousarray(np.asarray(w.numpy()))
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def rows_digest(rel_paths) -> str:
    """sha256 (16 hex) of an ordered list of films: which rows, in which order."""
    return hashlib.sha256("\n".join(map(str, rel_paths)).encode("utf-8")).hexdigest()[:16]


def feature_key(fingerprint: str, rows: str, preprocess_cfg: PreprocessConfig,
                model_cfg: ModelConfig, feature_model, *, copy: int = 0, rotation: float = 0.0,
                hflip: bool = False, seed: int = 0, digest: str | None = None,
                acquisition: float = 0.0, acquisition_contrast: float = 0.0) -> str:
    """The cache key of one set of backbone features (see the module docstring).

    ``rows`` is :func:`rows_digest` of the films, in order. ``copy`` 0 is the original films
    (shared by every augmentation setting); copy ``k > 0`` is the k-th augmented copy, keyed
    also by ``rotation``, ``hflip`` and ``seed``.
    """
    backbone = {"family": model_cfg.family, "weights": model_cfg.weights,
                "input": list(feature_model.input_shape[1:]),
                "digest": digest or weights_digest(feature_model)}
    augment = {"copy": copy}
    if copy:
        augment.update(rotation=rotation, hflip=hflip, seed=seed)
        if acquisition or acquisition_contrast:  # issue 23 (absent: the keys as before)
            augment.update(acquisition=float(acquisition), acquisition_contrast=float(acquisition_contrast))
    return config_hash(CACHE_VERSION, fingerprint, rows, preprocess_cfg.identity_dict(), backbone,
                       augment, length=24)


def augment_films(images: np.ndarray, rotation: float, hflip: bool,
                  rng: np.random.Generator) -> np.ndarray:
    """Randomly rotated / flipped copies of grey films ``uint8 (N, S, S)``.

    Each film is rotated about its centre by an angle uniform in ``+-rotation * 360`` degrees
    (borders reflected, as Keras ``RandomRotation`` does by default) and, when ``hflip``, flipped
    left-right with probability 0.5. The draws come only from ``rng``.
    """
    out = np.empty_like(images)
    n, h, w = images.shape[:3]
    angles = rng.uniform(-1.0, 1.0, n) * rotation * 360.0
    flips = rng.random(n) < 0.5 if hflip else np.zeros(n, bool)
    for i in range(n):
        m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angles[i]), 1.0)
        img = cv2.warpAffine(images[i], m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
        out[i] = img[:, ::-1] if flips[i] else img
    return out


def extract_features(feature_model, images: np.ndarray, *, batch_size: int = 32,
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The backbone over grey films ``uint8 (N, S, S)`` through the one compiled forward pass
    (:func:`cxrlib.models.inference.predict`); returns ``float32 (N, D)``."""
    from cxrlib.models.inference import predict  # noqa: PLC0415

    return predict(feature_model, images, batch_size=batch_size, progress=progress)


def config_features(feature_model, images: np.ndarray, cfg, *, rel_paths, fingerprint: str,
                    progress: Callable[[int, int], None] | None = None) -> FeatureSet:
    """:func:`cached_features` with a run config's head-mode augmentation: the training engine
    and leave-one-source-out call this, so they share one cache entry per run."""
    t = cfg.train
    return cached_features(feature_model, images, rel_paths=rel_paths, fingerprint=fingerprint,
                           preprocess_cfg=cfg.preprocess, model_cfg=cfg.model,
                           copies=t.feature_augment_copies,
                           rotation=t.rotation if t.augment else 0.0, hflip=t.hflip and t.augment,
                           seed=t.seed, progress=progress, acquisition=t.acquisition,
                           acquisition_contrast=t.acquisition_contrast)


def cached_features(feature_model, images: np.ndarray, *, rel_paths, fingerprint: str,
                    preprocess_cfg: PreprocessConfig, model_cfg: ModelConfig, copies: int = 0,
                    rotation: float = 0.0, hflip: bool = False, seed: int = 0,
                    batch_size: int = 32,
                    progress: Callable[[int, int], None] | None = None,
                    acquisition: float = 0.0, acquisition_contrast: float = 0.0) -> FeatureSet:
    """Features of ``images`` and of ``copies`` augmented copies, from the cache or computed once.

    Args:
        feature_model: the frozen backbone (see :func:`cxrlib.models.backbone_and_head`).
        images: ``uint8 (N, S, S)`` grey films, row ``i`` is ``rel_paths[i]``.
        rel_paths: the films, in the order of ``images`` (part of the key, checked on load).
        fingerprint: the dataset fingerprint (with ``preprocess_cfg``, identifies ``images``).
        preprocess_cfg, model_cfg: part of the key.
        copies, rotation, hflip, seed: head-mode augmentation (see the module docstring).
        acquisition, acquisition_contrast: strengths of the acquisition-style augmentation
            applied to each copy after its rotation / flip
            (:mod:`cxrlib.preprocessing.acquisition`); 0 and 0 = none.
        batch_size: backbone batch size.
        progress: ``progress(done, total)`` over all ``(copies + 1) * N`` films.

    Returns:
        A :class:`FeatureSet`.
    """
    t0 = time.perf_counter()
    digest = weights_digest(feature_model)
    rows = rows_digest(rel_paths)
    n = len(images)
    if len(rel_paths) != n:
        raise ValueError(f"{len(rel_paths)} film names for {n} films")
    total = (copies + 1) * n
    parts, hits, keys = [], [], []
    for copy in range(copies + 1):
        key = feature_key(fingerprint, rows, preprocess_cfg, model_cfg, feature_model, copy=copy,
                          rotation=rotation, hflip=hflip, seed=seed, digest=digest,
                          acquisition=acquisition, acquisition_contrast=acquisition_contrast)
        folder = paths.cache_dir("features") / key
        feats = _load(folder, n, rows)
        hits.append(feats is not None)
        if feats is None:
            films = images if copy == 0 else augment_films(
                np.asarray(images), rotation, hflip, np.random.default_rng([seed, copy]))
            if copy and (acquisition or acquisition_contrast):  # issue 23 hook: acquisition-style copies
                from cxrlib.preprocessing.acquisition import acquisition_augment  # noqa: PLC0415

                films = acquisition_augment(films, acquisition, np.random.default_rng([seed, copy, 23]),
                                            acquisition_contrast)
            done = copy * n
            feats = extract_features(
                feature_model, films, batch_size=batch_size,
                progress=(lambda d, _t, done=done: progress(done + d, total)) if progress else None)
            _store(folder, feats, {"n": n, "rows": rows, "copy": copy, "dim": int(feats.shape[-1]),
                                   "fingerprint": fingerprint, "family": model_cfg.family,
                                   "weights": model_cfg.weights, "version": CACHE_VERSION})
        parts.append(feats)
        keys.append(key)
    return FeatureSet(np.stack(parts), keys[0], all(hits), time.perf_counter() - t0)


def _load(folder: Path, n: int, rows: str) -> np.ndarray | None:
    """An entry's features when it holds exactly ``n`` rows of ``rows``; None otherwise."""
    meta = read_json(folder / "meta.json", default=None) if (folder / "meta.json").is_file() else None
    if not meta or meta.get("n") != n or meta.get("rows") != rows:
        return None
    try:
        feats = np.load(folder / "features.npy")
    except (OSError, ValueError):
        return None
    return feats if feats.ndim == 2 and feats.shape == (n, meta.get("dim")) else None


def _store(folder: Path, feats: np.ndarray, meta: dict) -> None:
    """Write the entry under a hidden name, then rename it into place (first writer wins; the
    build folders of dead writers go, :func:`cxrlib.core.fsutil.partial_folder`)."""
    with partial_folder(folder) as partial:
        np.save(partial / "features.npy", feats)
        write_json_atomic(partial / "meta.json", meta)
        if _load(folder, meta["n"], meta["rows"]) is None and folder.exists():
            shutil.rmtree(folder, ignore_errors=True)  # an invalid entry: replace it
        try:
            os.replace(partial, folder)
        except OSError:  # another process finished the same entry first: keep theirs
            pass
