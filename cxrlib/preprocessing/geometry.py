"""Where the model input lies on the film, and lung fields carried from the film to the input.

Without the ``lung_crop`` step the model sees the whole film squashed to ``size`` x ``size``;
with it, only the box of both lungs plus a margin (:func:`input_box`), squashed the same way.
Every figure that relates a heatmap to the lungs must use the same geometry as the pixels the
heatmap was computed on, so this is the one place that maps between the two:

* :func:`input_box`: the film's pixels that become the model input, ``(x0, y0, x1, y1)``;
* :func:`mask_to_input`: a mask at the film's size, as the model input sees it;
* :func:`heatmap_to_film`: a model-input heatmap back at the film's size (for DICOM results);
* :func:`input_lung_fields`: the lung fields of films (a dataset's own masks winning over
  predicted ones) in the model input's geometry: what the CAM-in-lung share, the masked
  evaluation and the audit gallery are computed with.

The crop box always comes from the *predicted* mask of the decoded film, never from a dataset's
own mask file: the model input must be a function of the film's pixels alone, so that a film
gives the same input in training, prediction, the Explain page and an external folder (an
uploaded film has no mask file). A dataset's own masks are still what the lungs are *measured*
with, once carried into that box.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from cxrlib.core.config import PreprocessConfig

Box = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` with exclusive ends: ``film[y0:y1, x0:x1]``."""


def crops_to_lungs(cfg: PreprocessConfig) -> bool:
    """True when ``cfg`` runs the lung-crop step."""
    return "lung_crop" in cfg.steps


def input_box(film: np.ndarray, cfg: PreprocessConfig, segmentation=None) -> Box:
    """The part of ``film`` that becomes the model input.

    Args:
        film: the decoded ``uint8`` film (grey or RGB), at its own size.
        cfg: the preprocessing; without the lung-crop step the box is the whole film.
        segmentation: the film's *predicted* :class:`cxrlib.lungs.LungSegmentation`, when the
            caller has it already (it must come from :func:`cxrlib.lungs.segment_lungs` on
            this very film); None segments the film here.

    Returns:
        The box: the lungs' box plus ``cfg.lung_crop_margin`` (:func:`cxrlib.lungs.lung_box`),
        or the whole film. An empty predicted mask gives the whole film.

    Raises:
        ValueError: ``segmentation`` is a dataset mask, or ``cfg`` names another lung model
            than the one installed (the crop would differ from the one the run was made with).
    """
    h, w = np.asarray(film).shape[:2]
    if not crops_to_lungs(cfg):
        return 0, 0, w, h
    from cxrlib.lungs import lung_box, segment_lungs  # noqa: PLC0415
    from cxrlib.lungs.network import asset_digest  # noqa: PLC0415

    if cfg.lung_model != asset_digest():
        raise ValueError(f"this preprocessing crops with lung model {cfg.lung_model}, but the "
                         f"installed one is {asset_digest()}: train the run again")
    if segmentation is None:
        segmentation = segment_lungs(film)
    elif segmentation.source != "predicted":
        raise ValueError("the lung crop uses the predicted mask, never a dataset's own mask")
    if segmentation.mask.shape != (h, w):
        raise ValueError(f"mask {segmentation.mask.shape} does not fit the film {(h, w)}")
    return lung_box(segmentation.mask, cfg.lung_crop_margin)


