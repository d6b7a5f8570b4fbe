"""ROAD: remove pixels in a heatmap's order, fill them by noisy linear imputation, follow the score.

Rong, Leemann, Borisov, Kasneci & Kasneci, "A consistent and efficient evaluation strategy for
attribution methods", ICML 2022. Deletion tests (:mod:`cxrlib.explain.faithfulness`) replace
pixels by a baseline the model never saw, so part of the score drop is the model reacting to
the artefact. ROAD instead fills every removed pixel with the weighted mean of its 8 neighbours,
direct neighbours weighing ``1/6`` and diagonal ones ``1/12`` (the paper's weights), solved
jointly for all removed pixels as one sparse linear system, plus a little Gaussian noise
(:func:`impute_linear`). Removed pixels next to each other thus take values that continue the
image's own texture and leak little of the removed shape.

Two orders of removal (:func:`road_curves`), at fractions ``p`` (default 10 %, 20 %, ..., 90 %):

- **MoRF**, most relevant first: the top ``p`` of the heatmap's pixels are removed; a faithful map
  makes the class probability fall fast (low curve).
- **LeRF**, least relevant first: the bottom ``p``; a faithful map keeps it high (high curve).

Their **combination** (``combined``) is ``mean_p (LeRF(p) - MoRF(p))``: about 0 for a random map,
positive when the map orders pixels by what the model uses (the paper shows MoRF and LeRF alone
can rank methods inconsistently, the two together agree with each other).

Pure functions on arrays: the model is never changed, every imputed image goes through the one
compiled forward pass (:func:`cxrlib.explain.base.predict_probs`) in fixed-size batches, and a
plain prediction function can stand in for the model (e.g. an exported TFLite model's).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_FRACTIONS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))
"""Removal fractions of the curves: 10 %, 20 %, ..., 90 %."""

NOISE = 0.01
"""Standard deviation of the noise added to imputed values (inputs in [0, 1]); the reference
implementation's default."""

NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
    (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12))
"""``(row offset, column offset, weight)`` of the 8 neighbours in the imputation (the paper's)."""

ORDERS = ("morf", "lerf")

Predict = Callable[[np.ndarray], np.ndarray]


def _system(removed: np.ndarray) -> tuple[Any, np.ndarray, list]:
    """The sparse matrix ``A`` of the imputation over the removed pixels, their flat indices, and
    per neighbour direction the (row in A, known pixel index) pairs that go to the right side.

    Row of removed pixel ``p``: ``W_p x_p - sum_{q removed} w_pq x_q = sum_{q kept} w_pq v_q``,
    ``W_p`` the sum of the weights of ``p``'s neighbours inside the image (so at a border the
    mean is over the neighbours that exist).
    """
    import scipy.sparse as sparse  # noqa: PLC0415

    h, w = removed.shape
    missing = np.flatnonzero(removed.ravel())
    index = np.full(h * w, -1, np.int64)
    index[missing] = np.arange(missing.size)
    r, c = np.divmod(missing, w)
    diag = np.zeros(missing.size)
    rows, cols, vals, known = [np.arange(missing.size)], [np.arange(missing.size)], [], []
    for dr, dc, weight in NEIGHBOURS:
        rr, cc = r + dr, c + dc
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        diag[inside] += weight
        flat = np.where(inside, rr * w + cc, 0)
        neighbour = np.where(inside, index[flat], -2)
        unknown = neighbour >= 0
        rows.append(np.flatnonzero(unknown))
        cols.append(neighbour[unknown])
        vals.append(np.full(int(unknown.sum()), -weight))
        kept = inside & (neighbour == -1)
        known.append((np.flatnonzero(kept), flat[kept], weight))
    a = sparse.csr_matrix((np.concatenate([diag, *vals]), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(missing.size, missing.size))
    return a, missing, known


def impute_linear(image: np.ndarray, removed: np.ndarray, *, noise: float = NOISE,
                  rng: np.random.Generator | None = None, solver: str = "direct") -> np.ndarray:
    """Fill the removed pixels of one image by ROAD's noisy linear imputation.

    Each removed pixel becomes the weighted mean of its 8 neighbours (direct ``1/6``, diagonal
    ``1/12``, renormalised at the image border), with every removed pixel solved jointly (the
    neighbours may be removed too), then ``N(0, noise^2)`` is added to the filled values and
    the result clipped to [0, 1]. A grey image stored as equal channels is solved once.

    Args:
        image: float ``(H, W)`` or ``(H, W, C)`` in [0, 1]; never modified.
        removed: bool ``(H, W)``, True where a pixel is removed. At least one pixel must be kept.
        noise: standard deviation of the added noise (0: the plain linear imputation).
        rng: the noise's generator (default ``np.random.default_rng(0)``).
        solver: ``"direct"`` (SciPy's sparse LU, exact) or ``"cg"`` (conjugate gradients,
            relative residual 1e-6: the matrix is symmetric positive definite; about twice as
            fast on large holes, within 1e-3 of the direct solution).

    Returns:
        float32 array of ``image``'s shape; kept pixels unchanged.

    Raises:
        ValueError: mismatched shapes, every pixel removed, or an unknown solver.
    """
    import scipy.sparse.linalg as linalg  # noqa: PLC0415

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
    values = planes[..., :1] if grey else planes
    flat_values = values.reshape(-1, values.shape[2]).astype(np.float64)
    a, missing, known = _system(removed)
    b = np.zeros((missing.size, values.shape[2]))
    for rows, pixels, weight in known:
        np.add.at(b, rows, weight * flat_values[pixels])
    if solver == "direct":
        solved = linalg.spsolve(a.tocsc(), b).reshape(missing.size, -1)
    else:
        start = flat_values[~removed.ravel()].mean(axis=0)
        solved = np.stack([linalg.cg(a, b[:, k], x0=np.full(missing.size, start[k]), rtol=1e-6)[0]
                           for k in range(b.shape[1])], axis=1)
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
        morf, lerf: float ``(N, F)`` class probability after removing that fraction, most /
            least relevant first.
        original: float ``(N,)`` the class probability of the untouched image.
        targets: int ``(N,)`` the class followed.
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
                seed: int = 0, solver: str = "cg", batch_size: int = 32) -> RoadResult:
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
        batch_size: images per forward pass (each film's ``2 F`` imputed images share batches).

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
    rng = np.random.default_rng(seed)
    f = fractions.size
    scores = np.empty((len(batch), 2, f), np.float32)
    for i, (img, h) in enumerate(zip(batch, heat)):
        images = [impute_linear(img, removed, noise=noise, rng=rng, solver=solver)
                  for order in ORDERS for removed in removal_masks(h, fractions, order, rng)]
        scores[i] = predict(np.stack(images))[:, wanted[i]].reshape(2, f)
    return RoadResult(fractions, scores[:, 0], scores[:, 1],
                      probs[np.arange(len(batch)), wanted].astype(np.float32), wanted)


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
