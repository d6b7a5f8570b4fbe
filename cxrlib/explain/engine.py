"""The gradient model of one (model, layer) and its compiled functions, shared by every CAM method.

The user's model is never modified: the gradient ("tap") model is a new Keras model sharing its
layers (:func:`cxrlib.explain.graph.build_tap_model`), built once per (model, layer) and kept in a
weak cache, with one ``tf.function`` per image shape (its input signature fixes the image shape
and leaves the batch size free, so it never retraces). Methods that change the layer's
activations (Ablation-CAM) also get the part of the model above the layer
(:meth:`Engine.tail`), run through the one compiled forward pass.
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from cxrlib.explain.graph import SCORE_DENSE_LOGIT, SCORE_LOGIT, build_tail_model, build_tap_model

_ENGINES: "weakref.WeakKeyDictionary[Any, dict[str, Engine]]" = weakref.WeakKeyDictionary()


def _tf():
    from cxrlib.core.tfsetup import tf  # noqa: PLC0415

    return tf()


class Engine:
    """The gradient model of one (model, layer) and its compiled functions; shared by all methods."""

    def __init__(self, model: Any, layer: str) -> None:
        self.model, self.layer = model, layer
        self.tap, self.kind, self.head = build_tap_model(model, layer)
        self._grad_fns: dict[tuple[int, ...], Any] = {}
        self._act_fns: dict[tuple[int, ...], Any] = {}
        self._score_fns: dict[tuple[int, ...], Any] = {}
        self._tail: Any = None

    def tail(self) -> Any:
        """The model ``activations -> score source`` above the layer, built on first use."""
        if self._tail is None:
            self._tail, _ = build_tail_model(self.model, self.layer)
        return self._tail

    def scores_from_source(self, source: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The class scores ``(N,)`` that :meth:`gradient_fn` differentiates, in NumPy, from the
        score source ``(N, F)`` (a tail model's output)."""
        source = np.asarray(source, np.float64)
        if self.kind == SCORE_DENSE_LOGIT:
            kernel = np.asarray(self.head.kernel, np.float64)
            logits = source @ kernel
            if self.head.use_bias:
                logits = logits + np.asarray(self.head.bias, np.float64)
        elif self.kind == SCORE_LOGIT:
            logits = source
        else:
            logits = np.log(np.maximum(source, 1e-30))
        return logits[np.arange(len(logits)), targets]

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


    def score_fn(self, shape: tuple[int, ...]):
        """``fn(x, targets) -> (class scores, probs, targets)``, compiled (no gradient): the score
        that :meth:`gradient_fn` differentiates (the logit where it can be recovered), for
        methods that perturb the input and must not read a saturated probability."""
        shape = (None, *shape[1:])
        if shape not in self._score_fns:
            tf = _tf()
            tap = self.tap

            def fn(x, targets):
                _, source, probs = tap(x, training=False)
                targets = self._resolve(probs, targets)
                return self._class_scores(source, probs, targets), probs, targets

            self._score_fns[shape] = tf.function(fn, input_signature=[
                tf.TensorSpec(shape, tf.float32), tf.TensorSpec(shape[:1], tf.int32)])
        return self._score_fns[shape]


def engine(model: Any, layer: str) -> Engine:
    """The :class:`Engine` of ``(model, layer)``, built once and cached while the model lives."""
    per_model = _ENGINES.setdefault(model, {})
    if layer not in per_model:
        per_model[layer] = Engine(model, layer)
    return per_model[layer]
