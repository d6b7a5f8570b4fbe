"""Import TensorFlow with the settings measured fastest here, once, and only when needed.

Call :func:`tf` instead of ``import tensorflow`` anywhere in cxrlib; it sets the environment
before the first import (log level; XLA stays off on CPU: it was 4.5x slower there, see
../shared/NOTES.md) and turns on GPU memory growth when a GPU exists. (Mixed precision is
a training choice: :mod:`cxrlib.training.engine` sets the Keras policy on a GPU.)
"""
from __future__ import annotations

import functools
import os

TF_ENV = {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
"""Environment TensorFlow must see before it is first imported, in every process that uses
cxrlib (app, CLI, background runs, tests, benchmarks), so that they all compute the same numbers.

``TF_ENABLE_ONEDNN_OPTS=1``: MobileNetV2 fine-tuning ran 16.4 img/s with oneDNN vs 7.5 without on
the 2-core CPU (bench/train.py --throughput-only). Unset, this TensorFlow build runs WITHOUT
oneDNN, and oneDNN changes float results (pooled MobileNetV2 features differ by ~2e-5), so a run
trained in the background and the same config trained in the foreground used to disagree.
"""


def apply_env() -> None:
    """Set :data:`TF_ENV` defaults (a user's own settings win). Called when cxrlib is imported."""
    for key, value in TF_ENV.items():
        os.environ.setdefault(key, value)


@functools.lru_cache(maxsize=1)
def tf():
    """Return the ``tensorflow`` module, configured."""
    apply_env()
    import tensorflow as tf_  # noqa: PLC0415

    for gpu in tf_.config.list_physical_devices("GPU"):
        try:
            tf_.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised
            pass
    return tf_


def keras():
    """Return the ``keras`` module, with TensorFlow configured first (see :func:`tf`)."""
    tf()
    import keras as keras_  # noqa: PLC0415

    return keras_


def gpus() -> list:
    """The visible GPUs (empty on a CPU machine)."""
    return tf().config.list_physical_devices("GPU")


@functools.lru_cache(maxsize=1)
def distribution_strategy():
    """This process's ``tf.distribute`` strategy, made once (call it before any other TF op).

    * ``TF_CONFIG`` naming several tasks (:func:`cxrlib.core.cluster.role`):
      ``MultiWorkerMirroredStrategy`` (synchronous data parallelism across machines, collectives
      over gRPC; every local GPU of each worker is a replica);
    * otherwise several GPUs: ``MirroredStrategy``;
    * otherwise (a CPU, or one GPU): the default strategy.

    ``MultiWorkerMirroredStrategy`` must exist before TensorFlow runs its first operation, and
    one process can only ever join one cluster: hence the cache.
    """
    from cxrlib.core.cluster import role  # noqa: PLC0415

    tf_ = tf()
    if role() is not None:
        return tf_.distribute.MultiWorkerMirroredStrategy()
    return tf_.distribute.MirroredStrategy() if len(gpus()) > 1 else tf_.distribute.get_strategy()
