"""Preprocessing of decoded films: the steps (:mod:`.steps`), the pipeline (:mod:`.pipeline`)
and the on-disk tensor cache (:mod:`.tensor_cache`); the steps and the pipeline in one namespace."""
from cxrlib.preprocessing.pipeline import (preprocess_film, preprocess_preview,
                                           preprocess_reference, to_model_input)
from cxrlib.preprocessing.steps import (apply_gamma, channel_histogram, channels_equal, clahe,
                                        gamma_lut, grey_if_channels_equal, histogram,
                                        percentiles_from_histogram, resize_square, stretch_lut,
                                        to_grey, white_balance, white_balance_reference)

__all__ = ["apply_gamma", "channel_histogram", "channels_equal", "clahe", "gamma_lut",
           "grey_if_channels_equal", "histogram", "percentiles_from_histogram",
           "preprocess_film", "preprocess_preview", "preprocess_reference", "resize_square",
           "stretch_lut", "to_grey", "to_model_input", "white_balance", "white_balance_reference"]
