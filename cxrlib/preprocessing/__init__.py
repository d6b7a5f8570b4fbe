"""Preprocessing of decoded films: the steps (:mod:`.steps`), the pipeline (:mod:`.pipeline`),
where the model input lies on the film (:mod:`.geometry`) and the on-disk tensor cache
(:mod:`.tensor_cache`); the steps, the pipeline and the geometry in one namespace."""
from cxrlib.preprocessing.geometry import (crop_to_box, crops_to_lungs, input_box,
                                           input_lung_fields, input_lung_share, mask_to_input)
from cxrlib.preprocessing.pipeline import (preprocess_film, preprocess_preview,
                                           preprocess_reference, to_model_input)
from cxrlib.preprocessing.steps import (apply_gamma, channel_histogram, channels_equal, clahe,
                                        gamma_lut, grey_if_channels_equal, histogram,
                                        percentiles_from_histogram, resize_square, stretch_lut,
                                        to_grey, white_balance, white_balance_reference)

__all__ = ["apply_gamma", "channel_histogram", "channels_equal", "clahe", "crop_to_box",
           "crops_to_lungs", "gamma_lut", "grey_if_channels_equal", "histogram", "input_box",
           "input_lung_fields", "input_lung_share", "mask_to_input", "percentiles_from_histogram",
           "preprocess_film", "preprocess_preview", "preprocess_reference", "resize_square",
           "stretch_lut", "to_grey", "to_model_input", "white_balance", "white_balance_reference"]
