"""Masked evaluation: does the model still classify when the lungs are hidden?

The disease is in the lungs. A model evaluated on films whose lung fields are blanked should fall
to chance; if it still scores well, it has learned shortcuts elsewhere on the film (markers,
borders, body size, the source's look). Keeping only the lungs is the complementary test.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.lungs.classical import lung_mask

CONDITIONS = ("unmasked", "lungs blanked", "lungs only")


def blank_lungs(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Replace lung pixels with the film's mean grey value (a neutral, shapeless fill).

    The mean, not a blur: a blur keeps the lungs' overall density (an opacity stays brighter),
    which is disease information.
    """
    out = grey.copy()
    out[mask] = np.uint8(round(float(grey.mean())))
    return out


def keep_lungs(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Replace every pixel outside the lungs with the film's mean grey value."""
    out = grey.copy()
    out[~mask] = np.uint8(round(float(grey.mean())))
    return out


def masked_evaluation(model, images: np.ndarray, labels, classes: tuple[str, ...], *,
                      masks: np.ndarray | None = None, batch_size: int = 32) -> pd.DataFrame:
    """Accuracy of ``model`` on films as they are, with lungs blanked, and with only lungs kept.

    Args:
        model: a Keras model taking float32 ``(N, S, S, 3)`` in [0, 1], returning ``(N, C)``.
        images: preprocessed grey films ``uint8 (N, S, S)`` (e.g. ``load_tensors(...).images``).
        labels: class names (or indices into ``classes``), one per film.
        classes: the model's class order.
        masks: ``bool (N, S, S)`` lung masks (default: :func:`cxrlib.lungs.classical.lung_mask`).
        batch_size: films per model call.

    Returns:
        One row per condition (:data:`CONDITIONS`): ``condition``, ``accuracy``, ``n`` and
        ``recall_<class>`` columns.
    """
    from cxrlib.explain import predict_probs  # noqa: PLC0415
    from cxrlib.preprocessing.pipeline import to_model_input  # noqa: PLC0415

    images = np.asarray(images)
    if masks is None:
        masks = np.stack([lung_mask(g) for g in images]) if len(images) else np.zeros_like(images, bool)
    truth = _indices(labels, classes)
    variants = {"unmasked": images,
                "lungs blanked": np.stack([blank_lungs(g, m) for g, m in zip(images, masks)]),
                "lungs only": np.stack([keep_lungs(g, m) for g, m in zip(images, masks)])}
    rows = []
    for condition, grey in variants.items():
        probs = predict_probs(model, to_model_input(grey), batch_size=batch_size)
        pred = probs.argmax(axis=1)
        row = {"condition": condition, "accuracy": float((pred == truth).mean()), "n": len(truth)}
        for k, c in enumerate(classes):
            sel = truth == k
            row[f"recall_{c}"] = float((pred[sel] == k).mean()) if sel.any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def shortcut_verdict(table: pd.DataFrame, n_classes: int) -> tuple[bool, str]:
    """Plain-language reading of a :func:`masked_evaluation` table.

    A model counts as using shortcuts when, with the lungs blanked, it keeps at least half of
    its margin over chance (uniform chance ``1 / n_classes``) and is at least 15 points above
    chance.

    Returns:
        ``(shortcut, sentence)``.
    """
    acc = dict(zip(table["condition"], table["accuracy"]))
    chance = 1.0 / n_classes
    full, blanked = acc["unmasked"], acc["lungs blanked"]
    only = acc.get("lungs only", float("nan"))
    margin = full - chance
    kept = (blanked - chance) / margin if margin > 0 else 0.0
    if blanked >= chance + 0.15 and kept >= 0.5:
        return True, (f"The model has learned shortcuts: with the lungs blanked it still scores "
                      f"{blanked:.0%} (unmasked {full:.0%}, chance {chance:.0%}), so most of its "
                      f"accuracy comes from outside the lungs.")
    return False, (f"With the lungs blanked the model drops to {blanked:.0%} (unmasked {full:.0%}, "
                   f"lungs only {only:.0%}, chance {chance:.0%}): it depends on the lung fields.")


def _indices(labels, classes: tuple[str, ...]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        return labels.astype(int)
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup.get(str(v), -1) for v in labels])
