"""Does a heatmap mean anything? Deletion / insertion scores and the model-randomisation check.

A heatmap can look right and mean nothing. Two checks, both on the model itself:

- **Deletion / insertion** (Petsiuk et al. 2018, RISE): remove the input's pixels in order of the
  heatmap, most highlighted first, replacing them by a baseline (a blurred copy of the image by
  default), and follow the class probability; a faithful heatmap makes it fall fast (small area
  under the curve). Insertion runs the other way, from the baseline, adding pixels back. The same
  curves for a random pixel order are the reference: ``faithfulness`` is the random-order
  deletion AUC minus the heatmap's (> 0: better than random).
- **Model randomisation** (Adebayo et al. 2018, "Sanity checks for saliency maps"): re-initialise
  the layers above the explained one (the head) in a copy of the model and explain again; a method
  whose heatmaps barely change does not depend on what the model learned.
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from cxrlib.explain.base import as_batch, predict_probs, resize_maps
from cxrlib.explain.graph import _walk, find_layer
from cxrlib.explain.maps import pixel_order
from cxrlib.explain.methods import get_cam

BASELINES = ("blur", "mean", "zero")


def _baseline(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "blur":
        sigma = max(1.0, x.shape[0] / 32)  # about 7 px at 224, as in RISE's insertion baseline
        return cv2.GaussianBlur(x, (0, 0), sigma).reshape(x.shape)
    if kind == "mean":
        return np.broadcast_to(x.mean(axis=(0, 1), keepdims=True), x.shape).astype(np.float32)
    if kind == "zero":
        return np.zeros_like(x)
    raise ValueError(f"unknown baseline {kind!r}; choose one of {BASELINES}")


def _curve_images(x: np.ndarray, base: np.ndarray, order: np.ndarray,
                  counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion images, one per step: ``(steps + 1, S, S, C)`` each."""
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    taken = (rank[None, :] < counts[:, None]).reshape(len(counts), *x.shape[:2], 1)
    return np.where(taken, base, x), np.where(taken, x, base)


def deletion_insertion(model: Any, x: np.ndarray, heatmap: np.ndarray, target: int | None = None,
                       *, steps: int = 20, baseline: str = "blur", n_random: int = 1,
                       seed: int = 0, batch_size: int = 32) -> dict[str, Any]:
    """Deletion and insertion curves of one image's heatmap, against random pixel orders.

    All ``2 (steps + 1) (1 + n_random)`` images go through the model in fixed-size batches.

    Args:
        model: the Keras model (float32 ``(S, S, 3)`` in [0, 1] -> probabilities); not modified.
        x: one image ``(S, S, 3)`` (or a batch of one).
        heatmap: ``(h, w)`` in [0, 1] (resized to ``S x S`` if needed).
        target: class index, or ``None`` for the class the model predicts on ``x``.
        steps: curve points after the start (fractions ``0, 1/steps, ..., 1``).
        baseline: what removed pixels become: ``"blur"`` (Gaussian blur of ``x``), ``"mean"``
            (the image's channel means) or ``"zero"``.
        n_random: random orders averaged for the reference curves.
        seed: seeds the random orders and the tie-breaking of equal heatmap values.
        batch_size: images per forward pass.

    Returns:
        ``fractions`` (list), curves ``deletion``, ``insertion``, ``deletion_random``,
        ``insertion_random`` (class probability at each fraction), their areas
        ``deletion_auc``, ``insertion_auc``, ``deletion_auc_random``, ``insertion_auc_random``,
        ``faithfulness`` (``deletion_auc_random - deletion_auc``), ``insertion_gain``
        (``insertion_auc - insertion_auc_random``), ``target``, ``baseline``, ``steps``.
    """
    img = as_batch(x)
    if len(img) != 1:
        raise ValueError("deletion_insertion explains one image at a time")
    img = img[0]
    heat = np.asarray(heatmap, np.float32)
    heat = heat[0] if heat.ndim == 3 else heat
    if heat.shape != img.shape[:2]:
        heat = resize_maps(heat[None], img.shape[:2])[0]
    if target is None:
        target = int(np.argmax(predict_probs(model, img[None], batch_size)[0]))
    rng = np.random.default_rng(seed)
    base = _baseline(img, baseline)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * heat.size).astype(np.int64)
    orders = [pixel_order(heat, rng)] + [rng.permutation(heat.size) for _ in range(n_random)]
    images = np.concatenate([np.concatenate(_curve_images(img, base, o, counts)) for o in orders])
    scores = predict_probs(model, images, batch_size)[:, target].reshape(len(orders), 2, steps + 1)
    deletion, insertion = scores[0]
    deletion_random, insertion_random = scores[1:].mean(axis=0)

    def auc(curve: np.ndarray) -> float:
        return float(np.trapezoid(curve, fractions))

    result = {
        "fractions": fractions.tolist(), "target": int(target), "baseline": baseline, "steps": steps,
        "deletion": deletion.tolist(), "insertion": insertion.tolist(),
        "deletion_random": deletion_random.tolist(), "insertion_random": insertion_random.tolist(),
        "deletion_auc": auc(deletion), "insertion_auc": auc(insertion),
        "deletion_auc_random": auc(deletion_random), "insertion_auc_random": auc(insertion_random),
    }
    result["faithfulness"] = result["deletion_auc_random"] - result["deletion_auc"]
    result["insertion_gain"] = result["insertion_auc"] - result["insertion_auc_random"]
    return result


