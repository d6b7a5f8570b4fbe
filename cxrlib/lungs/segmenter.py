"""Lung fields of any film: the loaded segmenter, its compiled forward pass, and the quality signal.

One :class:`Segmenter` per weights asset and process (:func:`load_segmenter`), holding one
``tf.function`` with a free batch dimension (traced once, for every batch size). A film is
prepared (:func:`cxrlib.lungs.prepare.prepare_film`), the network gives a lung probability per
pixel at the working size, the probabilities are stretched back to the film (bilinear) and
thresholded at 0.5.

Quality (:func:`mask_quality`) is a per-film number in [0, 1]; films below the threshold stored
in the asset (chosen on validation groups, see the model card) are ``flagged``.
"""
from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from cxrlib.lungs.prepare import prepare_film

DEFAULT_QUALITY_THRESHOLD = 0.95  # used only by assets that do not record their own


@dataclass
class LungSegmentation:
    """The lung fields of one film and where they came from.

    Attributes:
        mask: ``bool (H, W)`` at the film's own size, True inside the lung fields.
        quality: the per-film quality signal in [0, 1] (:func:`mask_quality`); 1.0 for a
            dataset's own (human) mask.
        flagged: ``quality`` is below the asset's threshold: the mask is likely poor; figures
            computed with it should leave the film out and say how many were left out.
        source: ``"predicted"`` (the segmenter) or ``"dataset"`` (the dataset's own mask file).
    """

    mask: np.ndarray
    quality: float
    flagged: bool
    source: str


def mask_quality(prob: np.ndarray) -> float:
    """How much a predicted mask can be trusted: the network's mean confidence inside it.

    The mean lung probability over the pixels of the mask (``p > 0.5``), so a value in
    [0.5, 1]: near 1 when the network is sure of the whole lung field, lower the more of the
    mask it only half believes (consolidation, devices, unusual framing). An empty mask scores
    0. Of the signals tried on the validation groups (this one; the soft Dice of the
    probabilities against the mask, with or without a two-lungs shape factor; the share of
    uncertain pixels; lung area) it ranked the validation films' Dice best (Spearman 0.72,
    against 0.57 for the soft Dice with the shape factor and 0.21 for the lung area).

    Args:
        prob: lung probabilities ``(S, S)`` at the working size.
    """
    mask = prob > 0.5
    return float(prob[mask].mean()) if mask.any() else 0.0


