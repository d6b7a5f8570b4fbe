"""Which heatmap to trust: ROAD per method with patient-bootstrap CIs, speed, resolution, sanity.

For each CAM method at its default layer, on a run's films (:func:`heatmap_trust`; the audit and
``bench/heatmaps.py`` give it the validation films, as its ranking picks the default method):

- ``road_combined``: the mean over films of ROAD's combined score (:mod:`cxrlib.explain.road`),
  with a patient-bootstrap 95 % interval (``road_combined_ci``; patients, or the split's group
  key, are resampled: :func:`cxrlib.evaluation.bootstrap.resample_weights`), and the mean MoRF and
  LeRF curves;
- ``beats_random``: the interval lies above the score of uniform random maps on the same films
  (``random_map_road``), the reference every method must beat; a method that does not is shown
  with a warning;
- ``ms_per_film``: median warm time of one film's explanation at the model's input size;
- ``cells_per_side``: the map's effective resolution (:meth:`cxrlib.explain.base.CAM.resolution`);
- ``randomisation_rank_corr``: the model-randomisation check
  (:func:`cxrlib.explain.faithfulness.randomisation_check`): near 1 means the map does not
  depend on what the head learned;
- ``in_lung_share``: the mean CAM mass inside the lung fields, when masks are given.

The result is a JSON-ready dict, stored in the run folder (:func:`save_trust`) so that the
Explain page can say "this method ranks k of n on this run" (:func:`standing`).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TRUST_FILE = "heatmap_trust.json"
"""The stored result of :func:`heatmap_trust` in a run folder."""

MAX_DEFAULT_MS = 50.0
"""A default method must explain a film in under this many milliseconds (warm, model input size)."""


def _round(value: Any, nd: int = 4) -> Any:
    return None if value is None or not np.isfinite(value) else round(float(value), nd)


def bootstrap_mean_ci(values: np.ndarray, groups: Sequence[Any] | None, *, n_boot: int = 1000,
                      seed: int = 0, alpha: float = 0.05) -> list[float | None]:
    """The ``1 - alpha`` percentile interval of the mean of per-film ``values``, resampling
    ``groups`` (patients) with all their films (:func:`cxrlib.evaluation.bootstrap.resample_weights`)."""
    from cxrlib.evaluation.bootstrap import percentile_interval, resample_weights  # noqa: PLC0415

    values = np.asarray(values, np.float64)
    weights = resample_weights(len(values), groups, n_boot=n_boot, rng=np.random.default_rng(seed))
    totals = weights.sum(axis=1)
    means = np.where(totals > 0, weights @ values / np.maximum(totals, 1), np.nan)
    low, high, _ = percentile_interval(means, alpha)
    return [low, high]


def _explain_all(cam: Any, x: np.ndarray, targets: np.ndarray, batch_size: int):
    heats, flat = [], []
    for start in range(0, len(x), batch_size):
        result = cam.explain(x[start:start + batch_size], targets[start:start + batch_size])
        heats.append(result.heatmaps)
        flat.append(result.flat)
    return np.concatenate(heats), np.concatenate(flat)


def _warm_ms(cam: Any, x: np.ndarray, targets: np.ndarray, films: int) -> float:
    cam.explain(x[:1], targets[:1])  # the first call traces the compiled functions
    times = []
    for i in range(min(films, len(x))):
        start = time.perf_counter()
        cam.explain(x[i:i + 1], targets[i:i + 1])
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def _randomisation(model: Any, x: np.ndarray, name: str, cam: Any) -> float:
    """Mean rank correlation of the maps before and after re-initialising the head (the layers
    above the explained one; for a method without a layer, above the model's last conv layer)."""
    from cxrlib.explain.faithfulness import layers_above, randomisation_check  # noqa: PLC0415
    from cxrlib.explain.graph import default_layer  # noqa: PLC0415

    layer = cam.layer if cam.uses_layer else None
    head = layers_above(model, layer or default_layer(model))
    return float(randomisation_check(model, x, name, layer, layers=head)["rank_correlation"])


def method_trust(model: Any, x: np.ndarray, name: str, *, targets: np.ndarray,
                 groups: Sequence[Any] | None = None, lung_masks: Sequence[Any] | None = None,
                 road_options: dict[str, Any] | None = None, n_boot: int = 1000, seed: int = 0,
                 randomisation_films: int = 4, timing_films: int = 5,
                 batch_size: int = 16) -> dict[str, Any]:
    """One method's row of :func:`heatmap_trust` (arguments there), plus its per-film scores
    (``per_film``) for callers that combine them."""
    from cxrlib.explain.methods import get_cam  # noqa: PLC0415
    from cxrlib.explain.road import road_curves  # noqa: PLC0415

    cam = get_cam(name, model)
    ms = _warm_ms(cam, x, targets, timing_films)
    heat, flat = _explain_all(cam, x, targets, batch_size)
    start = time.perf_counter()
    road = road_curves(model, x, heat, targets, seed=seed, **(road_options or {}))
    road_seconds = time.perf_counter() - start
    combined = road.combined
    row = {"layer": cam.layer, "road_combined": _round(combined.mean()),
           "road_combined_ci": bootstrap_mean_ci(combined, groups, n_boot=n_boot, seed=seed),
           "road_morf": [_round(v) for v in road.morf.mean(axis=0)],
           "road_lerf": [_round(v) for v in road.lerf.mean(axis=0)],
           "ms_per_film": _round(ms, 1), "cells_per_side": cam.cells_per_side,
           "flat_share": _round(flat.mean()), "in_lung_share": None,
           "randomisation_rank_corr": None, "per_film": [_round(v) for v in combined]}
    if randomisation_films > 0:
        k = min(randomisation_films, len(x))
        row["randomisation_rank_corr"] = _round(_randomisation(model, x[:k], name, cam))
    if lung_masks is not None:
        from cxrlib.lungs import cam_in_lung_share  # noqa: PLC0415

        shares = [cam_in_lung_share(h, m) for h, m, f in zip(heat, lung_masks, flat)
                  if m is not None and not f]
        shares = [s for s in shares if s is not None and np.isfinite(s)]
        row["in_lung_share"] = _round(np.mean(shares)) if shares else None
    row["_road_seconds"] = road_seconds
    return row


def heatmap_trust(model: Any, x: np.ndarray, methods: Sequence[str], *,
                  groups: Sequence[Any] | None = None, targets: Any = None,
                  lung_masks: Sequence[Any] | None = None, default: str | None = None,
                  road_options: dict[str, Any] | None = None, n_boot: int = 1000, seed: int = 0,
                  randomisation_films: int = 4, timing_films: int = 5,
                  progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """ROAD, speed, resolution, randomisation and in-lung share of each method on the same films.

    Args:
        model: the run's Keras model (never modified).
        x: its films as model inputs ``(N, S, S, 3)`` in [0, 1] (validation films for a choice).
        methods: registry names, each explained at its default layer.
        groups: per film, the patient (or the split's group key) the bootstrap resamples.
        targets: the class explained per film (``None``: each film's predicted class).
        lung_masks: per film a bool ``(S, S)`` lung mask at the model input, or None.
        default: the method the Explain page preselects (marked ``default``).
        road_options: passed to :func:`cxrlib.explain.road.road_curves` (``fractions`` ...).
        n_boot, seed: of the bootstrap (and ROAD's noise).
        randomisation_films / timing_films: films for the randomisation check / the timing.
        progress: ``progress(method, done, total)`` after each method.

    Returns:
        ``methods`` (name -> row, best ROAD first; see the module docstring), ``random_map_road``
        and ``random_map_road_ci``, ``road_s_per_film``, ``films``, ``ranking`` (names, best
        ROAD first), ``default_rule`` (:func:`choose_default`), and each row's ``beats_random``.
    """
    from cxrlib.explain.base import as_batch, predict_probs  # noqa: PLC0415
    from cxrlib.explain.road import random_heatmaps, road_curves  # noqa: PLC0415

    x = as_batch(x)
    if targets is None:
        targets = predict_probs(model, x).argmax(axis=1)
    targets = np.broadcast_to(np.asarray(targets, np.int32), (len(x),)).copy()
    total = len(methods) + 1
    start = time.perf_counter()
    reference = road_curves(model, x, random_heatmaps(len(x), x.shape[1:3], seed), targets,
                            seed=seed, **(road_options or {})).combined
    road_seconds = time.perf_counter() - start
    if progress:
        progress("random map", 1, total)
    rows: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(methods):
        rows[name] = method_trust(model, x, name, targets=targets, groups=groups,
                                  lung_masks=lung_masks, road_options=road_options, n_boot=n_boot,
                                  seed=seed, randomisation_films=randomisation_films,
                                  timing_films=timing_films)
        road_seconds += rows[name].pop("_road_seconds")
        if progress:
            progress(name, k + 2, total)
    random_road = float(reference.mean())
    for name, row in rows.items():
        low = row["road_combined_ci"][0]
        row["beats_random"] = low is not None and low > random_road
        row["default"] = name == default
    ranking = rank_methods(rows)
    result = {"methods": {n: rows[n] for n in ranking}, "ranking": ranking,
              "random_map_road": _round(random_road),
              "random_map_road_ci": bootstrap_mean_ci(reference, groups, n_boot=n_boot, seed=seed),
              "road_s_per_film": _round(road_seconds / (len(x) * total), 3), "films": len(x)}
    result["default_rule"] = choose_default(result)
    return result


def rank_methods(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Method names by ROAD combined score, best first; unmeasured ones (None) last."""
    return sorted(rows, key=lambda n: np.inf if rows[n]["road_combined"] is None
                  else -rows[n]["road_combined"])


def choose_default(trust: dict[str, Any], max_ms: float = MAX_DEFAULT_MS) -> str | None:
    """The issue's rule: the best-ROAD method that beats the random map (its CI above it) and
    explains a film in under ``max_ms`` (warm); None when no method qualifies."""
    fit = [n for n, r in trust["methods"].items()
           if r.get("beats_random") and r.get("ms_per_film") is not None and r["ms_per_film"] < max_ms]
    return max(fit, key=lambda n: trust["methods"][n]["road_combined"]) if fit else None


def standing(trust: dict[str, Any] | None, method: str) -> tuple[int, int] | None:
    """``(k, n)``: ``method`` ranks k of n on ROAD in a stored result; None when not in it."""
    if not trust or method not in trust.get("ranking", []):
        return None
    return trust["ranking"].index(method) + 1, len(trust["ranking"])


def save_trust(folder: str | Path, trust: dict[str, Any]) -> Path:
    """Store ``trust`` as the run folder's :data:`TRUST_FILE` (atomically; per-film scores are
    left out). Returns the path."""
    from cxrlib.core.fsutil import write_json_atomic  # noqa: PLC0415

    slim = {**trust, "methods": {n: {k: v for k, v in r.items() if k != "per_film"}
                                 for n, r in trust["methods"].items()}}
    path = Path(folder) / TRUST_FILE
    write_json_atomic(path, slim)
    return path


def load_trust(folder: str | Path) -> dict[str, Any] | None:
    """The stored result of a run folder, or None when there is none or it is damaged."""
    try:
        found = json.loads((Path(folder) / TRUST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and isinstance(found.get("methods"), dict) else None


def score_film(model: Any, x: np.ndarray, method: str, layer: str | None = None,
               target: int | None = None, *, film_side: int | None = None,
               road_options: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """One film under one method, scored: for a "compare methods" view.

    Args:
        model: the Keras model; ``x`` one model input ``(S, S, 3)`` (or a batch of one).
        method, layer, options: as :func:`cxrlib.explain.get_cam`; ``target`` as ``CAM.explain``.
        film_side: the film's longer side, for ``film_px_per_cell``.
        road_options: passed to :func:`cxrlib.explain.road.road_curves`.

    Returns:
        ``heatmap`` ``(S, S)``, ``flat``, ``probs``, ``target``, ``layer``, ``resolution``
        (:meth:`CAM.resolution`), ``ms`` (this explanation), and ``road`` (the film's curves and
        ``combined`` score, :meth:`cxrlib.explain.road.RoadResult.to_dict`; None for a flat map).
    """
    from cxrlib.explain.base import as_batch  # noqa: PLC0415
    from cxrlib.explain.methods import get_cam  # noqa: PLC0415
    from cxrlib.explain.road import road_curves  # noqa: PLC0415

    batch = as_batch(x)[:1]
    cam = get_cam(method, model, layer, **options)
    start = time.perf_counter()
    result = cam.explain(batch, target)
    ms = 1000 * (time.perf_counter() - start)
    road = None if result.flat[0] else road_curves(model, batch, result.heatmaps, result.targets,
                                                   **(road_options or {})).to_dict(0)
    return {"heatmap": result.heatmaps[0], "flat": bool(result.flat[0]), "probs": result.probs[0],
            "target": int(result.targets[0]), "layer": result.layer, "ms": ms,
            "resolution": cam.resolution(film_side), "road": road}
