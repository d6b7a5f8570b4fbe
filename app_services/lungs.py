"""Lung services: a film's lung fields (cached), the outline over an image, the CAM's in-lung share.

The same library calls as the audit (:mod:`cxrlib.lungs`, :mod:`cxrlib.preprocessing.geometry`),
so a test film's in-lung share on the Explain page is the one the audit computes for it: the
film-sized field (the dataset's own mask where it has one) carried into the model input's box
and size, against the heatmap at that size.
"""
from __future__ import annotations

from typing import Any

from cxrlib import lungs
from cxrlib.evaluation.core import json_number
from cxrlib import preprocessing as pre
from cxrlib.core.config import PreprocessConfig

from .bytecache import byte_cached


@byte_cached(0.15, spinner="Finding the lungs…")  # film-sized masks
def _predicted(film_key: str, _pixels):
    return lungs.segment_lungs(_pixels)


def predicted_lungs(film_key: str, pixels):
    """The segmenter's lung field of a film (cached on the film's content key).

    This is what the lung-crop step cuts by (one film per call, as the pipeline does).
    """
    return _predicted(film_key, pixels)


@byte_cached(0.15, spinner="Finding the lungs…")
def _fields(film_key: str, path: str | None, mask_path: str | None, _pixels):
    if path is None:  # an upload: no file, no mask of its own
        return predicted_lungs(film_key, _pixels)
    return lungs.lung_fields([_pixels], [path], mask_paths=[mask_path])[0]


def film_lungs(film_key: str, pixels, ds=None, rel_path: str | None = None):
    """A film's lung field at its own size: the dataset's own mask when it has one, else predicted.

    Args:
        film_key: the film's content key (file stamp or upload digest).
        pixels: the decoded film.
        ds: the open dataset, for a film of it (its manifest's ``path`` and ``mask_path``).
        rel_path: the film's ``rel_path`` in ``ds``; None for an upload.

    Returns:
        A :class:`cxrlib.lungs.LungSegmentation` (``source`` says ``dataset`` or ``predicted``).
    """
    path = mask_path = None
    if ds is not None and rel_path is not None:
        row = ds.manifest.loc[ds.manifest["rel_path"] == rel_path]
        if len(row):
            path = str(row["path"].iloc[0])
            named = row["mask_path"].iloc[0] if "mask_path" in row.columns else None
            mask_path = named if isinstance(named, str) and named else None
    return _fields(film_key, path, mask_path, pixels)


def input_box(cfg: PreprocessConfig, pixels, film_key: str) -> tuple[int, int, int, int]:
    """The part of the film the model sees under ``cfg`` (the lung crop's box, or all of it)."""
    if not pre.crops_to_lungs(cfg):
        return pre.input_box(pixels, cfg)
    return pre.input_box(pixels, cfg, predicted_lungs(film_key, pixels))


def explanation_lungs(run, pixels, film_key: str, res: dict[str, Any], *, ds=None,
                      rel_path: str | None = None) -> dict[str, Any]:
    """The lung field of an explained film and the share of its CAM inside it.

    Args:
        run: the run explained.
        pixels, film_key, ds, rel_path: the film (see :func:`film_lungs`).
        res: :func:`app_services.explaining.explanation` of the film (its ``heatmap``,
            ``flat`` and ``box``).

    Returns:
        ``mask`` (``bool``, the film's size: for the outline), ``share`` (None for a flat map),
        ``source``, ``quality``, ``flagged``.
    """
    seg = film_lungs(film_key, pixels, ds, rel_path)
    share = None if res["flat"] else json_number(pre.input_lung_share(  # nan (all-zero): None
        res["heatmap"], seg.mask, res["box"], run.config.preprocess.size))
    return {"mask": seg.mask, "share": share, "source": seg.source, "quality": seg.quality,
            "flagged": seg.flagged}


def with_outline(image, mask):
    """``image`` with the outline of ``mask`` (both the same size) drawn over it."""
    return lungs.draw_lung_outline(image, mask)
