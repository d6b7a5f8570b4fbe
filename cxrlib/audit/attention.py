"""Where the model looks: share of each film's CAM mass inside its lung fields."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.lungs.classical import cam_in_lung_share, segment_lungs


def attention_table(model, images: np.ndarray, labels, classes: tuple[str, ...], *,
                    rel_paths=None, method: str = "gradcam", layer: str | None = None,
                    batch_size: int = 16, segmentations=None) -> pd.DataFrame:
    """Per film: the CAM of the predicted class and the share of its mass inside the lungs.

    Args:
        model: a Keras model taking float32 ``(N, S, S, 3)`` in [0, 1].
        images: preprocessed grey films ``uint8 (N, S, S)``.
        labels: true class names, one per film.
        classes: the model's class order.
        rel_paths: film identifiers for the table (default ``0..N-1``).
        method / layer: CAM method and layer (:func:`cxrlib.explain.get_cam`).
        batch_size: films per CAM call.
        segmentations: precomputed :class:`~cxrlib.lungs.classical.LungSegmentation` per film.

    Returns:
        ``rel_path``, ``label``, ``pred``, ``in_lung_share`` (nan for an empty CAM),
        ``mask_method`` (``threshold`` / ``prior``).
    """
    from cxrlib.explain import get_cam  # noqa: PLC0415
    from cxrlib.preprocessing.pipeline import to_model_input  # noqa: PLC0415

    images = np.asarray(images)
    segs = segmentations or [segment_lungs(g) for g in images]
    cam = get_cam(method, model, layer)
    shares, preds = [], []
    for start in range(0, len(images), batch_size):
        heat, probs = cam(to_model_input(images[start:start + batch_size]))
        preds.extend(np.asarray(classes)[probs.argmax(axis=1)])
        shares.extend(cam_in_lung_share(h, s.mask) for h, s in zip(heat, segs[start:start + batch_size]))
    ids = list(rel_paths) if rel_paths is not None else list(range(len(images)))
    return pd.DataFrame({"rel_path": ids, "label": list(labels), "pred": preds,
                         "in_lung_share": shares, "mask_method": [s.method for s in segs]})


def attention_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per true class (and ``all``): ``films``, ``mean`` and ``median`` in-lung share, and
    ``reliable_masks`` (share of films whose mask passed the quality check)."""
    def agg(g: pd.DataFrame) -> dict:
        s = g["in_lung_share"].dropna()
        return {"films": len(g), "mean": float(s.mean()) if len(s) else float("nan"),
                "median": float(s.median()) if len(s) else float("nan"),
                "reliable_masks": float((g["mask_method"] == "threshold").mean())}
    rows = [{"label": c, **agg(g)} for c, g in table.groupby("label", sort=True)]
    rows.append({"label": "all", **agg(table)})
    return pd.DataFrame(rows)


def attention_gallery(table: pd.DataFrame, n: int = 12, *, reliable_only: bool = True) -> pd.DataFrame:
    """The ``n`` films with the most CAM mass outside the lungs (lowest in-lung share first).

    With ``reliable_only``, films whose lung mask fell back to the prior are left out (their
    share says little).
    """
    t = table.dropna(subset=["in_lung_share"])
    if reliable_only:
        t = t[t["mask_method"] == "threshold"]
    return t.sort_values("in_lung_share").head(n).reset_index(drop=True)
