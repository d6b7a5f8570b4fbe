"""The registry of CAM methods: names, what each needs of its layer, and ``get_cam``.

Each method is a small subclass of :class:`cxrlib.explain.base.CAM` that defines only how the
explained layer's channels are weighted (or, for the element-wise ones, combined); the reference
of each is in its docstring.

- gradient methods (:mod:`cxrlib.explain.gradient_methods`): ``gradcam``, ``gradcam++``,
  ``hirescam``, ``xgradcam``, ``layercam``, ``finercam`` (the explained class against its
  nearest competitor);
- gradient-free (:mod:`cxrlib.explain.gradient_free`): ``scorecam``, ``faster-scorecam``,
  ``ablationcam``, ``eigencam``;
- finer maps: ``layercam-fused`` (:mod:`cxrlib.explain.multiscale`, LayerCAM over 2-3 strides)
  and ``occlusion`` (:mod:`cxrlib.explain.occlusion`, model-agnostic, no layer).

Every method reports its effective resolution (``CAM.resolution()``: cells per side, pixels
per cell).

What a method needs of its layer (``activations``: ``"any"`` or ``"non_negative"``) decides its
default layer (:func:`method_default_layer`) and the layers it is valid on (:func:`method_layers`).
"""
from __future__ import annotations

from typing import Any

from cxrlib.explain.base import CAM
from cxrlib.explain.gradient_free import AblationCAM, EigenCAM, FasterScoreCAM, ScoreCAM
from cxrlib.explain.gradient_methods import (FinerCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM,
                                              XGradCAM)
from cxrlib.explain.graph import default_layer, valid_layers
from cxrlib.explain.multiscale import FusedLayerCAM
from cxrlib.explain.occlusion import INPUT_LAYER, Occlusion

CAM_METHODS: dict[str, type[CAM]] = {cls.name: cls for cls in (
    GradCAM, GradCAMPlusPlus, ScoreCAM, FasterScoreCAM, HiResCAM, XGradCAM, LayerCAM,
    AblationCAM, EigenCAM, FusedLayerCAM, Occlusion, FinerCAM)}
"""Registered CAM methods by name, in the order a method list shows them (Grad-CAM first)."""

GRADIENT_METHODS = tuple(name for name, cls in CAM_METHODS.items() if cls.uses_gradients)
"""Names of the methods that use gradients."""


def _method(name: str) -> type[CAM]:
    try:
        return CAM_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown CAM method {name!r}; choose one of {sorted(CAM_METHODS)}") from None


def get_cam(name: str, model: Any, layer: str | None = None, **options: Any) -> CAM:
    """A registered CAM method bound to ``model`` and ``layer``.

    Args:
        name: a key of :data:`CAM_METHODS` (``"gradcam"``, ``"gradcam++"``, ``"scorecam"``, ...).
        model: the Keras model to explain (never modified).
        layer: a name from :func:`~cxrlib.explain.graph.conv_layer_names`, or ``None`` for the
            method's default layer (:func:`method_default_layer`).
        **options: method-specific options (e.g. ``max_channels`` for ``scorecam``).

    Raises:
        ValueError: for an unknown method name or layer; the message lists the valid ones.
    """
    return _method(name)(model, layer, **options)  # an unknown layer raises in CAM.__init__


def method_label(name: str) -> str:
    """The name people read (``"gradcam++"`` -> ``"Grad-CAM++"``)."""
    return _method(name).label


def layer_label(layer: str, layers: list[str] | tuple[str, ...] = ()) -> str:
    """The name people read for a layer: ``"the last block"`` for the last conv-like layer of
    ``layers`` (MobileNetV2's ``out_relu``), ``"block 16"`` for ``block_16_depthwise``, else
    the layer's own name; the code name follows in brackets."""
    import re  # noqa: PLC0415

    if layers and layer == layers[-1]:
        return f"the last block ({layer})"
    found = re.match(r"block_(\d+)_", layer)
    return f"block {found.group(1)} ({layer})" if found else layer


def method_default_layer(name: str, model: Any) -> str:
    """The layer method ``name`` explains on ``model`` when none is given (valid for it);
    :data:`~cxrlib.explain.occlusion.INPUT_LAYER` for a method that explains the input."""
    cls = _method(name)
    return default_layer(model, cls.activations) if cls.uses_layer else INPUT_LAYER


def method_layers(name: str, model: Any) -> list[str]:
    """The conv-like layers of ``model`` whose activations method ``name`` can explain
    (``[INPUT_LAYER]`` for a method that explains the input)."""
    cls = _method(name)
    return valid_layers(model, cls.activations) if cls.uses_layer else [INPUT_LAYER]


__all__ = ["AblationCAM", "CAM_METHODS", "EigenCAM", "FasterScoreCAM", "FinerCAM", "FusedLayerCAM",
           "GRADIENT_METHODS", "GradCAM", "INPUT_LAYER", "Occlusion", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "ScoreCAM", "XGradCAM", "get_cam",
           "method_default_layer", "method_label", "method_layers"]
