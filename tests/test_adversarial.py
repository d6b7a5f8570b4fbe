"""The source-adversarial head: gradient reversal, a branch that never reaches the head, and a
hidden layer that carries less of the source than the plain head's."""
from __future__ import annotations

import numpy as np
import pytest

from cxrlib.core.config import TrainConfig

D, N = 24, 600


def _template():
    from cxrlib.core.tfsetup import keras

    k = keras()
    x = inputs = k.Input((D,), name="features")
    x = k.layers.Dense(16, activation="relu", name="head_dense_0")(x)
    x = k.layers.Dense(8, activation="relu", name="head_dense_1")(x)
    return k.Model(inputs, k.layers.Dense(3, activation="softmax", name="predictions")(x))


def _features(seed: int = 0):
    """Class in dims 0-2, source (independent of class) in dims 3-5, noise elsewhere."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, N)
    source = rng.integers(0, 3, N)
    x = rng.normal(0, 1, (N, D)).astype(np.float32)
    x[np.arange(N), y] += 3.0
    x[np.arange(N), 3 + source] += 3.0
    return x[None], np.eye(3, dtype=np.float32)[y], np.array([f"s{s}" for s in source]), y


def _hidden(head, x):
    from cxrlib.core.tfsetup import keras

    return np.asarray(keras().Model(head.input, head.layers[-2].output)(x, training=False))


def _probe(h, target):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    return cross_val_score(LogisticRegression(max_iter=2000), h, target, cv=5).mean()


def test_gradient_reversal_flips_and_scales_the_gradient():
    from cxrlib.core.tfsetup import tf as _tf
    from cxrlib.audit.adversarial import SourceAdversary
    from cxrlib.training.adversary import head_joint

    tf = _tf()
    head = _template()
    x, onehot, sources, _ = _features()
    adv = SourceAdversary(head_joint(head), sources, onehot, weight=0.5)
    hidden = tf.Variable(tf.random.normal((4, 8)))
    with tf.GradientTape(persistent=True) as tape:
        plain = tf.reduce_sum(hidden * 2.0)
        reversed_ = tf.reduce_sum(adv._reverse(hidden) * 2.0)
    np.testing.assert_allclose(tape.gradient(reversed_, hidden), -0.5 * tape.gradient(plain, hidden))
    assert adv.n_sources == 3 and len(adv.variables) == 4  # two dense layers of the branch
    with pytest.raises(ValueError, match="at least two sources"):
        SourceAdversary(head_joint(head), ["one"] * N, onehot, weight=0.5)


def test_adversarial_head_hides_the_source_and_stays_a_plain_head():
    from cxrlib.audit.adversarial import adversary
    from cxrlib.training.head_fit import fit_head, fresh_head

    def train_head(template, features, train, val, onehot, tcfg, extra=None):
        head = fresh_head(template, tcfg.seed)
        fit_head(head, features, train, val, onehot, tcfg, extra=extra)
        return head

    x, onehot, sources, y = _features()
    tcfg = TrainConfig(mode="head", epochs=40, batch_size=32, learning_rate=1e-2, seed=0)
    train, val = np.arange(0, 450), np.arange(450, N)
    template = _template()
    plain = train_head(template, x, train, val, onehot, tcfg)
    adv = train_head(template, x, train, val, onehot, tcfg, extra=adversary(sources, 1.0))
    # the branch never becomes part of the head: same layers, same outputs
    assert [l.name for l in adv.layers] == [l.name for l in plain.layers]
    assert adv.output_shape == (None, 3) and adv.count_params() == plain.count_params()
    for head in (plain, adv):
        assert (np.asarray(head(x[0][val])).argmax(1) == y[val]).mean() >= 0.9
    source_plain = _probe(_hidden(plain, x[0][val]), sources[val])
    source_adv = _probe(_hidden(adv, x[0][val]), sources[val])
    assert source_adv < source_plain - 0.1, (source_plain, source_adv)