def crop_to_box(image: np.ndarray, box: Box) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` as a contiguous array (the whole image for a whole-film box)."""
    x0, y0, x1, y1 = box
    if (x0, y0) == (0, 0) and (y1, x1) == tuple(image.shape[:2]):
        return image
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def mask_to_input(mask: np.ndarray, box: Box, size: int) -> np.ndarray:
    """A film-sized mask as the model input sees it: cut to ``box``, squashed to ``size``.

    The squash is an area average thresholded at one half (a model-input pixel is lung when
    most of the film pixels it stands for are), the counterpart of the ``INTER_AREA`` resize
    the film itself goes through.

    Returns:
        ``bool (size, size)``.
    """
    part = crop_to_box(np.asarray(mask).astype(np.uint8), box)
    if part.shape == (size, size):
        return part.astype(bool)
    squashed = cv2.resize(part * np.uint8(255), (size, size), interpolation=cv2.INTER_AREA)
    return squashed >= 128


def heatmap_to_film(heatmap: np.ndarray, shape: tuple[int, int], box: Box | None = None) -> np.ndarray:
    """A model-input heatmap laid back over the film: stretched (bilinear) over ``box``, 0 outside.

    The counterpart of :func:`mask_to_input` for values, and the geometry
    :func:`cxrlib.explain.overlay.overlay` draws with: the model saw ``box`` (the whole film
    without the lung crop), squashed to a square.

    Args:
        heatmap: ``(h, w)`` values in [0, 1], usually at the model input size.
        shape: the film's ``(H, W)``.
        box: what the model saw, ``(x0, y0, x1, y1)``; None for the whole film.

    Returns:
        ``float32 (H, W)`` in [0, 1].
    """
    h, w = int(shape[0]), int(shape[1])
    x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0.0, 1.0)
    out = np.zeros((h, w), np.float32)
    part = heat if heat.shape == (y1 - y0, x1 - x0) else cv2.resize(
        heat, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    out[y0:y1, x0:x1] = np.clip(part, 0.0, 1.0)
    return out


def input_lung_share(heatmap: np.ndarray, film_mask: np.ndarray, box: Box, size: int) -> float:
    """The in-lung share of one film's CAM as the audit counts it: the film-sized lung field
    carried into the model input (:func:`mask_to_input`) against the heatmap at that size
    (:func:`cxrlib.lungs.cam_in_lung_share`); ``nan`` for an all-zero map. The one rule of the
    Explain page and the batch explanation (the audit's masks are in that geometry already)."""
    from cxrlib.lungs import cam_in_lung_share  # noqa: PLC0415

    return cam_in_lung_share(heatmap, mask_to_input(film_mask, box, size))


def input_lung_fields(films: Sequence[np.ndarray], film_paths: Sequence, cfg: PreprocessConfig,
                      *, masks=None, rel_paths: Sequence[str] | None = None,
                      mask_paths: Sequence | None = None, batch_size: int = 16) -> list:
    """Lung fields of films in the geometry of their model input (``cfg.size`` a side).

    Each film's lung field at its own size comes from :func:`cxrlib.lungs.lung_fields` (a
    dataset's own mask wins; the manifest's ``mask_path`` first), is cut to the film's
    :func:`input_box` and squashed (:func:`mask_to_input`).

    Args:
        films: decoded ``uint8`` films (grey or RGB), each at its own size.
        film_paths: their files (None for a film without one).
        cfg: the run's preprocessing.
        masks: a :class:`cxrlib.lungs.MaskIndex` of a masks folder, or None.
        rel_paths: the films' paths in their dataset (for ``masks``).
        mask_paths: per film, a mask file the dataset names for it (the manifest's
            ``mask_path``; "" or None for none).
        batch_size: films per segmenter call.

    Returns:
        One :class:`cxrlib.lungs.LungSegmentation` per film, its ``mask`` ``bool (S, S)``;
        ``quality``, ``flagged`` and ``source`` are those of the film-sized field.
    """
    from cxrlib.lungs import LungSegmentation, lung_fields, segment_lungs  # noqa: PLC0415

    # A crop run: each film's predicted mask, from the same single-film call as the crop in the
    # pipeline (so the box is that one), is also its field when it has no dataset mask.
    crops = [segment_lungs(film) for film in films] if crops_to_lungs(cfg) else None
    fields = lung_fields(films, film_paths, masks=masks, rel_paths=rel_paths,
                         mask_paths=mask_paths, batch_size=batch_size, predicted=crops)
    out = []
    for k, (film, seg) in enumerate(zip(films, fields)):
        box = (0, 0, seg.mask.shape[1], seg.mask.shape[0])
        if crops is not None:
            box = input_box(film, cfg, crops[k])
        out.append(LungSegmentation(mask_to_input(seg.mask, box, cfg.size), seg.quality,
                                    seg.flagged, seg.source))
    return out
