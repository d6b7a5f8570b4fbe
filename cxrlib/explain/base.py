"""The CAM base: forward and backward pass on a separate gradient model, ReLU, resize, normalise.

A class activation map for class c at layer L is ``ReLU(sum_k w_k^c A_k)``, where ``A_k`` is the
k-th channel of L's activations and each method chooses the channel weights ``w^c`` (Grad-CAM:
the spatial mean of the gradient of the class score with respect to ``A_k``). This module does
everything but the weighting, as jacobgil/pytorch-grad-cam's ``BaseCAM`` does: methods are small
subclasses (:mod:`cxrlib.explain.gradient_methods`, :mod:`cxrlib.explain.gradient_free`) that
implement :meth:`CAM.channel_weights` only, or, for the element-wise methods (HiResCAM,
LayerCAM) whose map is not a weighted sum of channels, :meth:`CAM.combine`.

Each method declares what it needs of the layer's activations (:attr:`CAM.activations`: any sign,
or non-negative) and, when no layer is given, explains a layer where that holds
(:func:`cxrlib.explain.graph.default_layer`). A map without contrast is never returned as if it
were an explanation: it comes back as zeros and flagged (:class:`Explanation`,
:mod:`cxrlib.explain.maps`).

The class score differentiated is the pre-softmax logit when it can be recovered from the
model's output layer without changing the model, otherwise ``log p_c``; see
:func:`cxrlib.explain.graph.score_kind`. The user's model is never modified: the gradient model
(:mod:`cxrlib.explain.engine`) is a new Keras model sharing its layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cxrlib.explain.engine import _tf, engine
from cxrlib.explain.graph import (ANY, NON_NEGATIVE, conv_layer_names, default_layer, find_layer,
                                  layer_activations, valid_layers)
from cxrlib.explain.maps import (effective_resolution, is_flat, normalise, principal_projection,
                                 resize_maps, to_heatmaps)

Target = int | Sequence[int] | None


def as_batch(inputs: np.ndarray) -> np.ndarray:
    """``inputs`` as a float32 ``(N, S, S, C)`` batch (a single ``(S, S, C)`` image gets N = 1).

    Raises:
        ValueError: for another number of dimensions.
    """
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, S, S, 3), got {np.shape(inputs)}")
    return x


def resolve_targets(target: Target, n: int) -> np.ndarray:
    """Per-image class indices as int32 ``(n,)``; ``-1`` means "the predicted class"."""
    if target is None:
        return np.full(n, -1, np.int32)
    t = np.asarray(target, dtype=np.int32).reshape(-1)
    if t.size == 1:
        return np.full(n, int(t[0]), np.int32)
    if t.size != n:
        raise ValueError(f"got {t.size} targets for {n} images")
    return t


def check_targets(targets: np.ndarray, n_classes: int) -> None:
    """Refuse class indices outside ``[-1, n_classes)`` (checked before any graph runs: inside a
    compiled graph a bad index is an opaque TensorFlow error).

    Raises:
        ValueError: naming the valid range and the bad targets.
    """
    if targets.size and (targets.min() < -1 or targets.max() >= n_classes):
        raise ValueError(f"target class index must be in [0, {n_classes - 1}] (or None for the "
                         f"predicted class), got {sorted(set(targets.tolist()))}")


def predict_probs(model: Any, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities ``(N, C)`` through the one compiled forward pass (inference mode)."""
    from cxrlib.models.inference import predict  # noqa: PLC0415

    return predict(model, as_batch(x), batch_size=batch_size)


@dataclass(frozen=True)
class Explanation:
    """Heatmaps of a batch and what they explain.

    Attributes:
        heatmaps: float32 ``(N, S, S)`` in [0, 1] at the input size; all zeros where flat.
        probs: the model's float32 ``(N, C)`` probabilities.
        targets: int32 ``(N,)`` class explained per image (the predicted one when not given).
        flat: bool ``(N,)``: the map has no contrast (:mod:`cxrlib.explain.maps`); it is not an
            explanation and must not be drawn as one.
        method: the method's registry name; ``layer``: the explained layer.
        layer_valid: the layer's activations are what the method needs (:attr:`CAM.activations`).
    """

    heatmaps: np.ndarray
    probs: np.ndarray
    targets: np.ndarray
    flat: np.ndarray
    method: str
    layer: str
    layer_valid: bool


