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
Speed (a 224 px film, 9 fractions, both orders): the operator is built once per image size and
each hole's system sliced from it, each solve starts from the next smaller hole's imputation,
and several films' imputed images share full batches of the forward pass.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

DEFAULT_FRACTIONS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))
"""Removal fractions of the curves: 10 %, 20 %, ..., 90 %."""

NOISE = 0.01
"""Standard deviation of the noise added to imputed values (in [0, 1]; the reference code's)."""

NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
    (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12))
"""``(row offset, column offset, weight)`` of the 8 neighbours in the imputation (the paper's)."""

ORDERS = ("morf", "lerf")

Predict = Callable[[np.ndarray], np.ndarray]


@lru_cache(maxsize=4)
def _operator(h: int, w: int) -> Any:
    """The imputation's operator on all pixels of an ``h x w`` image (CSR, once per size): row
    ``p`` has ``-w_pq`` per neighbour ``q`` inside the image and their sum ``W_p`` on the diagonal
    (at a border the mean is over the neighbours that exist); :func:`_system` slices it."""
    import scipy.sparse as sparse  # noqa: PLC0415

    r, c = np.divmod(np.arange(h * w), w)
    diag = np.zeros(h * w)
    rows, cols, vals = [np.arange(h * w)], [np.arange(h * w)], []
    for dr, dc, weight in NEIGHBOURS:
        rr, cc = r + dr, c + dc
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        diag[inside] += weight
        rows.append(np.flatnonzero(inside))
        cols.append((rr * w + cc)[inside])
        vals.append(np.full(int(inside.sum()), -weight))
    return sparse.csr_matrix((np.concatenate([diag, *vals]), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(h * w, h * w))


def _system(removed: np.ndarray, values: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    """``(A, removed pixels' flat indices, b)``: row of removed pixel ``p`` is
    ``W_p x_p - sum_{q removed} w_pq x_q = sum_{q kept} w_pq v_q`` (``values``: ``(H W, C)``)."""
    flat = removed.ravel()
    missing = np.flatnonzero(flat)
    rows = _operator(*removed.shape)[missing]
    return rows[:, missing], missing, -(rows @ np.where(flat[:, None], 0.0, values))


def _cg(a: Any, b: np.ndarray, x: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """Conjugate gradients on the symmetric positive definite ``a`` for every column of ``b`` at
    once, from ``x``, to ``|r| <= rtol |b|`` per column: one sparse product a step, and plain
    NumPy otherwise (OpenBLAS's threads spin on these small vectors on a shared 2-core CPU)."""
    dot = lambda u, v: np.einsum("ij,ij->j", u, v)  # noqa: E731
    r = b - a @ x
    p, rho, stop = r.copy(), dot(r, r), rtol ** 2 * dot(b, b)
    for _ in range(10 * len(b)):
        if np.all(rho <= stop):
            break
        q = a @ p
        alpha = rho / np.where(rho > stop, dot(p, q), np.inf)  # converged columns stay put
        x += alpha * p
        r -= alpha * q
        rho, previous = dot(r, r), rho
        p *= rho / np.maximum(previous, 1e-300)
        p += r
    return x


def impute_linear(image: np.ndarray, removed: np.ndarray, *, noise: float = NOISE,
                  rng: np.random.Generator | None = None, solver: str = "direct",
                  start: np.ndarray | None = None) -> np.ndarray:
    """Fill the removed pixels of one image by ROAD's noisy linear imputation: each the weighted
    mean of its 8 neighbours (direct ``1/6``, diagonal ``1/12``, renormalised at the border), all
    solved jointly, plus ``N(0, noise^2)``, clipped to [0, 1]. Equal channels are solved once.

    Args:
        image: float ``(H, W)`` or ``(H, W, C)`` in [0, 1]; never modified.
        removed: bool ``(H, W)``, True where a pixel is removed. At least one pixel must be kept.
        noise, rng: the added noise's standard deviation (0: none) and generator (default seed 0).
        solver: ``"direct"`` (SciPy's sparse LU, exact) or ``"cg"`` (conjugate gradients to a
            relative residual of 1e-6; the matrix is SPD; several times faster on large holes).
        start: ``"cg"``'s first guess, an image like ``image`` (default: the kept pixels' mean).

    Returns float32 like ``image``, kept pixels unchanged. Raises ValueError for mismatched
    shapes, every pixel removed, or an unknown solver.
    """
    img = np.asarray(image, np.float32)
    removed = np.asarray(removed, bool)
    if removed.shape != img.shape[:2]:
        raise ValueError(f"removed mask {removed.shape} does not match the image {img.shape[:2]}")
    if solver not in ("direct", "cg"):
        raise ValueError(f"unknown solver {solver!r}; choose 'direct' or 'cg'")
    out = img.copy()
    if not removed.any():
        return out
    if removed.all():
        raise ValueError("every pixel is removed: nothing to impute from")
    planes = img[..., None] if img.ndim == 2 else img
    grey = planes.shape[2] > 1 and all(np.array_equal(planes[..., 0], planes[..., k])
                                       for k in range(1, planes.shape[2]))
    channels = 1 if grey else planes.shape[2]
    flat_values = planes.reshape(-1, planes.shape[2])[:, :channels].astype(np.float64)
    a, missing, b = _system(removed, flat_values)
    if solver == "direct":
        import scipy.sparse.linalg as linalg  # noqa: PLC0415

        solved = linalg.spsolve(a.tocsc(), b).reshape(missing.size, -1)
    else:
        guess = (np.broadcast_to(flat_values[~removed.ravel()].mean(axis=0), b.shape) if start is None
                 else np.asarray(start, np.float64).reshape(-1, planes.shape[2])[missing, :channels])
        solved = _cg(a, b, np.array(guess, np.float64))
    if noise > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        solved = solved + rng.normal(0.0, noise, (missing.size, 1))
    filled = out.reshape(-1, planes.shape[2]) if img.ndim == 3 else out.reshape(-1, 1)
    filled[missing] = np.clip(solved, 0.0, 1.0).astype(np.float32)  # broadcasts over equal channels
    return out


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


__all__ = ["DEFAULT_FRACTIONS", "NEIGHBOURS", "NOISE", "RoadResult", "impute_linear", "predictor",
           "random_heatmaps", "removal_masks", "road_curves", "road_score"]
