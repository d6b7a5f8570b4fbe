"""Import TensorFlow with the settings measured fastest here, once, and only when needed.

Call :func:`tf` instead of ``import tensorflow`` anywhere in cxrlib; it sets the environment
before the first import (log level; XLA stays off on CPU: it was 4.5x slower there, see
../shared/NOTES.md) and turns on GPU memory growth when a GPU exists. (Mixed precision is
a training choice: :mod:`cxrlib.train` sets the Keras policy on a GPU.)
"""
from __future__ import annotations

import functools
import os


@functools.lru_cache(maxsize=1)
def tf():
    """Return the ``tensorflow`` module, configured."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf_  # noqa: PLC0415

    for gpu in tf_.config.list_physical_devices("GPU"):
        try:
            tf_.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised
            pass
    return tf_


def gpus() -> list:
    """The visible GPUs (empty on a CPU machine)."""
    return tf().config.list_physical_devices("GPU")


def distribution_strategy():
    """MirroredStrategy over several GPUs, else the default strategy."""
    tf_ = tf()
    return tf_.distribute.MirroredStrategy() if len(gpus()) > 1 else tf_.distribute.get_strategy()
