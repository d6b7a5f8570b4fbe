"""Explanations: class activation maps, overlays at the film's resolution, and faithfulness checks.

Importing this package does not import TensorFlow; building a CAM does.

Typical use::

    from cxrlib import explain

    cam = explain.get_cam("gradcam", model)            # block_16_depthwise for MobileNetV2
    heatmaps, probs = cam(batch)                       # (N, S, S) in [0, 1], (N, C)
    rgb = explain.overlay(film, heatmaps[0], alpha=0.4, colormap="jet")   # film's own size
    png = explain.to_png(rgb)
"""
from cxrlib.explain.base import CAM, normalise, predict_probs
from cxrlib.explain.faithfulness import (deletion_insertion, deletion_score, layers_above, randomisation_check,
                           ssim)
from cxrlib.explain.graph import MOBILENETV2_LAYERS, conv_layer_names, default_layer
from cxrlib.explain.methods import CAM_METHODS, GRADIENT_METHODS, GradCAM, GradCAMPlusPlus, ScoreCAM, get_cam
from cxrlib.explain.overlay import COLORMAPS, CONTOUR_LEVELS, colormap_lut, overlay, to_png

__all__ = [
    "CAM", "CAM_METHODS", "COLORMAPS", "CONTOUR_LEVELS", "GRADIENT_METHODS", "GradCAM",
    "GradCAMPlusPlus", "MOBILENETV2_LAYERS", "ScoreCAM", "colormap_lut", "conv_layer_names",
    "default_layer", "deletion_insertion", "deletion_score", "get_cam", "layers_above", "normalise",
    "overlay", "predict_probs", "randomisation_check", "ssim", "to_png",
]
