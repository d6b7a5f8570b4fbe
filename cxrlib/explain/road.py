"""ROAD: remove pixels in a heatmap's order, fill them by noisy linear imputation, follow the score.

Rong, Leemann, Borisov, Kasneci & Kasneci, "A consistent and efficient evaluation strategy for
attribution methods", ICML 2022. Deletion tests (:mod:`cxrlib.explain.faithfulness`) fill pixels
with a baseline the model never saw, so part of the drop is the model reacting to the artefact.
ROAD fills each removed pixel with the weighted mean of its 8 neighbours (direct ``1/6``,
diagonal ``1/12``: the paper's), all removed pixels solved jointly as one sparse linear system,
plus a little Gaussian noise (:func:`impute_linear`), so the fill leaks little of the hole's shape.

Two orders of removal (:func:`road_curves`), at fractions ``p`` (default 10 %, 20 %, ..., 90 %):

- **MoRF**, most relevant first: the top ``p`` of the heatmap's pixels are removed; a faithful map
  makes the class probability fall fast (low curve).
- **LeRF**, least relevant first: the bottom ``p``; a faithful map keeps it high (high curve).

Their **combination** (``combined``) ``mean_p (LeRF(p) - MoRF(p))`` is about 0 for a random
map, positive when the map orders pixels by what the model uses (the paper: MoRF and LeRF alone
can rank methods inconsistently, the two together agree).

Pure functions on arrays: the model is never changed, every imputed image goes through the one
compiled forward pass, and a prediction function (e.g. a TFLite model's) can stand in for it.
Speed (a 224 px film, 9 fractions, both orders): the imputation's solver is two-level
preconditioned conjugate gradients (:mod:`cxrlib.explain.imputation`), each solve starts from
the next smaller hole's fill, films are imputed in threads, and several films' imputed images
share full batches of the forward pass.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxrlib.explain.imputation import NOISE, impute_linear

DEFAULT_FRACTIONS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))
"""Removal fractions of the curves: 10 %, 20 %, ..., 90 %."""
ORDERS = ("morf", "lerf")

Predict = Callable[[np.ndarray], np.ndarray]


def removal_masks(heatmap: np.ndarray, fractions: Sequence[float], order: str = "morf",
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Which pixels each step removes: bool ``(F, H, W)``.

    ``morf`` removes the ``round(p H W)`` most relevant pixels, ``lerf`` the least relevant
    ones; equal heatmap values (a map upsampled from 7 x 7 has many) are ordered at random.
    """
    from cxrlib.explain.maps import pixel_order  # noqa: PLC0415

    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of {ORDERS}")
    heat = np.nan_to_num(np.asarray(heatmap, np.float32))
    rng = rng if rng is not None else np.random.default_rng(0)
    ranked = pixel_order(heat if order == "morf" else -heat, rng)
    rank = np.empty(ranked.size, np.int64)
    rank[ranked] = np.arange(ranked.size)
    counts = np.round(np.asarray(fractions, np.float64) * heat.size).astype(np.int64)
    return (rank[None, :] < counts[:, None]).reshape(len(counts), *heat.shape)


def predictor(model: Any, batch_size: int = 32) -> Predict:
    """``(N, S, S, 3) float32 -> (N, C) probabilities``: a Keras model through the one compiled
    forward pass, or ``model`` itself when it is a plain function (e.g. a TFLite interpreter's)."""
    if hasattr(model, "layers") or hasattr(model, "get_weights"):
        from cxrlib.explain.base import predict_probs  # noqa: PLC0415

        return lambda batch: predict_probs(model, batch, batch_size)
    if not callable(model):
        raise ValueError(f"expected a Keras model or a prediction function, got {type(model).__name__}")
    return lambda batch: np.asarray(model(batch), np.float32)


@dataclass(frozen=True)
class RoadResult:
    """ROAD curves of a batch of heatmaps.

    Attributes:
        fractions: float ``(F,)`` removal fractions.
        morf, lerf: float ``(N, F)`` class probability with that fraction removed, most / least
            relevant first; original: ``(N,)`` untouched; targets: int ``(N,)`` the class followed.
        combined: float ``(N,)`` ``mean_p (lerf - morf)``: higher is more faithful, ~0 random.
    """

    fractions: np.ndarray
    morf: np.ndarray
    lerf: np.ndarray
    original: np.ndarray
    targets: np.ndarray

    @property
    def combined(self) -> np.ndarray:
        return (self.lerf - self.morf).mean(axis=1)

    def to_dict(self, i: int = 0) -> dict[str, Any]:
        """JSON-ready curves and scores of image ``i``."""
        return {"fractions": self.fractions.tolist(), "morf": self.morf[i].tolist(),
                "lerf": self.lerf[i].tolist(), "original": float(self.original[i]),
                "target": int(self.targets[i]), "morf_mean": float(self.morf[i].mean()),
                "lerf_mean": float(self.lerf[i].mean()), "combined": float(self.combined[i])}


