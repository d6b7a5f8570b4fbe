"""The CAM base: forward and backward pass on a separate gradient model, ReLU, resize, normalise.

A class activation map for class c at layer L is ``ReLU(sum_k w_k^c A_k)``, where ``A_k`` is the
k-th channel of L's activations and each method chooses the channel weights ``w^c`` (Grad-CAM:
the spatial mean of the gradient of the class score with respect to ``A_k``). This module does
everything but the weighting, as jacobgil/pytorch-grad-cam's ``BaseCAM`` does: methods are small
subclasses (:mod:`cxrlib.explain.methods`) that implement :meth:`CAM.channel_weights` only.

The class score differentiated is the pre-softmax logit when it can be recovered from the
model's output layer without changing the model, otherwise ``log p_c``; see
:func:`cxrlib.explain.graph.score_kind`. The user's model is never modified: the gradient model
is a new Keras model sharing its layers (:func:`cxrlib.explain.graph.build_tap_model`), built once
per (model, layer) and kept in a weak cache, with one ``tf.function`` per image shape (its input
signature fixes the image shape and leaves the batch size free, so it never retraces).
"""
from __future__ import annotations

import weakref
from typing import Any, Sequence

import cv2
import numpy as np

from cxrlib.explain.graph import (SCORE_DENSE_LOGIT, SCORE_LOGIT, build_tap_model, conv_layer_names,
                    default_layer, find_layer)

Target = int | Sequence[int] | None

_ENGINES: "weakref.WeakKeyDictionary[Any, dict[str, _Engine]]" = weakref.WeakKeyDictionary()


def _tf():
    from cxrlib.core.tfsetup import tf

    return tf()


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


def predict_probs(model: Any, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities ``(N, C)`` through the one compiled forward pass (inference mode)."""
    from cxrlib.models.inference import predict  # noqa: PLC0415

    return predict(model, as_batch(x), batch_size=batch_size)


class _Engine:
    """The gradient model of one (model, layer) and its compiled functions; shared by all methods."""

    def __init__(self, model: Any, layer: str) -> None:
        self.tap, self.kind, self.head = build_tap_model(model, layer)
        self._grad_fns: dict[tuple[int, ...], Any] = {}
        self._act_fns: dict[tuple[int, ...], Any] = {}

    def _class_scores(self, source, probs, targets):
        tf = _tf()
        if self.kind == SCORE_DENSE_LOGIT:
            logits = tf.matmul(tf.cast(source, tf.float32), tf.cast(self.head.kernel, tf.float32))
            if self.head.use_bias:
                logits = logits + tf.cast(self.head.bias, tf.float32)
        elif self.kind == SCORE_LOGIT:
            logits = tf.cast(source, tf.float32)
        else:  # log p_c; the floor keeps log finite where p_c underflows to 0
            logits = tf.math.log(tf.maximum(tf.cast(probs, tf.float32), 1e-30))
        return tf.gather(logits, targets, axis=1, batch_dims=1)

    def _resolve(self, probs, targets):
        tf = _tf()
        predicted = tf.argmax(probs, axis=1, output_type=tf.int32)
        return tf.where(targets < 0, predicted, targets)

    def gradient_fn(self, shape: tuple[int, ...]):
        """``fn(x, targets) -> (activations, d score / d activations, probs, targets)``, compiled
        once per image shape ``shape[1:]`` (any batch size)."""
        shape = (None, *shape[1:])
        if shape not in self._grad_fns:
            tf = _tf()
            tap = self.tap

            def fn(x, targets):
                with tf.GradientTape() as tape:
                    acts, source, probs = tap(x, training=False)
                    targets = self._resolve(probs, targets)
                    score = tf.reduce_sum(self._class_scores(source, probs, targets))
                # Images are independent in inference mode, so d(sum of scores)/dA_i = d score_i/dA_i.
                grads = tape.gradient(score, acts)
                return acts, grads, probs, targets

            self._grad_fns[shape] = tf.function(fn, input_signature=[
                tf.TensorSpec(shape, tf.float32), tf.TensorSpec(shape[:1], tf.int32)])
        return self._grad_fns[shape]

    def activation_fn(self, shape: tuple[int, ...]):
        """``fn(x, targets) -> (activations, probs, targets)``, compiled (no gradient)."""
        shape = (None, *shape[1:])
        if shape not in self._act_fns:
            tf = _tf()
            tap = self.tap

            def fn(x, targets):
                acts, _, probs = tap(x, training=False)
                return acts, probs, self._resolve(probs, targets)

            self._act_fns[shape] = tf.function(fn, input_signature=[
                tf.TensorSpec(shape, tf.float32), tf.TensorSpec(shape[:1], tf.int32)])
        return self._act_fns[shape]


def _engine(model: Any, layer: str) -> _Engine:
    per_model = _ENGINES.setdefault(model, {})
    if layer not in per_model:
        per_model[layer] = _Engine(model, layer)
    return per_model[layer]


def normalise(maps: np.ndarray) -> np.ndarray:
    """Min-max scale each map of ``(N, h, w)`` to [0, 1]; a flat (e.g. all-zero) map becomes zeros."""
    maps = np.asarray(maps, np.float32)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    ok = np.isfinite(span) & (span > 1e-30)
    out = np.where(ok, (maps - lo) / np.where(ok, span, 1.0), 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(N, h, w)`` maps to ``(N, H, W)`` with ``size = (H, W)``."""
    h, w = size
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps])


