"""Smoother maps as options: test-time augmentation averaged in the film's frame, eigen-smoothing.

**Test-time augmentation** (:func:`explain_tta`): the film is explained under the fixed views
of :data:`cxrlib.models.tta.VIEWS` (small shifts and zooms, the ones the run's test-time
augmentation uses; never a flip, a chest film is not left-right symmetric), and each view's map
is warped back into the film's frame before the maps are averaged. Averaging in the views' own
frames would smear the map by the shifts. Where a view did not see part of the film (shifted
out), that view does not count there. Every view explains the class the plain film's
explanation explains, so the views agree on what they explain.

**Eigen-smoothing** is an option of every channel-weighting method
(``cam.explain(x, eigen_smooth=True)``, :func:`cxrlib.explain.maps.principal_projection`).

:func:`explain_smoothed` applies one of :data:`SMOOTHINGS` by name (the Explain page's control,
``ExplainConfig.smoothing``); :func:`smoothing_for` drops eigen-smoothing where a method's map is
not a sum over channels.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from cxrlib.explain.base import Explanation, as_batch
from cxrlib.explain.maps import to_heatmaps

TTA_MODES = ("shift", "shift_scale")
SMOOTHINGS = ("none", "tta", "eigen", "tta+eigen")
"""Smoothing by name: none, test-time augmentation (:func:`explain_tta`, shifts and zooms),
eigen-smoothing, or both."""


def smoothing_for(cam: Any, smoothing: str) -> str:
    """``smoothing`` as ``cam`` can apply it: without eigen-smoothing for a method that does not
    allow it (``supports_eigen_smooth``: occlusion, EigenCAM, fused LayerCAM).

    Raises:
        ValueError: an unknown name; the message lists :data:`SMOOTHINGS`.
    """
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"unknown smoothing {smoothing!r}; choose one of {SMOOTHINGS}")
    if "eigen" in smoothing and not getattr(cam, "supports_eigen_smooth", False):
        return "tta" if "tta" in smoothing else "none"
    return smoothing


def explain_smoothed(cam: Any, inputs: np.ndarray, target: Any = None,
                     smoothing: str = "none") -> Explanation:
    """``cam``'s explanation under ``smoothing`` (:data:`SMOOTHINGS`): ``"tta"`` is
    :func:`explain_tta` over shifts and zooms, ``"eigen"`` is ``eigen_smooth=True``.

    Raises:
        ValueError: an unknown name, or eigen-smoothing for a method that does not allow it
            (:func:`smoothing_for` says what applies).
    """
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"unknown smoothing {smoothing!r}; choose one of {SMOOTHINGS}")
    eigen = "eigen" in smoothing
    if "tta" in smoothing:
        return explain_tta(cam, inputs, target, eigen_smooth=eigen)
    return cam.explain(inputs, target, eigen_smooth=eigen)


def explain_tta(cam: Any, inputs: np.ndarray, target: Any = None, *, mode: str = "shift_scale",
                eigen_smooth: bool = False) -> Explanation:
    """The mean of ``cam``'s maps over the views of ``mode``, each warped back to the film.

    Args:
        cam: a CAM method (:func:`cxrlib.explain.get_cam`), anything with ``explain``.
        inputs: ``(N, S, S, 3)`` in [0, 1]; never modified.
        target: as :meth:`cxrlib.explain.base.CAM.explain` (resolved on the plain view).
        mode: ``"shift"`` (5 views) or ``"shift_scale"`` (7: also zoom 0.92 and 1.08).
        eigen_smooth: passed to every view's explanation.

    Returns:
        An :class:`Explanation` of the plain films (probabilities and targets of the identity
        view), its heatmaps the view average, normalised; flat where the mean has no contrast.
    """
    from cxrlib.models.tta import VIEWS, view, view_matrix  # noqa: PLC0415

    if mode not in TTA_MODES:
        raise ValueError(f"unknown smoothing views {mode!r}; choose one of {TTA_MODES}")
    x = as_batch(inputs)
    n, h, w = x.shape[:3]
    plain = cam.explain(x, target, eigen_smooth=eigen_smooth)
    total = np.zeros((n, h, w), np.float64)
    seen = np.zeros((n, h, w), np.float64)
    for dx, dy, scale in VIEWS[mode]:
        if (dx, dy, scale) == (0.0, 0.0, 1.0):
            heat, inverse = plain.heatmaps, None
        else:
            heat = cam.explain(view(x, dx, dy, scale), plain.targets,
                               eigen_smooth=eigen_smooth).heatmaps
            inverse = view_matrix(h, w, dx, dy, scale)
        for i in range(n):
            if inverse is None:
                total[i] += heat[i]
                seen[i] += 1.0
                continue
            # dst(y) = src(M y): the view's pixel that film pixel y went to.
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            total[i] += cv2.warpAffine(heat[i], inverse, (w, h), flags=flags,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
            seen[i] += cv2.warpAffine(np.ones((h, w), np.float32), inverse, (w, h), flags=flags,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    heatmaps, flat = to_heatmaps(total / np.maximum(seen, 1e-6), (h, w))
    return Explanation(heatmaps, plain.probs, plain.targets, flat,
                       f"{plain.method}+tta", plain.layer, plain.layer_valid)
