"""Explanations: class activation maps, overlays at the film's resolution, and faithfulness checks.

Importing this package does not import TensorFlow; building a CAM does.

Typical use::

    from cxrlib import explain

    cam = explain.get_cam("gradcam", model)            # block_16_depthwise for MobileNetV2
    heatmaps, probs = cam(batch)                       # (N, S, S) in [0, 1], (N, C)
    result = cam.explain(batch)                        # ... and which maps are flat
    rgb = explain.overlay(film, heatmaps[0], alpha=0.4, colormap="jet")   # film's own size
    png = explain.to_png(rgb)

A flat map (``result.flat``, :func:`is_flat`) is not an explanation: it comes back as zeros and
must not be drawn as one. ROAD (:mod:`cxrlib.explain.road`) scores how faithful a map is::

    explain.road_score(model, batch[:1], heatmaps[0])   # mean over 10-90 % of LeRF - MoRF

Methods that need non-negative activations (Grad-CAM++, Score-CAM, ...) default to a layer that
has them (``out_relu`` for MobileNetV2).
"""
from cxrlib.explain.base import CAM, Explanation, normalise, predict_probs
from cxrlib.explain.engine import warm_engines
from cxrlib.explain.faithfulness import (deletion_insertion, deletion_score, layers_above, randomisation_check,
                           ssim)
from cxrlib.explain.graph import (ANY, MOBILENETV2_LAYERS, NON_NEGATIVE, conv_layer_names,
                                  default_layer, layer_activations, valid_layers)
from cxrlib.explain.maps import FLAT_TOLERANCE, is_flat
from cxrlib.explain.methods import (CAM_METHODS, GRADIENT_METHODS, INPUT_LAYER, AblationCAM,
                                    EigenCAM, FasterScoreCAM, FinerCAM, FusedLayerCAM, Occlusion,
                                    GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM,
                                    ScoreCAM, XGradCAM, get_cam, method_default_layer,
                                    layer_label, method_label, method_layers)
from cxrlib.explain.overlay import (COLORMAPS, COLOUR_BAR_TITLE, CONTOUR_LEVELS, RESEARCH_ONLY,
                                   colormap_lut, drawn_levels, heat_layer, legend_strip, overlay)
from cxrlib.explain.png import to_png
from cxrlib.explain.road import RoadResult, impute_linear, random_heatmaps, road_curves, road_score
from cxrlib.explain.smoothing import SMOOTHINGS, explain_smoothed, explain_tta, smoothing_for

__all__ = [
    "ANY", "AblationCAM", "CAM", "CAM_METHODS", "COLORMAPS", "COLOUR_BAR_TITLE", "CONTOUR_LEVELS",
    "RESEARCH_ONLY", "drawn_levels", "heat_layer", "legend_strip", "EigenCAM",
    "Explanation", "FLAT_TOLERANCE", "FinerCAM", "FusedLayerCAM", "INPUT_LAYER", "Occlusion",
    "RoadResult", "SMOOTHINGS", "explain_smoothed", "explain_tta", "smoothing_for", "FasterScoreCAM", "GRADIENT_METHODS", "GradCAM",
    "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "MOBILENETV2_LAYERS", "NON_NEGATIVE", "ScoreCAM",
    "XGradCAM", "colormap_lut", "conv_layer_names", "default_layer", "deletion_insertion",
    "deletion_score", "get_cam", "impute_linear", "is_flat", "layer_activations", "layers_above",
    "layer_label", "method_default_layer", "method_label", "method_layers", "normalise", "overlay",
    "predict_probs", "random_heatmaps", "randomisation_check", "road_curves", "road_score", "ssim",
    "to_png", "valid_layers", "warm_engines",
]