class CAM:
    """A class activation map method over one layer of one model.

    Args:
        model: a Keras model taking float32 ``(N, S, S, 3)`` in [0, 1] and returning
            ``(N, n_classes)`` probabilities; flat, sequential, or with a nested backbone.
        layer: a name from :func:`conv_layer_names`, or ``None`` for :func:`default_layer`
            (``block_16_depthwise`` for MobileNetV2, else the last conv-like layer).

    Raises:
        ValueError: when ``layer`` is not a conv-like layer of ``model`` (lists the valid ones).
    """

    name = "cam"
    uses_gradients = True

    def __init__(self, model: Any, layer: str | None = None) -> None:
        _tf()
        self.model = model
        self.layer = layer if layer is not None else default_layer(model)
        find_layer(model, self.layer)  # clear error before any graph is built
        self._engine = _engine(model, self.layer)

    @property
    def grad_model(self) -> Any:
        """The separate Keras model ``inputs -> [activations, score source, probabilities]``."""
        return self._engine.tap

    @property
    def score(self) -> str:
        """Which class score is differentiated: ``dense_logit``, ``logit`` or ``log_prob``."""
        return self._engine.kind

    def __call__(self, inputs: np.ndarray, target: Target = None) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps for a batch.

        Args:
            inputs: float32 ``(N, S, S, 3)`` in [0, 1] (a single ``(S, S, 3)`` image is a batch of 1).
                Never modified.
            target: class index to explain, one per image, or ``None`` for each predicted class
                (``-1`` in a per-image list also means the predicted class).

        Returns:
            ``(heatmaps, probs)``: float32 ``(N, S, S)`` in [0, 1] at the input size (all zeros
            where the map has no positive evidence), and the model's ``(N, C)`` probabilities.

        Raises:
            ValueError: for a target that is not a class index of the model, or a wrong number
                of targets.
        """
        x = as_batch(inputs)
        targets = resolve_targets(target, len(x))
        n_classes = int(self.model.output_shape[-1])
        if targets.size and (targets.min() < -1 or targets.max() >= n_classes):
            # Checked here: inside the compiled graph a bad index is an opaque TensorFlow error.
            raise ValueError(f"target class index must be in [0, {n_classes - 1}] (or None for the "
                             f"predicted class), got {sorted(set(targets.tolist()))}")
        if self.uses_gradients:
            acts, grads, probs, resolved = (np.asarray(t) for t in self._engine.gradient_fn(
                x.shape)(x, targets))
        else:
            acts, probs, resolved = (np.asarray(t) for t in self._engine.activation_fn(x.shape)(
                x, targets))
            grads = None
        weights = self.channel_weights(acts, grads, x, resolved)
        cams = np.maximum(np.einsum("nhwk,nk->nhw", acts, weights.astype(np.float32)), 0.0)
        heatmaps = normalise(resize_maps(cams.astype(np.float32), x.shape[1:3]))
        return heatmaps, probs.astype(np.float32)

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


__all__ = ["CAM", "as_batch", "conv_layer_names", "default_layer", "normalise", "predict_probs",
           "resize_maps", "resolve_targets"]
