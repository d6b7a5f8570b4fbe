"""The segmenter's training loss (BCE + soft Dice) and its metric (hard Dice), in TensorFlow.

All take ``target`` (lung share of each pixel in [0, 1]: masks resized with area averaging give
soft edges), ``logits`` from the network, and ``weight`` (1 where the pixel counts, 0 on the
cxr3-lungs "ignore" pixels), each ``(N, S, S, 1)``. Dice is computed per film and averaged, so
a small lung counts as much as a large one, as in the per-film Dice that is reported.
"""
from __future__ import annotations

_SMOOTH = 1.0  # in pixels: keeps the soft Dice of a film without lung finite and its gradient small


def _tf():
    from cxrlib.core.tfsetup import tf  # noqa: PLC0415

    return tf()


def soft_dice(target, prob, weight):
    """Per-film soft Dice ``(2 sum(w p t) + s) / (sum(w p) + sum(w t) + s)``, shape ``(N,)``."""
    tf = _tf()
    axes = (1, 2, 3)
    inter = tf.reduce_sum(weight * prob * target, axes)
    total = tf.reduce_sum(weight * prob, axes) + tf.reduce_sum(weight * target, axes)
    return (2.0 * inter + _SMOOTH) / (total + _SMOOTH)


def bce_dice_loss(target, logits, weight):
    """Scalar loss: binary cross-entropy (mean over counted pixels) + (1 - mean soft Dice).

    BCE gives every pixel a gradient from the start; the Dice term counters the imbalance of
    lung versus background pixels and optimises the reported overlap directly.
    """
    tf = _tf()
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
    bce = tf.reduce_sum(weight * bce) / tf.maximum(tf.reduce_sum(weight), 1.0)
    return bce + 1.0 - tf.reduce_mean(soft_dice(target, tf.sigmoid(logits), weight))


def dice_metric(target, logits, weight):
    """Mean hard Dice over films: prediction ``logit > 0`` against ``target > 0.5``."""
    tf = _tf()
    pred = tf.cast(logits > 0.0, tf.float32)
    truth = tf.cast(target > 0.5, tf.float32)
    axes = (1, 2, 3)
    inter = tf.reduce_sum(weight * pred * truth, axes)
    total = tf.reduce_sum(weight * pred, axes) + tf.reduce_sum(weight * truth, axes)
    return tf.reduce_mean(tf.where(total > 0, 2.0 * inter / tf.maximum(total, 1e-9), 1.0))
