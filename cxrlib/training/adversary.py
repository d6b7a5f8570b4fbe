"""The class-conditional source branch with gradient reversal: one home for both of its uses.

Domain-adversarial training (Ganin & Lempitsky, "Unsupervised domain adaptation by
backpropagation", ICML 2015): a small branch reads a representation and learns to tell the
film's source; between the two, a gradient-reversal layer passes activations forward unchanged
and multiplies the gradient flowing back by ``-weight``. The branch gets better at naming the
source while the layers below it are pushed to make that impossible.

Sources and classes are confounded in sets like cxr3 (every COVID-19 film comes from two
sources), so an adversary reading the representation alone would also erase the class. The
branch therefore also gets the film's true class (one-hot, concatenated): knowing the class,
only what the representation adds about the source is worth learning, and only that is reversed
(the class-conditional adversary of CDANN, Li et al., ECCV 2018; Trivedi et al. 2022 fine-tune
chest X-ray backbones this way, reporting up to +0.13 AUC at held-out hospitals).

Two uses, one branch (:class:`SourceAdversary` on a ``joint`` model: input -> [probabilities,
representation]):

* the audit's head-only branch on frozen features (:func:`head_joint`, the head's last hidden
  layer; :mod:`cxrlib.audit.adversarial`);
* adversarial fine-tuning, ``TrainConfig.adversarial`` (:func:`backbone_joint`, the backbone's
  pooled features, the ones the source probe reads, so that the trainable upper blocks learn
  to hide the source; :func:`cxrlib.training.full_fit.fit_adversarial`).

The branch exists only while the model trains; it is no part of any saved model.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

BRANCH_UNITS = 32
_SEED = 2015


def source_codes(sources: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Integer code of each film's source and the sorted source names."""
    names = sorted({str(s) for s in sources})
    lookup = {s: i for i, s in enumerate(names)}
    return np.array([lookup[str(s)] for s in sources], np.int64), names


def dann_weight(progress: float, peak: float) -> float:
    """DANN's warm-up of the reversal weight (Ganin & Lempitsky 2015, section 5.2):
    ``peak * (2 / (1 + exp(-10 p)) - 1)`` at training progress ``p`` in [0, 1] (0 at the start,
    0.85 peak at a quarter, 0.99 peak at half), so the branch first learns the source before
    the layers below are pushed against it."""
    p = min(1.0, max(0.0, float(progress)))
    return peak * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


def gradient_reversal(weight):
    """``reverse(h)``: ``h`` forward; the gradient ``-weight * dy`` backward. ``weight`` is a
    float or a TensorFlow variable (read at every call: a schedule may change it)."""
    from cxrlib.core.tfsetup import tf as _tf  # noqa: PLC0415

    tf = _tf()

    @tf.custom_gradient
    def reverse(h):
        return tf.identity(h), lambda dy: -tf.cast(weight, dy.dtype) * dy

    return reverse


def head_joint(head):
    """features -> [probabilities, the head's last hidden layer], sharing ``head``'s layers (a
    plain chain: input, hidden..., output)."""
    from cxrlib.core.tfsetup import keras  # noqa: PLC0415

    features = keras().Input(tuple(head.input_shape[1:]), name="adv_features")
    x = features
    for layer in head.layers[1:-1]:
        x = layer(x)
    return keras().Model(features, [head.layers[-1](x), x], name="head_and_hidden")


def backbone_joint(model):
    """image -> [probabilities, pooled backbone features], sharing ``model``'s layers (a model
    with the ``global_pool`` layer of :func:`cxrlib.models.backbone_and_head`).

    Raises:
        ValueError: the model has no such layer (the small CNN).
    """
    from cxrlib.core.tfsetup import keras  # noqa: PLC0415
    from cxrlib.models.architectures import FEATURE_LAYER  # noqa: PLC0415

    if FEATURE_LAYER not in [layer.name for layer in model.layers]:
        raise ValueError(f"adversarial fine-tuning reads the backbone's pooled features "
                         f"({FEATURE_LAYER!r}); model {model.name!r} has none")
    pooled = model.get_layer(FEATURE_LAYER).output
    return keras().Model(model.input, [model.output, pooled], name="model_and_pooled")


class SourceAdversary:
    """The branch of one training (see the module docstring).

    Args:
        joint: input -> [class probabilities, representation], sharing the trained model's
            layers (:func:`head_joint`, :func:`backbone_joint`).
        sources: source name of every training row (rows as :meth:`forward` names them).
        labels_onehot: ``(N, C)`` true classes of the same rows.
        weight: the gradient-reversal factor (> 0); with ``warmup`` the peak of
            :func:`dann_weight`, set by :meth:`schedule`'s callback.

    Attributes:
        variables: the branch's trainable variables (trained with the model's).
        names: the sources it tells apart, in the order of its outputs.
        n_sources: how many.
        weight_now: the reversal factor in use (a non-trainable variable).
    """

    def __init__(self, joint, sources: Sequence[str], labels_onehot: np.ndarray, weight: float,
                 *, warmup: bool = False):
        from cxrlib.core.tfsetup import keras as _keras, tf as _tf  # noqa: PLC0415

        keras, self._tf = _keras(), _tf()
        tf = self._tf
        codes, names = source_codes(sources)
        self.names, self.n_sources = names, len(names)
        if self.n_sources < 2:
            raise ValueError("the source-adversarial branch needs films of at least two sources")
        if weight <= 0:
            raise ValueError(f"the adversarial weight must be > 0, got {weight}")
        self.weight, self.warmup = float(weight), bool(warmup)
        self.joint = joint
        rep, n_classes = int(joint.outputs[1].shape[-1]), labels_onehot.shape[1]
        init = keras.initializers.GlorotUniform
        self.branch = keras.Sequential([
            keras.Input((rep + n_classes,)),
            keras.layers.Dense(BRANCH_UNITS, activation="relu", kernel_initializer=init(_SEED)),
            keras.layers.Dense(self.n_sources, activation="softmax", kernel_initializer=init(_SEED + 1)),
        ], name="source_branch")
        self.variables = list(self.branch.trainable_variables)
        self._sources = tf.constant(np.eye(self.n_sources, dtype=np.float32)[codes])
        self._classes = tf.constant(np.asarray(labels_onehot, np.float32))
        self._loss = keras.losses.CategoricalCrossentropy()
        self.weight_now = tf.Variable(0.0 if self.warmup else self.weight, trainable=False,
                                      dtype=tf.float32)
        self._reverse = gradient_reversal(self.weight_now)

    def forward(self, x, rows):
        """``(class probabilities, source loss)`` of a training batch (``rows``: its rows)."""
        tf = self._tf
        pred, rep = self.joint(x, training=True)
        branch_in = tf.concat([self._reverse(tf.cast(rep, tf.float32)),
                               tf.gather(self._classes, rows)], axis=-1)
        source_pred = self.branch(branch_in, training=True)
        return pred, tf.cast(self._loss(tf.gather(self._sources, rows), source_pred), tf.float32)

    def schedule(self, steps_per_epoch: int, epochs: int):
        """A Keras callback setting :attr:`weight_now` to :func:`dann_weight` of the training's
        progress before every step (a resumed run continues on the same curve from its epoch
        number), or None without ``warmup`` (the weight stays ``weight``)."""
        if not self.warmup:
            return None
        from cxrlib.training.finetune import per_step  # noqa: PLC0415

        total = max(1, steps_per_epoch * epochs)
        return per_step(steps_per_epoch, lambda model, step: self.weight_now.assign(
            dann_weight(step / total, self.weight)))
