"""Masked evaluation: does the model still classify when the lungs are hidden?

The disease is in the lungs. A model evaluated on films whose lung fields are blanked should fall
to chance; if it still scores well, it has learned shortcuts elsewhere on the film (markers,
borders, body size, the source's look). Keeping only the lungs is the complementary test.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.audit.findings import Finding, finding
from cxrlib.lungs import segment_batch

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
    """How ``model`` does on films as they are, with lungs blanked, and with only lungs kept.

    Args:
        model: a Keras model taking float32 ``(N, S, S, 3)`` in [0, 1], returning ``(N, C)``.
        images: preprocessed grey films ``uint8 (N, S, S)`` (e.g. ``load_tensors(...).images``).
        labels: class names (or indices into ``classes``), one per film.
        classes: the model's class order.
        masks: ``bool (N, S, S)`` lung masks in the images' geometry (default: the learned
            segmenter on the images themselves, :func:`cxrlib.lungs.segment_batch`).
        batch_size: films per model call.

    Returns:
        One row per condition (:data:`CONDITIONS`): ``condition``, ``n``, ``accuracy``,
        ``balanced_accuracy`` (chance: one over the classes), ``majority_rate`` (the chance
        level of accuracy), ``recall_<class>`` and ``predicted_<class>`` (the share of films
        the model calls that class: a model that calls every blanked film the commonest class
        shows it here), all from :func:`cxrlib.evaluation.metrics.point_metrics`.
    """
    from cxrlib.evaluation.metrics import point_metrics  # noqa: PLC0415
    from cxrlib.explain import predict_probs  # noqa: PLC0415
    from cxrlib.preprocessing.pipeline import to_model_input  # noqa: PLC0415

    images = np.asarray(images)
    if masks is None:
        masks = (np.stack([s.mask for s in segment_batch(list(images))]) if len(images)
                 else np.zeros_like(images, bool))
    truth = _indices(labels, classes)
    variants = {"unmasked": images,
                "lungs blanked": np.stack([blank_lungs(g, m) for g, m in zip(images, masks)]),
                "lungs only": np.stack([keep_lungs(g, m) for g, m in zip(images, masks)])}
    rows = []
    for condition, grey in variants.items():
        pred = predict_probs(model, to_model_input(grey), batch_size=batch_size).argmax(axis=1)
        point = point_metrics(truth, pred, classes)
        row = {"condition": condition, "n": point["n"], "accuracy": point["accuracy"],
               "balanced_accuracy": point["balanced_accuracy"], "majority_rate": point["majority_rate"]}
        row.update({f"recall_{c}": _nan(point["recall"][c]) for c in classes})
        row.update({f"predicted_{c}": point["predicted"][c] / max(point["n"], 1) for c in classes})
        rows.append(row)
    return pd.DataFrame(rows)


def shortcut_verdict(table: pd.DataFrame, n_classes: int) -> tuple[bool, Finding]:
    """Plain-language reading of a :func:`masked_evaluation` table.

    Chance has one meaning here: balanced accuracy is compared with ``1 / n_classes`` (what any
    model that ignores the film scores, whatever the class mix), never accuracy with uniform
    chance. A model counts as using shortcuts when, with the lungs blanked, its balanced
    accuracy keeps at least half of its margin over chance and is at least 15 points above it.
    So a model that calls every blanked film of an imbalanced set the commonest class (high
    accuracy, balanced accuracy at chance) is not called a shortcut learner. Between the two
    (well above chance, less than half the margin kept) the sentence says it partly relies on
    what lies outside the lungs.

    Returns:
        ``(shortcut, sentence)``.
    """
    rows = table.set_index("condition")
    bal = rows["balanced_accuracy"].astype(float)
    chance = 1.0 / n_classes
    full, blanked = bal["unmasked"], bal["lungs blanked"]
    only = bal.get("lungs only", float("nan"))
    margin = full - chance
    kept = (blanked - chance) / margin if margin > 0 else 0.0
    calls = _commonest_call(rows.loc["lungs blanked"])
    if blanked >= chance + 0.15 and kept >= 0.5:
        return True, finding(True, "masked", (
            f"The model has learned shortcuts: with the lungs blanked its balanced "
            f"accuracy is still {blanked:.0%} (unmasked {full:.0%}, chance {chance:.0%}), "
            f"so most of what it tells apart lies outside the lungs."))
    if blanked >= chance + 0.15:  # well above chance, but less than half the margin kept
        return False, finding(True, "masked", (
            f"The model partly relies on what lies outside the lungs: with them blanked "
            f"its balanced accuracy is still {blanked:.0%} (unmasked {full:.0%}, lungs "
            f"only {only:.0%}, chance {chance:.0%}; {calls})."))
    return False, finding(False, "masked", (
        f"With the lungs blanked the model's balanced accuracy drops to {blanked:.0%} "
        f"(unmasked {full:.0%}, lungs only {only:.0%}, chance {chance:.0%}; {calls}): "
        f"it depends on the lung fields."))


def _commonest_call(row: pd.Series) -> str:
    shares = {k[len("predicted_"):]: float(v) for k, v in row.items() if str(k).startswith("predicted_")}
    if not shares:
        return "no class shares"
    name = max(shares, key=shares.get)
    return f"it calls {shares[name]:.0%} of the blanked films {name}"


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _indices(labels, classes: tuple[str, ...]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        return labels.astype(int)
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[str(v)] for v in labels])
