"""Lung fields of chest films: a learned segmenter shipped with its weights, and measures on masks.

Everything in cxrlib that says "lungs" (CAM-in-lung share, masked evaluation, the audit gallery,
the lung-crop step, the Explain outline) takes its masks from here. A dataset's own masks win
where it has them (:func:`lung_fields`); every result says which it is (``source``).

* :func:`segment_lungs` / :func:`segment_batch`: the U-Net of :mod:`cxrlib.lungs.network`, its
  weights loaded once per process from ``cxrlib/lungs/assets`` (see ``assets/MODEL_CARD.md``).
* :func:`dataset_mask`, :func:`find_dataset_mask`, :class:`MaskIndex`: a dataset's own masks
  (cxr3-lungs layout: 255 lung, 127 ignore, 0 background; Radiography DB ``masks/``: 0 / 255).
* :func:`dice`, :func:`cam_in_lung_share`, :func:`lung_box`: measures on masks.
* :func:`draw_lung_outline`: the one way a mask is drawn over an image.

The masks in the model input's geometry (lung crop included) are
:func:`cxrlib.preprocessing.geometry.input_lung_fields`.

Importing this package does not import TensorFlow; the first segmentation does.
"""
from cxrlib.lungs.masks import MaskIndex, dataset_mask, find_dataset_mask, read_mask_levels
from cxrlib.lungs.measures import cam_in_lung_share, dice, lung_box
from cxrlib.lungs.outline import draw_lung_outline
from cxrlib.lungs.segmenter import (LungSegmentation, load_segmenter, lung_fields, mask_quality,
                                    segment_batch, segment_lungs)

__all__ = ["LungSegmentation", "MaskIndex", "cam_in_lung_share", "dataset_mask", "dice",
           "draw_lung_outline", "find_dataset_mask", "load_segmenter", "lung_box", "lung_fields",
           "mask_quality", "read_mask_levels", "segment_batch", "segment_lungs"]