class Segmenter:
    """A loaded lung network with its compiled forward pass (use :func:`load_segmenter`)."""

    def __init__(self, model, meta: dict):
        """Wrap ``model`` (from :func:`cxrlib.lungs.network.build_lung_unet`) and its asset ``meta``."""
        from cxrlib.core.tfsetup import tf  # noqa: PLC0415

        tf_ = tf()
        self.model, self.meta = model, meta
        self.size = int(meta["arch"]["size"])
        self.threshold = float(meta.get("quality_threshold", DEFAULT_QUALITY_THRESHOLD))
        spec = tf_.TensorSpec([None, self.size, self.size, 1], tf_.float32)
        self._forward = tf_.function(lambda x: tf_.sigmoid(model(x, training=False))[..., 0],
                                     input_signature=[spec])

    def probabilities(self, prepared: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Lung probabilities ``float32 (N, S, S)`` of prepared films ``uint8 (N, S, S)``."""
        out = []
        for start in range(0, len(prepared), max(1, batch_size)):
            x = prepared[start:start + batch_size, ..., None].astype(np.float32) / 255.0
            out.append(self._forward(x).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.size, self.size), np.float32)

    def segment(self, films: Sequence[np.ndarray], batch_size: int = 16) -> list[LungSegmentation]:
        """Segment films of any sizes (see :func:`segment_batch`)."""
        if not len(films):
            return []
        prepared = np.stack([prepare_film(f, self.size) for f in films])
        probs = self.probabilities(prepared, batch_size)
        return [self._result(p, np.asarray(f).shape[:2]) for p, f in zip(probs, films)]

    def _result(self, prob: np.ndarray, shape: tuple[int, int]) -> LungSegmentation:
        quality = mask_quality(prob)
        full = prob if prob.shape == shape else cv2.resize(prob, (shape[1], shape[0]),
                                                           interpolation=cv2.INTER_LINEAR)
        return LungSegmentation(full > 0.5, quality, quality < self.threshold, "predicted")


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load(weights: str) -> Segmenter:
    from cxrlib.lungs.network import load_asset  # noqa: PLC0415

    return Segmenter(*load_asset(weights))


def load_segmenter(weights: str | Path | None = None) -> Segmenter:
    """The segmenter of a weights asset, loaded once per process and then reused.

    Args:
        weights: the asset's ``.json`` / ``.npz`` or its folder; None for the shipped asset.

    Raises:
        cxrlib.lungs.network.LungModelError: the asset is missing or broken.
    """
    from cxrlib.lungs.network import ASSET_DIR, ASSET_NAME  # noqa: PLC0415

    path = Path(weights) if weights is not None else ASSET_DIR / f"{ASSET_NAME}.json"
    with _LOCK:  # app sessions run in threads: load the model once, not once per thread
        return _load(str(path.resolve()))


def segment_batch(films: Sequence[np.ndarray], batch_size: int = 16, *,
                  weights: str | Path | None = None) -> list[LungSegmentation]:
    """Segment the lung fields of several films in batches.

    Args:
        films: ``uint8`` grey ``(H, W)`` or RGB ``(H, W, 3)`` films, each of any size.
        batch_size: films per network call.
        weights: a weights asset (default: the shipped one).

    Returns:
        One :class:`LungSegmentation` per film, ``source="predicted"``, mask at the film's size.
    """
    return load_segmenter(weights).segment(films, batch_size)


def segment_lungs(film: np.ndarray, *, weights: str | Path | None = None) -> LungSegmentation:
    """Segment the lung fields of one film (``uint8`` grey ``(H, W)`` or RGB ``(H, W, 3)``).

    Returns:
        A :class:`LungSegmentation` with ``source="predicted"`` and the mask at the film's size.
    """
    return segment_batch([film], 1, weights=weights)[0]


def lung_fields(films: Sequence[np.ndarray], film_paths: Sequence[str | Path | None], *,
                masks=None, rel_paths: Sequence[str] | None = None, batch_size: int = 16,
                weights: str | Path | None = None,
                mask_paths: Sequence[str | Path | None] | None = None,
                predicted: Sequence[LungSegmentation | None] | None = None) -> list[LungSegmentation]:
    """Lung fields of films, a dataset's own masks taking precedence over predicted ones.

    A film's own mask is found by :func:`cxrlib.lungs.masks.find_dataset_mask` (the ``--masks``
    folder, else the file the dataset names for it, else a Radiography DB ``masks/`` sibling);
    it is used, resized to the film, with ``source="dataset"``, ``quality=1.0`` and never
    flagged. The other films are segmented in batches (``source="predicted"``), and so is a film
    whose own mask cannot be decoded, marks no lung or marks the whole film (with a warning
    naming the file).

    Args:
        films: decoded ``uint8`` films (grey or RGB).
        film_paths: their files (None for a film with no file, e.g. an upload).
        masks: a :class:`cxrlib.lungs.masks.MaskIndex` of a ``--masks`` folder, or None.
        rel_paths: the films' paths relative to their dataset root (for ``masks``).
        batch_size: films per network call.
        weights: a weights asset (default: the shipped one).
        mask_paths: per film, a mask file the dataset names for it ("" or None: none).
        predicted: per film, its predicted segmentation when the caller has it already (e.g.
            for the lung crop; None where not): a film without a dataset mask uses it instead
            of being segmented again.

    Returns:
        One :class:`LungSegmentation` per film, in order.
    """
    from cxrlib.data.imageio import ImageReadError  # noqa: PLC0415
    from cxrlib.lungs.masks import dataset_mask, find_dataset_mask  # noqa: PLC0415

    out: list[LungSegmentation | None] = []
    for i, (film, path) in enumerate(zip(films, film_paths)):
        shape = np.asarray(film).shape[:2]
        named = mask_paths[i] if mask_paths is not None else None
        rel = rel_paths[i] if rel_paths is not None else None
        file = find_dataset_mask(path, masks=masks, rel_path=rel,
                                 named=named if isinstance(named, (str, Path)) else None)
        try:
            found = dataset_mask(file, shape)
            why = None if found is None or 0 < found.mean() < 1 else (
                "it marks no lung" if not found.any() else "it marks the whole film as lung")
        except ImageReadError as exc:
            found, why = None, f"it cannot be read ({exc})"
        if why:
            warnings.warn(f"lung mask {file}: {why}; the film's lungs are predicted instead",
                          stacklevel=2)
            found = None
        own = predicted[i] if predicted is not None else None  # None: segmented below
        out.append(own if found is None else LungSegmentation(found, 1.0, False, "dataset"))
    todo = [i for i, seg in enumerate(out) if seg is None]
    if todo:
        for i, seg in zip(todo, segment_batch([films[i] for i in todo], batch_size, weights=weights)):
            out[i] = seg
    return out  # type: ignore[return-value]
