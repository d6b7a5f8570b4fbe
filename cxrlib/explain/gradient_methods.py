"""CAM methods built on the gradient ``g = dS_c / dA`` of the class score at the explained layer.

Notation: ``A`` the layer's activations ``(h, w, K)``, ``A_k`` channel k, ``g`` the gradient of
the class score ``S_c`` (the logit, see :mod:`cxrlib.explain.base`) with respect to ``A``; every
map below goes through the base's ReLU, resize and min-max scaling (flat maps are reported).

- Grad-CAM and HiResCAM take signed activations: their weights or products carry the sign.
- Grad-CAM++, XGrad-CAM and LayerCAM assume ``A >= 0`` (their derivations start from a ReLU
  layer; on a signed layer they can return flat maps), so they default to a non-negative layer.
"""
from __future__ import annotations

import numpy as np

from cxrlib.explain.base import CAM
from cxrlib.explain.graph import ANY, NON_NEGATIVE


class GradCAM(CAM):
    """Grad-CAM: channels weighted by their spatially averaged gradient.

    Selvaraju et al., "Grad-CAM: Visual explanations from deep networks via gradient-based
    localization", ICCV 2017: ``w_k = mean_ij g_k[i, j]``, map ``ReLU(sum_k w_k A_k)``.
    """

    name = "gradcam"
    label = "Grad-CAM"
    activations = ANY

    def channel_weights(self, activations, gradients, inputs, targets):
        return gradients.mean(axis=(1, 2))


class GradCAMPlusPlus(CAM):
    """Grad-CAM++: positive gradients weighted pixel by pixel with the closed-form alphas.

    Chattopadhay et al., "Grad-CAM++: Generalized gradient-based visual explanations for deep
    convolutional networks", WACV 2018, the closed form for an exponential score (as pytorch-grad-cam):
    ``alpha = g^2 / (2 g^2 + sum_ab A_k[a, b] g^3)``, ``w_k = sum_ij alpha_ij ReLU(g_ij)``. The
    weights are derived for ``A >= 0``; on a signed layer ``sum_k w_k A_k`` is often negative
    everywhere and the map flat (MobileNetV2's ``block_16_depthwise``: 17 of 32 real films).
    """

    name = "gradcam++"
    label = "Grad-CAM++"
    activations = NON_NEGATIVE

    def channel_weights(self, activations, gradients, inputs, targets):
        g2 = gradients.astype(np.float64) ** 2
        g3 = g2 * gradients
        sum_a = activations.sum(axis=(1, 2), keepdims=True, dtype=np.float64)
        denom = 2.0 * g2 + sum_a * g3
        alpha = np.where(gradients != 0, g2 / np.where(denom != 0, denom, 1.0), 0.0)
        return (alpha * np.maximum(gradients, 0)).sum(axis=(1, 2)).astype(np.float32)


class HiResCAM(CAM):
    """HiResCAM: the gradient times the activation, element by element, summed over channels.

    Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
    convolutional neural networks", arXiv:2011.08891 (2020): ``M[i, j] = sum_k g_k[i, j]
    A_k[i, j]``. Not a channel weighting (Grad-CAM averages ``g`` over space first, HiResCAM
    does not), so it overrides :meth:`combine` (and :meth:`weighted_activations`). For a layer followed only by global average
    pooling and a linear score, ``sum_ij M[i, j]`` is exactly that score less its bias, and the
    gradient is constant over space, so HiResCAM and Grad-CAM coincide; they differ when layers
    with a spatial extent follow (MobileNetV2's ``block_16_depthwise``).
    """

    name = "hirescam"
    label = "HiResCAM"
    activations = ANY

    def combine(self, activations, gradients, inputs, targets):
        return np.einsum("nhwk,nhwk->nhw", gradients, activations)

    def weighted_activations(self, activations, gradients, inputs, targets):
        return gradients * activations


class XGradCAM(CAM):
    """XGrad-CAM: gradients averaged with the activation map as weights.

    Fu et al., "Axiom-based Grad-CAM: Towards accurate visualization and explanation of CNNs",
    BMVC 2020: ``w_k = sum_ij (A_k[i, j] / sum_ab A_k[a, b]) g_k[i, j]`` (a channel that
    is zero everywhere weighs 0). The normalisation by ``sum A_k`` assumes ``A >= 0``.
    """

    name = "xgradcam"
    label = "XGrad-CAM"
    activations = NON_NEGATIVE

    def channel_weights(self, activations, gradients, inputs, targets):
        a = activations.astype(np.float64)
        total = a.sum(axis=(1, 2))
        weighted = (a * gradients).sum(axis=(1, 2))
        return np.where(total != 0, weighted / np.where(total != 0, total, 1.0), 0.0)


class LayerCAM(CAM):
    """LayerCAM: each activation weighted by its own positive gradient.

    Jiang et al., "LayerCAM: Exploring hierarchical class activation maps for localization",
    IEEE TIP 30 (2021): ``M[i, j] = ReLU(sum_k ReLU(g_k[i, j]) A_k[i, j])``. Element-wise
    (overrides :meth:`combine`); with ``A >= 0`` every term is non-negative, on a layer of
    negative activations every term is <= 0 and the map flat. (The paper's tanh rescaling is
    for fusing maps of several layers: :class:`FusedLayerCAM`.)
    """

    name = "layercam"
    label = "LayerCAM"
    activations = NON_NEGATIVE

    def combine(self, activations, gradients, inputs, targets):
        return np.einsum("nhwk,nhwk->nhw", np.maximum(gradients, 0.0), activations)

    def weighted_activations(self, activations, gradients, inputs, targets):
        return np.maximum(gradients, 0.0) * activations


def competitors(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per image, the class nearest to the explained one: the most probable other class."""
    ranked = np.argsort(-np.asarray(probs), axis=1, kind="stable")
    first_other = np.where(ranked[:, 0] == targets, ranked[:, 1], ranked[:, 0])
    return first_other.astype(np.int32)


class FinerCAM(GradCAM):
    """Finer-CAM: Grad-CAM of the difference between the explained class and its nearest competitor.

    Zhang et al., "Finer-CAM: Spotting the difference reveals finer details for visual
    explanation", CVPR 2025: the map explains ``S_c - alpha S_d``, ``d`` the most probable other
    class (:func:`competitors`), so what the two classes share cancels and what tells them apart
    stays; here it separates COVID-19 from Viral Pneumonia, the two pneumonias. The gradient
    is linear, so ``d(S_c - alpha S_d)/dA = g_c - alpha g_d`` (two backward passes of the shared
    engine); channels are weighted as Grad-CAM does.

    Args:
        model, layer: as :class:`~cxrlib.explain.base.CAM`.
        competitor: the class to contrast with, or ``None`` for each image's nearest one.
        alpha: weight of the competitor's score (1: the plain difference).
    """

    name = "finercam"
    label = "Finer-CAM (vs nearest class)"
    activations = ANY

    def __init__(self, model, layer=None, *, competitor: int | None = None, alpha: float = 1.0):
        super().__init__(model, layer)
        self.competitor, self.alpha = competitor, float(alpha)

    def forward(self, x, targets):
        acts, grads, probs, resolved = super().forward(x, targets)
        other = (competitors(probs, resolved) if self.competitor is None
                 else np.full(len(x), self.competitor, np.int32))
        if self.competitor is not None and (resolved == other).any():
            raise ValueError(f"class {self.competitor} cannot be contrasted with itself")
        _, grads_other, _, _ = super().forward(x, other)
        return acts, grads - self.alpha * grads_other, probs, resolved
