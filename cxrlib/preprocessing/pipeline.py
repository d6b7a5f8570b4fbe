"""The preprocessing pipeline: the configured steps in their order, from a decoded film to what
the model sees.

Order (see :class:`cxrlib.core.config.PreprocessConfig`): white balance per channel at native
resolution, then grey, then CLAHE and gamma in the configured order at native resolution, then
the lung crop (the box of both lungs plus a margin, from the learned segmenter run on the
decoded film: :func:`cxrlib.preprocessing.geometry.input_box`), then one ``INTER_AREA`` resize
to the model size. The crop comes after the intensity steps so that it only chooses which of
their pixels are resized: white balance and CLAHE give the same pixels with and without it.
:func:`preprocess_reference` is the same pipeline computed the published way
(``np.percentile`` white balance), kept to prove the fast path bit-exact and to time it.
"""
from __future__ import annotations

import cv2
import numpy as np

from cxrlib.core.config import PreprocessConfig
from cxrlib.preprocessing.geometry import crop_to_box, crops_to_lungs, input_box
from cxrlib.preprocessing.steps import (_check_film, apply_gamma, clahe, grey_if_channels_equal,
                                        resize_square, to_grey, white_balance,
                                        white_balance_reference)


def _grey_after_white_balance(film: np.ndarray, cfg: PreprocessConfig, reference: bool) -> np.ndarray:
    if "white_balance" not in cfg.steps:
        return to_grey(film)
    if reference:
        return to_grey(white_balance_reference(film, cfg.wb_percentile))
    # Equal channels get equal tables, and RGB2GRAY of (v, v, v) is v: one channel suffices.
    single = grey_if_channels_equal(film)
    return to_grey(white_balance(film if single is None else single, cfg.wb_percentile))


def _grey_steps(grey: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    for step in cfg.steps:
        if step == "clahe":
            grey = clahe(grey, cfg.clahe_clip_limit, cfg.clahe_tile_grid)
        elif step == "gamma" and cfg.gamma != 1.0:
            grey = apply_gamma(grey, cfg.gamma)
    return grey


def _lung_crop(grey: np.ndarray, film: np.ndarray, cfg: PreprocessConfig, segmentation) -> np.ndarray:
    if not crops_to_lungs(cfg):
        return grey
    return crop_to_box(grey, input_box(film, cfg, segmentation))


def preprocess_preview(film: np.ndarray, cfg: PreprocessConfig, segmentation=None) -> np.ndarray:
    """The configured steps at the film's native size (no resize): what the UI sliders show.

    Args:
        film: uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB.
        cfg: the preprocessing configuration.
        segmentation: the film's predicted lung field (:func:`cxrlib.lungs.segment_lungs`), when
            the caller has it; the lung crop segments the film itself otherwise.

    Returns:
        uint8 grey: ``(H, W)``, or the lung box's size with the lung crop.
    """
    film = _check_film(film)
    grey = _grey_steps(_grey_after_white_balance(film, cfg, reference=False), cfg)
    return _lung_crop(grey, film, cfg, segmentation)


def preprocess_film(film: np.ndarray, cfg: PreprocessConfig, segmentation=None) -> np.ndarray:
    """A decoded film as the model sees it (before scaling): grey ``cfg.size`` x ``cfg.size``.

    Order: white balance per channel at native resolution (when in ``cfg.steps``), grey, CLAHE
    and gamma in ``cfg.steps`` order, the lung crop (when in ``cfg.steps``), ``INTER_AREA`` resize,
    then the intensity standardisation (``cfg.standardise``).

    Args:
        film: uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB.
        cfg: the preprocessing configuration.
        segmentation: as for :func:`preprocess_preview`.

    Returns:
        uint8 ``(cfg.size, cfg.size)``.
    """
    return _standardised(resize_square(preprocess_preview(film, cfg, segmentation), cfg.size), cfg)


def _standardised(grey: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Intensity standardisation of the model-sized film (issue 23; :mod:`.standardise`)."""
    if cfg.standardise == "none":
        return grey
    if not cfg.standard_scale:
        raise ValueError("standardise='nyul' has no learned scale yet: learn it on the training "
                         "rows first (cxrlib.training.standardisation.resolve_standardisation)")
    from cxrlib.preprocessing.standardise import standardise_film  # noqa: PLC0415

    return standardise_film(grey, cfg.standard_scale)


def preprocess_reference(film: np.ndarray, cfg: PreprocessConfig, segmentation=None) -> np.ndarray:
    """:func:`preprocess_film` computed the published way (``np.percentile`` white balance).

    Slow; it exists to prove the fast path bit-exact and to time it in ``bench/preprocess.py``.
    """
    film = _check_film(film)
    grey = _grey_steps(_grey_after_white_balance(film, cfg, reference=True), cfg)
    grey = _lung_crop(grey, film, cfg, segmentation)
    # Published order: grey back to 3 channels, then resize. Each channel is resized on its
    # own, so channel 0 equals resizing the grey film once (what the fast path does).
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    return _standardised(np.ascontiguousarray(resize_square(rgb, cfg.size)[:, :, 0]), cfg)


def to_model_input(grey_batch: np.ndarray) -> np.ndarray:
    """Grey uint8 ``(N, S, S)`` (or one ``(S, S)``) to float32 ``(N, S, S, 3)`` in [0, 1].

    The grey value is repeated on 3 channels, as the published pipeline converts back to RGB.
    """
    grey_batch = np.asarray(grey_batch)
    if grey_batch.dtype != np.uint8:
        raise ValueError(f"model input needs uint8 grey films, got {grey_batch.dtype}")
    if grey_batch.ndim == 2:
        grey_batch = grey_batch[None]
    if grey_batch.ndim != 3:
        raise ValueError(f"expected (N, S, S) grey films, got shape {grey_batch.shape}")
    scaled = grey_batch.astype(np.float32) / np.float32(255.0)
    return np.repeat(scaled[..., None], 3, axis=-1)

