"""Scoring the segmenter against human masks: Dice per film, per class, and the quality check."""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import pandas as pd

from cxrlib.lungs.masks import read_mask_levels
from cxrlib.lungs.measures import dice

POOR_DICE = 0.90
"""A mask below this Dice against the human one is *poor* (it misses or adds about a tenth of
the lung); the quality threshold is chosen to separate poor masks from the rest."""


def evaluate_rows(rows: pd.DataFrame, segmenter, *, batch_size: int = 16,
                  progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Segment every film of ``rows`` and score it against its human mask at the film's size.

    Args:
        rows: from :func:`cxrlib.lungs.data.paired_rows` (``path``, ``mask_path``, ``label``...).
        segmenter: a :class:`cxrlib.lungs.segmenter.Segmenter`.
        batch_size: films per network call.
        progress: ``progress(done, total)``.

    Returns:
        One row per film: ``rel_path``, ``label``, ``group_id``, ``split`` (when ``rows`` has
        it), ``dice`` (value-127 pixels left out), ``quality``, ``flagged``. A film whose film
        or mask cannot be decoded is left out, with a warning naming the file.
    """
    from cxrlib.data.imageio import ImageReadError, read_film  # noqa: PLC0415

    out = []
    records = list(rows.itertuples(index=False))
    for start in range(0, len(records), batch_size):
        chunk, films, masks = [], [], []
        for r in records[start:start + batch_size]:
            try:  # a film or mask that cannot be decoded is left out and named, not fatal
                pixels = read_film(r.path).pixels
                masks.append(read_mask_levels(r.mask_path, pixels.shape[:2]))
            except ImageReadError as exc:
                warnings.warn(f"{exc.path}: {exc.reason}; {r.rel_path} left out of the scores",
                              stacklevel=2)
                continue
            chunk.append(r)
            films.append(pixels)
        segs = segmenter.segment(films, batch_size) if films else []
        for r, (lung, ignore), seg in zip(chunk, masks, segs):
            out.append({"rel_path": r.rel_path, "label": r.label, "group_id": r.group_id,
                        "split": getattr(r, "split", ""), "dice": dice(seg.mask, lung, ignore),
                        "quality": seg.quality, "flagged": seg.flagged})
        if progress:
            progress(min(start + batch_size, len(records)), len(records))
    return pd.DataFrame(out, columns=["rel_path", "label", "group_id", "split", "dice", "quality", "flagged"])


def summarise(per_film: pd.DataFrame) -> dict:
    """Headline figures of :func:`evaluate_rows`' table.

    Returns:
        ``dice_mean`` (mean over films), ``dice_per_class``, ``n``, ``n_per_class``,
        ``flagged_share``, ``flagged_dice_mean`` and ``unflagged_dice_mean`` (None when a
        side is empty).
    """
    flagged = per_film["flagged"].astype(bool)
    mean = lambda s: round(float(s.mean()), 4) if len(s) else None  # noqa: E731
    return {"dice_mean": mean(per_film["dice"]),
            "dice_per_class": {k: mean(g["dice"]) for k, g in per_film.groupby("label")},
            "n": int(len(per_film)),
            "n_per_class": {k: int(len(g)) for k, g in per_film.groupby("label")},
            "flagged_share": round(float(flagged.mean()), 4) if len(per_film) else None,
            "flagged_dice_mean": mean(per_film.loc[flagged, "dice"]),
            "unflagged_dice_mean": mean(per_film.loc[~flagged, "dice"])}


def choose_threshold(quality: np.ndarray, dice_values: np.ndarray, poor: float = POOR_DICE) -> float:
    """The quality threshold that best tells poor masks (Dice < ``poor``) from good ones.

    Every observed quality value is a candidate; the one maximising Youden's J (share of poor
    masks flagged minus share of good masks flagged) wins, ties going to the lower threshold
    (fewer films flagged). With no poor or no good mask among the films there is nothing to
    separate: the threshold is then the 2nd percentile of the quality (about 2 % flagged).

    Args:
        quality: per-film quality of the validation films.
        dice_values: their Dice against the human masks.
        poor: the Dice below which a mask counts as poor.

    Returns:
        The threshold; films with ``quality < threshold`` are flagged.
    """
    quality, dice_values = np.asarray(quality, float), np.asarray(dice_values, float)
    is_poor = dice_values < poor
    if is_poor.all() or not is_poor.any():
        return float(np.percentile(quality, 2))
    best, best_j = float(quality.min()), -np.inf
    for t in np.unique(quality):  # ascending, so ties keep the lower threshold
        t_next = float(np.nextafter(t, np.inf))  # flag quality <= t
        j = (quality[is_poor] < t_next).mean() - (quality[~is_poor] < t_next).mean()
        if j > best_j + 1e-12:
            best, best_j = t_next, j
    return best