def road_curves(model: Any, x: np.ndarray, heatmaps: np.ndarray, targets: Any = None, *,
                fractions: Sequence[float] = DEFAULT_FRACTIONS, noise: float = NOISE,
                seed: int = 0, solver: str = "cg", batch_size: int = 32,
                threads: int | None = None) -> RoadResult:
    """ROAD MoRF and LeRF curves of each image's heatmap.

    Args:
        model: a Keras model (float32 ``(S, S, 3)`` in [0, 1] -> probabilities; never modified),
            or a prediction function of such batches (:func:`predictor`).
        x: images ``(N, S, S, 3)`` in [0, 1] (one ``(S, S, 3)`` image is a batch of 1).
        heatmaps: ``(N, h, w)`` (resized to ``S x S`` when needed), any non-negative scale.
        targets: class per image (int or sequence), or ``None`` for each image's predicted class.
        fractions: removal fractions in (0, 1).
        noise: imputation noise (:func:`impute_linear`); ``seed`` seeds it and the tie-breaking.
        solver: of the imputation (``"cg"``: fast enough for 18 solves a film on a CPU).
        batch_size: images per forward pass; the ``2 F`` imputed images of several films go
            through one call, so batches are full (no padding to ``batch_size`` per film).
        threads: films imputed at once (default: the CPU count, at most 4; the sparse solves
            release the GIL); each film's noise has its own seed, so results do not depend on it.

    Returns:
        A :class:`RoadResult`.

    Raises:
        ValueError: mismatched numbers of images, heatmaps or targets, or a fraction outside (0, 1).
    """
    from cxrlib.explain.base import as_batch, resize_maps, resolve_targets  # noqa: PLC0415

    batch = as_batch(x)
    heat = np.asarray(heatmaps, np.float32)
    heat = heat[None] if heat.ndim == 2 else heat
    if len(heat) != len(batch):
        raise ValueError(f"got {len(heat)} heatmaps for {len(batch)} images")
    if heat.shape[1:] != batch.shape[1:3]:
        heat = resize_maps(heat, batch.shape[1:3])
    fractions = np.asarray(fractions, np.float64)
    if fractions.size == 0 or fractions.min() <= 0 or fractions.max() >= 1:
        raise ValueError(f"removal fractions must lie in (0, 1), got {fractions.tolist()}")
    predict = predictor(model, batch_size)
    probs = predict(batch)
    wanted = resolve_targets(targets, len(batch))
    wanted = np.where(wanted < 0, probs.argmax(axis=1), wanted)
    seeds = np.random.SeedSequence(seed).spawn(len(batch))  # per film: the same however shared out

    def film(i: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seeds[i])
        return [image for order in ORDERS
                for image in _removed_series(batch[i], heat[i], fractions, order, noise, rng, solver)]

    f = fractions.size
    scores = np.empty((len(batch), 2, f), np.float32)
    per_call = max(1, 8 * batch_size // (2 * f))  # films whose 2 F images share one predict call
    with ThreadPoolExecutor(max(1, threads or min(os.cpu_count() or 1, 4))) as pool:
        for first in range(0, len(batch), per_call):
            films = range(first, min(first + per_call, len(batch)))
            images = [image for series in pool.map(film, films) for image in series]
            out = predict(np.stack(images))[np.arange(len(images)), np.repeat(wanted[films], 2 * f)]
            scores[films] = out.reshape(-1, 2, f)
    return RoadResult(fractions, scores[:, 0], scores[:, 1],
                      probs[np.arange(len(batch)), wanted].astype(np.float32), wanted)


def _removed_series(img: np.ndarray, heat: np.ndarray, fractions: np.ndarray, order: str,
                    noise: float, rng: np.random.Generator, solver: str) -> list[np.ndarray]:
    """One film's imputed images at each fraction of one order; the holes are nested, so each
    solve starts from the smaller hole's fill (about 7 % fewer CG steps on cxr3 films)."""
    images = [None]
    for removed in removal_masks(heat, fractions, order, rng):
        images.append(impute_linear(img, removed, noise=noise, rng=rng, solver=solver, start=images[-1]))
    return images[1:]


def road_score(model: Any, x: np.ndarray, heatmap: np.ndarray, target: int | None = None,
               **options: Any) -> float:
    """ROAD's combined score of one image's heatmap, ``mean_p (LeRF(p) - MoRF(p))``
    (:func:`road_curves`; higher: more faithful; a random map scores about 0)."""
    return float(road_curves(model, x, heatmap, target, **options).combined[0])


def random_heatmaps(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` uniform random heatmaps ``(n, H, W)``: the reference a method must beat on ROAD."""
    return np.random.default_rng(seed).random((n, *size)).astype(np.float32)


__all__ = ["DEFAULT_FRACTIONS", "NOISE", "RoadResult", "impute_linear", "predictor",
           "random_heatmaps", "removal_masks", "road_curves", "road_score"]