def deletion_score(model: Any, x: np.ndarray, heatmap: np.ndarray, target: int | None = None,
                   **options: Any) -> float:
    """The summary of :func:`deletion_insertion`: random-order deletion AUC minus the heatmap's."""
    return deletion_insertion(model, x, heatmap, target, **options)["faithfulness"]


# --- model randomisation -------------------------------------------------------------------

_INITIALIZER_ATTR = {"depthwise_kernel": "depthwise_initializer",
                     "pointwise_kernel": "pointwise_initializer"}


def _copy_model(model: Any) -> Any:
    import keras  # noqa: PLC0415  (TensorFlow is already imported by the CAM)

    try:
        copy = keras.models.clone_model(model, recursive=True)
    except Exception:  # noqa: BLE001  e.g. a compiled model whose loss cannot be deserialised
        copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def layers_above(model: Any, layer: str) -> list[str]:
    """Names of the layers with weights that come after ``layer`` (nested models flattened)."""
    find_layer(model, layer)
    names, after = [], False
    for _, item in _walk(model):
        if item.name == layer:
            after = True
        elif after and item.weights and not hasattr(item, "layers"):
            names.append(item.name)
    return names


def _reinitialise(model: Any, names: Sequence[str], seed: int) -> None:
    import keras  # noqa: PLC0415

    by_name = {layer.name: layer for _, layer in _walk(model)}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"no layers {unknown} in model {model.name!r} to re-initialise")
    for i, name in enumerate(names):
        layer = by_name[name]
        for j, var in enumerate(layer.weights):
            short = var.name.split("/")[-1]
            init = getattr(layer, _INITIALIZER_ATTR.get(short, f"{short}_initializer"), None)
            if init is None:
                init = keras.initializers.GlorotUniform() if len(var.shape) > 1 else \
                    keras.initializers.Zeros()
            config = init.get_config()
            if "seed" in config:
                init = init.__class__.from_config({**config, "seed": seed + 1000 * i + j})
            var.assign(init(var.shape, dtype=var.dtype))


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata  # noqa: PLC0415

    ra, rb = rankdata(a.ravel()), rankdata(b.ravel())
    if ra.std() == 0 or rb.std() == 0:  # a flat map ranks nothing: identical only if both flat
        return 1.0 if ra.std() == rb.std() == 0 else 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Structural similarity of two maps in [0, 1] (Gaussian window, Wang et al. 2004 constants)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(m: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(m, (0, 0), sigma)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


RANDOMISATION_THRESHOLD = 0.5
"""A map whose mean rank correlation with the map of a head-randomised copy is at or above this
barely depends on what the model learned (Adebayo et al. 2018, "Sanity checks for saliency
maps"): the model-randomisation check fails."""


def randomisation_check(model: Any, x: np.ndarray, method: str = "gradcam",
                        layer: str | None = None, *, target: int | None = None,
                        layers: Sequence[str] | None = None, seed: int = 0,
                        threshold: float = RANDOMISATION_THRESHOLD, **options: Any) -> dict[str, Any]:
    """Model-randomisation sanity check: heatmaps of a copy with re-initialised top layers.

    The given model is not touched: a clone gets its weights (``clone_model`` + ``set_weights``),
    then the chosen layers of the clone are re-initialised with their own initializers (seeded).

    Args:
        model: the trained Keras model.
        x: images ``(N, S, S, 3)`` in [0, 1] (or one image).
        method: a CAM method name; ``layer``: the explained layer (``None``: the method's default).
        target: class index, or ``None`` for the class the ORIGINAL model predicts (the same
            class is then explained in the randomised copy).
        layers: names of the layers to re-initialise; ``None`` means every layer with weights
            above the explained one (:func:`layers_above`), i.e. the head.
        seed: seeds the re-initialisation.
        threshold: ``differs`` is true when the mean rank correlation is below it.
        **options: passed to the CAM method.

    Returns:
        ``method``, ``layer``, ``randomised`` (layer names), ``rank_correlation`` and ``ssim``
        (means over images; 1 = identical), ``per_image`` (lists of both), ``mean_abs_diff``,
        ``differs`` (bool), ``heatmaps`` and ``heatmaps_randomised`` (arrays).
    """
    batch = as_batch(x)
    cam = get_cam(method, model, layer, **options)
    layer = cam.layer  # None: the method's own default layer
    heat, probs = cam(batch, target)
    targets = np.argmax(probs, axis=1) if target is None else np.full(len(batch), target)
    names = list(layers) if layers is not None else layers_above(model, layer)
    copy = _copy_model(model)
    _reinitialise(copy, names, seed)
    heat_random, _ = get_cam(method, copy, layer, **options)(batch, targets)
    rank = [_rank_correlation(a, b) for a, b in zip(heat, heat_random)]
    sim = [ssim(a, b) for a, b in zip(heat, heat_random)]
    return {
        "method": method, "layer": layer, "randomised": names,
        "rank_correlation": float(np.mean(rank)), "ssim": float(np.mean(sim)),
        "per_image": {"rank_correlation": rank, "ssim": sim},
        "mean_abs_diff": float(np.abs(heat - heat_random).mean()),
        "differs": bool(np.mean(rank) < threshold),
        "heatmaps": heat, "heatmaps_randomised": heat_random,
    }
