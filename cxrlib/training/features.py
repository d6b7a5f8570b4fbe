"""Frozen-backbone features, computed once per dataset / preprocessing / backbone and cached.

Head-mode training never runs the backbone more than once for the same inputs: the pooled
features of every film of the dataset (all splits, so any split or head config reuses them) are
stored under ``paths.cache_dir("features")/<key>/``, one entry per copy. The key is a hash of the
dataset fingerprint, the preprocessing config, the backbone's identity (family, weights choice,
input size, and a digest of its actual weight values) and, for an augmented copy, its index and
the augmentation settings (the originals' entry is shared by every augmentation setting).

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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cxrlib.core import paths
from cxrlib.core.config import ModelConfig, PreprocessConfig, config_hash
from cxrlib.core.fsutil import atomic_path, read_json, write_json_atomic

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


def feature_key(fingerprint: str, preprocess_cfg: PreprocessConfig, model_cfg: ModelConfig,
                feature_model, *, copy: int = 0, rotation: float = 0.0, hflip: bool = False,
                seed: int = 0, digest: str | None = None) -> str:
    """The cache key of one set of backbone features (see the module docstring).

    ``copy`` 0 is the original films (shared by every augmentation setting); copy ``k > 0`` is
    the k-th augmented copy, keyed also by ``rotation``, ``hflip`` and ``seed``.
    """
    backbone = {"family": model_cfg.family, "weights": model_cfg.weights,
                "input": list(feature_model.input_shape[1:]),
                "digest": digest or weights_digest(feature_model)}
    augment = {"copy": copy}
    if copy:
        augment.update(rotation=rotation, hflip=hflip, seed=seed)
    return config_hash(CACHE_VERSION, fingerprint, preprocess_cfg.to_dict(), backbone, augment,
                       length=24)


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
    """Run the backbone over grey films in fixed-size batches inside one ``tf.function``.

    Args:
        feature_model: images ``float32 (N, S, S, 3)`` in [0, 1] -> features ``(N, D)``.
        images: ``uint8 (N, S, S)`` grey films (memory-mapped arrays are fine); they are scaled
            to [0, 1] and repeated on 3 channels inside the graph, as
            ``preprocess.to_model_input`` does.
        batch_size: the last batch is zero-padded so the function is traced once.
        progress: ``progress(done, total)`` after each batch.

    Returns:
        ``float32 (N, D)``.
    """
    from cxrlib.core.tfsetup import tf as _tf

    tf = _tf()

    @tf.function(reduce_retracing=True)
    def run(batch):
        x = tf.cast(batch, tf.float32) / 255.0
        x = tf.repeat(x[..., None], 3, axis=-1)
        return tf.cast(feature_model(x, training=False), tf.float32)

    n = len(images)
    dim = int(feature_model.output_shape[-1])
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, batch_size):
        batch = np.asarray(images[start:start + batch_size])
        m = len(batch)
        if m < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - m, *batch.shape[1:]), batch.dtype)])
        out[start:start + m] = run(tf.constant(batch)).numpy()[:m]
        if progress:
            progress(start + m, n)
    return out


def cached_features(feature_model, images: np.ndarray, *, fingerprint: str,
                    preprocess_cfg: PreprocessConfig, model_cfg: ModelConfig, copies: int = 0,
                    rotation: float = 0.0, hflip: bool = False, seed: int = 0,
                    batch_size: int = 32,
                    progress: Callable[[int, int], None] | None = None) -> FeatureSet:
    """Features of ``images`` and of ``copies`` augmented copies, from the cache or computed once.

    Args:
        feature_model: the frozen backbone (see :func:`cxrlib.models.architectures.backbone_and_head`).
        images: ``uint8 (N, S, S)`` grey films of the whole dataset, in manifest order.
        fingerprint: the dataset fingerprint (with ``preprocess_cfg``, identifies ``images``).
        preprocess_cfg, model_cfg: part of the key.
        copies, rotation, hflip, seed: head-mode augmentation (see the module docstring).
        batch_size: backbone batch size.
        progress: ``progress(done, total)`` over all ``(copies + 1) * N`` films.

    Returns:
        A :class:`FeatureSet`.
    """
    t0 = time.perf_counter()
    digest = weights_digest(feature_model)
    n = len(images)
    total = (copies + 1) * n
    parts, hits, keys = [], [], []
    for copy in range(copies + 1):
        key = feature_key(fingerprint, preprocess_cfg, model_cfg, feature_model, copy=copy,
                          rotation=rotation, hflip=hflip, seed=seed, digest=digest)
        folder = paths.cache_dir("features") / key
        meta = read_json(folder / "meta.json")
        if meta and meta.get("n") == n and (folder / "features.npy").is_file():
            parts.append(np.load(folder / "features.npy"))
            hits.append(True)
        else:
            films = images if copy == 0 else augment_films(
                np.asarray(images), rotation, hflip, np.random.default_rng([seed, copy]))
            done = copy * n
            feats = extract_features(
                feature_model, films, batch_size=batch_size,
                progress=(lambda d, _t, done=done: progress(done + d, total)) if progress else None)
            _store(folder, feats, {"n": n, "copy": copy, "dim": int(feats.shape[-1]),
                                   "fingerprint": fingerprint, "family": model_cfg.family,
                                   "weights": model_cfg.weights, "version": CACHE_VERSION})
            parts.append(feats)
            hits.append(False)
        keys.append(key)
    return FeatureSet(np.stack(parts), keys[0], all(hits), time.perf_counter() - t0)


def _store(folder: Path, feats: np.ndarray, meta: dict) -> None:
    """features.npy first, meta.json last: meta.json present means the entry is complete."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "features.npy", suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, feats)
    write_json_atomic(folder / "meta.json", meta)
