"""The gradient model of one (model, layer) and its compiled functions, shared by every CAM method.

The user's model is never modified: the gradient ("tap") model is a new Keras model sharing its
layers (:func:`cxrlib.explain.graph.build_tap_model`), built once per (model, layer) and kept in a
weak cache, with one ``tf.function`` per image shape (its input signature fixes the image shape
and leaves the batch size free, so it never retraces). Methods that change the layer's
activations (Ablation-CAM) also get the part of the model above the layer
(:meth:`Engine.tail`), run through the one compiled forward pass.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from cxrlib.explain.graph import SCORE_DENSE_LOGIT, SCORE_LOGIT, build_tail_model, build_tap_model

_ENGINES: "weakref.WeakKeyDictionary[Any, dict[str, Engine]]" = weakref.WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()
"""Guards :data:`_ENGINES` and :attr:`Engine._fns`: sessions of a shared server ask at once, and
each would otherwise build its own gradient model and trace its own function (issue 22)."""


def _tf():
    from cxrlib.core.tfsetup import tf  # noqa: PLC0415

    return tf()


class Engine:
    """The gradient model of one (model, layer) and its compiled functions; shared by all methods."""

    def __init__(self, model: Any, layer: str) -> None:
        self.model, self.layer = model, layer
        self.tap, self.kind, self.head = build_tap_model(model, layer)
        self._fns: dict[tuple[str, tuple[int, ...]], Any] = {}
        self._tail: Any = None
        self._tail_lock = threading.Lock()

    def tail(self) -> Any:
        """The model ``activations -> score source`` above the layer, built on first use."""
        with self._tail_lock:
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

        return self._compiled("gradient", shape, fn)

    def activation_fn(self, shape: tuple[int, ...]):
        """``fn(x, targets) -> (activations, probs, targets)``, compiled (no gradient)."""
        tap = self.tap

        def fn(x, targets):
            acts, _, probs = tap(x, training=False)
            return acts, probs, self._resolve(probs, targets)

        return self._compiled("activation", shape, fn)

    def score_fn(self, shape: tuple[int, ...]):
        """``fn(x, targets) -> (class scores, probs, targets)``, compiled (no gradient): the score
        that :meth:`gradient_fn` differentiates (the logit where it can be recovered), for
        methods that perturb the input and must not read a saturated probability."""
        tap = self.tap

        def fn(x, targets):
            _, source, probs = tap(x, training=False)
            targets = self._resolve(probs, targets)
            return self._class_scores(source, probs, targets), probs, targets

        return self._compiled("score", shape, fn)

    def _compiled(self, kind: str, shape: tuple[int, ...], fn):
        """The one ``tf.function`` of ``kind`` for images of ``shape[1:]`` (any batch size),
        made on first use. Concurrent callers get the same function, so it is traced once:
        ``tf.function`` makes the others wait while it traces."""
        shape = (None, *shape[1:])
        with _ENGINES_LOCK:
            if (kind, shape) not in self._fns:
                tf = _tf()
                self._fns[kind, shape] = tf.function(fn, input_signature=[
                    tf.TensorSpec(shape, tf.float32), tf.TensorSpec(shape[:1], tf.int32)])
            return self._fns[kind, shape]


def engine(model: Any, layer: str) -> Engine:
    """The :class:`Engine` of ``(model, layer)``, built once (whoever else asks meanwhile waits
    for it: building one takes a fraction of a second) and cached while the model lives."""
    with _ENGINES_LOCK:
        per_model = _ENGINES.setdefault(model, {})
        if layer not in per_model:
            per_model[layer] = Engine(model, layer)
        return per_model[layer]


def warm_engines(model: Any, layers: list[str]) -> None:
    """Trace the gradient and activation functions of ``model`` at each of ``layers`` (at the
    model's input size) ahead of the first explanation: a trace of MobileNetV2's backward pass
    takes about a second on a CPU, and on a shared server sessions asking at once waited on it
    for half a minute (issue 22). Safe to call beside explanations: they share the functions."""
    shape = (1, *(int(d) for d in model.input_shape[1:]))
    x = np.zeros(shape, np.float32)
    targets = np.full(1, -1, np.int32)
    for layer in dict.fromkeys(layers):
        eng = engine(model, layer)
        eng.gradient_fn(shape)(x, targets)
        eng.activation_fn(shape)(x, targets)
