"""CAM methods: each defines only how the channels of the explained layer are weighted.

- ``gradcam``: Selvaraju et al. 2017, ``w_k = mean_ij dS/dA_k[i, j]``.
- ``gradcam++``: Chattopadhay et al. 2018, ``w_k = sum_ij alpha_k[i, j] ReLU(dS/dA_k[i, j])`` with
  ``alpha = g^2 / (2 g^2 + sum_ij A_k g^3)`` (the closed form for an exponential score, as in
  pytorch-grad-cam).
- ``scorecam``: Wang et al. 2020, gradient-free: each channel, upsampled and min-max scaled to
  [0, 1], masks the input; its weight is the increase of the class probability over a black
  image, ``p_c(x * mask_k) - p_c(0)`` (the paper's "channel-wise increase of confidence"; the
  softmax over channels that some implementations add is left out because our models output
  probabilities, not logits, and a softmax over values in [0, 1] is almost uniform).
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from cxrlib.explain.base import CAM, predict_probs


class GradCAM(CAM):
    """Grad-CAM: channels weighted by their spatially averaged gradient."""

    name = "gradcam"

    def channel_weights(self, activations, gradients, inputs, targets):
        return gradients.mean(axis=(1, 2))


class GradCAMPlusPlus(CAM):
    """Grad-CAM++: positive gradients weighted pixel by pixel with the closed-form alphas."""

    name = "gradcam++"

    def channel_weights(self, activations, gradients, inputs, targets):
        g2 = gradients.astype(np.float64) ** 2
        g3 = g2 * gradients
        sum_a = activations.sum(axis=(1, 2), keepdims=True, dtype=np.float64)
        denom = 2.0 * g2 + sum_a * g3
        alpha = np.where(gradients != 0, g2 / np.where(denom != 0, denom, 1.0), 0.0)
        return (alpha * np.maximum(gradients, 0)).sum(axis=(1, 2)).astype(np.float32)


class ScoreCAM(CAM):
    """Score-CAM: channels weighted by how much the input they reveal raises the class probability.

    Args:
        model, layer: as :class:`~cxrlib.explain.base.CAM`.
        max_channels: only the channels with the largest mean activation (per image) are scored,
            the others get weight 0; ``None`` scores all (MobileNetV2's ``block_16_depthwise``
            has 960, about 25 s per image on a 2-core CPU; 128 take a few seconds).
        batch_size: masked images per forward pass.
    """

    name = "scorecam"
    uses_gradients = False

    def __init__(self, model: Any, layer: str | None = None, *, max_channels: int | None = 128,
                 batch_size: int = 32) -> None:
        super().__init__(model, layer)
        self.max_channels = max_channels
        self.batch_size = batch_size

    def channel_weights(self, activations, gradients, inputs, targets):
        n, h, w, k = activations.shape
        size = inputs.shape[1:3]
        weights = np.zeros((n, k), np.float32)
        baseline = predict_probs(self.model, np.zeros_like(inputs[:1]), self.batch_size)[0]
        for i in range(n):
            channels = np.argsort(-activations[i].mean(axis=(0, 1)), kind="stable")
            if self.max_channels is not None:
                channels = channels[:self.max_channels]
            for start in range(0, len(channels), self.batch_size):
                chunk = channels[start:start + self.batch_size]
                masks = np.stack([cv2.resize(activations[i, :, :, c], (size[1], size[0]),
                                             interpolation=cv2.INTER_LINEAR) for c in chunk])
                lo = masks.min(axis=(1, 2), keepdims=True)
                span = masks.max(axis=(1, 2), keepdims=True) - lo
                masks = np.where(span > 0, (masks - lo) / np.where(span > 0, span, 1), 0)
                probs = predict_probs(self.model, inputs[i][None] * masks[..., None],
                                      self.batch_size)
                scores = probs[:, targets[i]] - baseline[targets[i]]
                weights[i, chunk] = np.where(span[:, 0, 0] > 0, scores, 0.0)
        return weights


CAM_METHODS: dict[str, type[CAM]] = {
    GradCAM.name: GradCAM,
    GradCAMPlusPlus.name: GradCAMPlusPlus,
    ScoreCAM.name: ScoreCAM,
}
"""Registered CAM methods by name."""

GRADIENT_METHODS = tuple(name for name, cls in CAM_METHODS.items() if cls.uses_gradients)
"""Names of the methods that use gradients."""


def get_cam(name: str, model: Any, layer: str | None = None, **options: Any) -> CAM:
    """A registered CAM method bound to ``model`` and ``layer``.

    Args:
        name: a key of :data:`CAM_METHODS` (``"gradcam"``, ``"gradcam++"``, ``"scorecam"``).
        model: the Keras model to explain (never modified).
        layer: a name from :func:`~cxrlib.explain.graph.conv_layer_names`, or ``None`` for the
            default layer.
        **options: method-specific options (e.g. ``max_channels`` for ``scorecam``).

    Raises:
        ValueError: for an unknown method name or layer; the message lists the valid ones.
    """
    try:
        cls = CAM_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown CAM method {name!r}; choose one of {sorted(CAM_METHODS)}") from None
    return cls(model, layer, **options)  # an unknown layer raises in CAM.__init__, listing the valid ones
