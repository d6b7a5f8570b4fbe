"""Source-adversarial head: a gradient-reversal branch that predicts the film's source.

Domain-adversarial training (Ganin & Lempitsky, "Unsupervised domain adaptation by
backpropagation", ICML 2015): a small branch reads the head's last hidden layer and learns to
tell the film's source; between the two, a gradient-reversal layer passes activations forward
unchanged and multiplies the gradient flowing back by ``-weight``. The branch gets better at
naming the source while the head's layers are pushed to make that impossible, so the
representation the classifier reads carries less of the hospital.

On sets like cxr3 the source and the class are confounded (every COVID-19 film comes from two
sources, every Viral film from two others): an adversary that predicted the source from the
hidden layer alone would also erase the class. So the branch also gets the film's true class
(one-hot) as input: knowing the class, only what the hidden layer adds about the source is
worth learning, and only that is reversed (a class-conditional adversary).

The branch exists only while the head trains (:func:`cxrlib.training.head_fit.fit_head_compiled`
takes it as ``extra``); it is no part of any saved model.

Measured, not promised: leave-one-source-out on cxr3 (MobileNetV2 head, 5 sources) gave an
expected accuracy at an unseen source of 0.566 with the plain head, 0.540 / 0.565 / 0.151 with
this branch at weight 0.1 / 0.3 / 1.0. It does not help there (the missing populations, adult
normal films above all, are absent from every training fold, and no invariance among the other
sources brings them back), so it is not a training option; :func:`cxrlib.audit.loso.
leave_one_source_out` (``adversarial=``) and the Audit page measure it on any dataset.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

BRANCH_UNITS = 32
_SEED = 2015


def source_codes(sources: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Integer code of each film's source and the sorted source names."""
    names = sorted({str(s) for s in sources})
    lookup = {s: i for i, s in enumerate(names)}
    return np.array([lookup[str(s)] for s in sources], np.int64), names


def adversary(sources: Sequence[str], weight: float):
    """``extra(head, rows, y_train)`` for :func:`cxrlib.training.head_fit.fit_head`: the
    branch of weight ``weight`` on the sources (``sources[rows]``) of the head's training rows."""
    sources = np.asarray(sources)

    def make(head, rows, y_train):
        return SourceAdversary(head, list(sources[rows]), y_train, weight)

    return make


class SourceAdversary:
    """The adversarial branch of one head's training (see the module docstring).

    Args:
        head: the head model (features -> probabilities) being trained; its layers are shared.
        sources: source name of every training row (the rows of ``x_train``, in order).
        labels_onehot: ``(N, C)`` true classes of the same rows.
        weight: the gradient-reversal factor (> 0).

    Attributes:
        variables: the branch's trainable variables (trained with the head's).
        n_sources: how many sources the branch tells apart.
    """

    def __init__(self, head, sources: Sequence[str], labels_onehot: np.ndarray, weight: float):
        from cxrlib.core.tfsetup import keras as _keras, tf as _tf  # noqa: PLC0415

        keras, self._tf = _keras(), _tf()
        tf = self._tf
        codes, names = source_codes(sources)
        self.n_sources = len(names)
        if self.n_sources < 2:
            raise ValueError("the source-adversarial head needs films of at least two sources")
        if weight <= 0:
            raise ValueError(f"the adversarial weight must be > 0, got {weight}")
        self.weight = float(weight)
        features = keras.Input(tuple(head.input_shape[1:]), name="adv_features")
        x = features
        for layer in head.layers[1:-1]:  # the head is a plain chain: input, hidden..., output
            x = layer(x)
        self.joint = keras.Model(features, [head.layers[-1](x), x], name="head_and_hidden")
        init = keras.initializers.GlorotUniform
        self.branch = keras.Sequential([
            keras.Input((int(x.shape[-1]) + labels_onehot.shape[1],)),
            keras.layers.Dense(BRANCH_UNITS, activation="relu", kernel_initializer=init(_SEED)),
            keras.layers.Dense(self.n_sources, activation="softmax", kernel_initializer=init(_SEED + 1)),
        ], name="source_branch")
        self.variables = list(self.branch.trainable_variables)
        self._sources = tf.constant(np.eye(self.n_sources, dtype=np.float32)[codes])
        self._classes = tf.constant(np.asarray(labels_onehot, np.float32))
        self._loss = keras.losses.CategoricalCrossentropy()

        weight_t = tf.constant(self.weight, tf.float32)

        @tf.custom_gradient
        def reverse(h):
            return tf.identity(h), lambda dy: -weight_t * dy

        self._reverse = reverse

    def forward(self, x, rows):
        """``(class probabilities, source loss)`` of a training batch (rows of ``x_train``)."""
        tf = self._tf
        pred, hidden = self.joint(x, training=True)
        branch_in = tf.concat([self._reverse(tf.cast(hidden, tf.float32)),
                               tf.gather(self._classes, rows)], axis=-1)
        source_pred = self.branch(branch_in, training=True)
        return pred, tf.cast(self._loss(tf.gather(self._sources, rows), source_pred), tf.float32)