class CAM:
    """A class activation map method over one layer of one model.

    Args:
        model: a Keras model taking float32 ``(N, S, S, 3)`` in [0, 1] and returning
            ``(N, n_classes)`` probabilities; flat, sequential, or with a nested backbone.
        layer: a name from :func:`conv_layer_names`, or ``None`` for
            ``default_layer(model, self.activations)`` (for MobileNetV2: ``block_16_depthwise``
            for methods taking signed activations, ``out_relu`` for those needing non-negative
            ones; else the last conv-like layer that fits).

    Attributes:
        name: the registry name; ``label``: the name people read (``"Grad-CAM++"``).
        activations: what the method needs of the layer: ``"any"`` (signed activations are
            fine) or ``"non_negative"`` (its closed form assumes ``A >= 0``, e.g. after a ReLU).
        uses_gradients: whether the backward pass is needed.
        class_specific: whether the map depends on the explained class.
        uses_layer: False for a model-agnostic method (occlusion), which explains the input.
        supports_eigen_smooth: whether the map is a sum over channels that eigen-smoothing
            can replace by its principal component (:meth:`explain`).
        layer_valid: ``layer``'s activations are what the method needs; a method may still be
            run on another layer, its flat maps are then reported (:class:`Explanation`).

    Raises:
        ValueError: when ``layer`` is not a conv-like layer of ``model`` (lists the valid ones).
    """

    name = "cam"
    label = "CAM"
    activations = ANY
    uses_gradients = True
    class_specific = True
    supports_eigen_smooth = True
    uses_layer = True

    def __init__(self, model: Any, layer: str | None = None) -> None:
        _tf()
        self.model = model
        self.layer = layer if layer is not None else default_layer(model, self.activations)
        find_layer(model, self.layer)  # clear error before any graph is built
        self.layer_valid = (self.activations == ANY
                            or layer_activations(model, self.layer) == NON_NEGATIVE)
        self._engine = engine(model, self.layer)

    @property
    def grad_model(self) -> Any:
        """The separate Keras model ``inputs -> [activations, score source, probabilities]``."""
        return self._engine.tap

    @property
    def score(self) -> str:
        """Which class score is differentiated: ``dense_logit``, ``logit`` or ``log_prob``."""
        return self._engine.kind

    def __call__(self, inputs: np.ndarray, target: Target = None) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps for a batch: ``(heatmaps, probs)`` of :meth:`explain` (see there).

        Returns:
            float32 ``(N, S, S)`` in [0, 1] at the input size (all zeros where the map is flat,
            e.g. has no positive evidence), and the model's ``(N, C)`` probabilities.
        """
        result = self.explain(inputs, target)
        return result.heatmaps, result.probs

    def explain(self, inputs: np.ndarray, target: Target = None, *,
                eigen_smooth: bool = False) -> Explanation:
        """Heatmaps for a batch, with the explained classes and which maps are flat.

        Args:
            inputs: float32 ``(N, S, S, 3)`` in [0, 1] (a single ``(S, S, 3)`` image is a batch of 1).
                Never modified.
            target: class index to explain, one per image, or ``None`` for each predicted class
                (``-1`` in a per-image list also means the predicted class).
            eigen_smooth: replace the sum over channels of the weighted activations by their
                first principal component (:func:`cxrlib.explain.maps.principal_projection`,
                pytorch-grad-cam's ``eigen_smooth``): less noise, same place. Only for methods
                whose map is such a sum (:attr:`supports_eigen_smooth`).

        Returns:
            An :class:`Explanation`.

        Raises:
            ValueError: for a target that is not a class index of the model, a wrong number
                of targets, or ``eigen_smooth`` on a method that does not allow it.
        """
        if eigen_smooth and not self.supports_eigen_smooth:
            raise ValueError(f"{self.label} does not allow eigen-smoothing")
        x = as_batch(inputs)
        targets = resolve_targets(target, len(x))
        check_targets(targets, int(self.model.output_shape[-1]))
        acts, grads, probs, resolved = self.forward(x, targets)
        if eigen_smooth:
            weighted = self.weighted_activations(acts, grads, x, resolved)
            raw = principal_projection(weighted, weighted.sum(axis=-1))
        else:
            raw = self.combine(acts, grads, x, resolved)
        heatmaps, flat = to_heatmaps(raw, x.shape[1:3])
        return Explanation(heatmaps, probs.astype(np.float32), resolved.astype(np.int32), flat,
                           self.name, self.layer, self.layer_valid)

    def forward(self, x: np.ndarray, targets: np.ndarray):
        """``(activations, gradients or None, probs, resolved targets)`` of the layer for a batch,
        from the compiled functions of the engine (one pass; gradients only when needed)."""
        if self.uses_gradients:
            acts, grads, probs, resolved = (np.asarray(t) for t in self._engine.gradient_fn(
                x.shape)(x, targets))
            return acts, grads, probs, resolved
        acts, probs, resolved = (np.asarray(t) for t in self._engine.activation_fn(x.shape)(
            x, targets))
        return acts, None, probs, resolved

    @property
    def cells_per_side(self) -> int | None:
        """Cells per side of the map before it is resized (the explained layer's grid at the
        model's input size, e.g. 7 for MobileNetV2's ``out_relu`` at 224 px); None if unknown."""
        side = find_layer(self.model, self.layer)[1].output.shape[1]
        return int(side) if side else None

    def resolution(self, film_side: int | None = None) -> dict[str, Any]:
        """The map's effective resolution: ``cells_per_side``, ``input_px_per_cell`` (model
        input pixels a map cell covers) and ``film_px_per_cell`` (for a film whose longer side
        is ``film_side``; None when not given)."""
        return effective_resolution(self.cells_per_side, self.model.input_shape[1], film_side)

    def combine(self, activations: np.ndarray, gradients: np.ndarray | None, inputs: np.ndarray,
                targets: np.ndarray) -> np.ndarray:
        """The raw map ``(N, h, w)`` before ReLU, resize and normalisation.

        By default ``sum_k w_k A_k`` with ``w`` from :meth:`channel_weights`; element-wise
        methods override :meth:`weighted_activations` instead. Arguments as
        :meth:`channel_weights`.
        """
        weights = self.channel_weights(activations, gradients, inputs, targets)
        return np.einsum("nhwk,nk->nhw", activations, np.asarray(weights, np.float32))

    def weighted_activations(self, activations: np.ndarray, gradients: np.ndarray | None,
                             inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The terms ``(N, h, w, K)`` whose sum over channels is the raw map: ``w_k A_k`` (what
        eigen-smoothing takes the principal component of)."""
        weights = np.asarray(self.channel_weights(activations, gradients, inputs, targets), np.float32)
        return activations * weights[:, None, None, :]

    def channel_weights(self, activations: np.ndarray, gradients: np.ndarray | None,
                        inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The weight of each channel for each image, ``(N, K)``; what a method defines.

        Args:
            activations: ``(N, h, w, K)`` activations of the layer.
            gradients: ``(N, h, w, K)`` gradients of the class score (``None`` for
                gradient-free methods).
            inputs: the ``(N, S, S, 3)`` batch (for methods that run the model again).
            targets: ``(N,)`` resolved class indices.
        """
        raise NotImplementedError


__all__ = ["ANY", "CAM", "Explanation", "NON_NEGATIVE", "as_batch", "check_targets", "conv_layer_names",
           "default_layer", "is_flat", "normalise", "predict_probs", "resize_maps",
           "resolve_targets", "valid_layers"]
