"""What every benchmark shares: where ../shared is, and an isolated environment.

Benchmarks run as ``python bench/NAME.py``, so this folder is on ``sys.path`` and they
``import _common``. :func:`isolated_env` keeps a benchmark's caches and runs out of the project's
``models/`` and makes Keras find the shared ImageNet weights offline, as ``tests/conftest.py`` does.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CXR_SHARED_DIR", ROOT.parent / "shared"))
WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def isolated_env(name: str, *, workspace: bool = True) -> None:
    """Point ``CXR_WORKSPACE`` (optional) and ``KERAS_HOME`` at fresh temporary folders, link the
    shared weights into ``KERAS_HOME/models``, quieten TensorFlow, and make ``cxrlib`` importable.

    Must run before TensorFlow or Keras is imported (Keras reads ``KERAS_HOME`` at import).
    """
    if workspace:
        os.environ["CXR_WORKSPACE"] = tempfile.mkdtemp(prefix=f"cxr-bench-{name}-")
    home = Path(tempfile.mkdtemp(prefix="cxr-bench-keras-"))
    (home / "models").mkdir()
    if WEIGHTS.exists():
        (home / "models" / WEIGHTS.name).symlink_to(WEIGHTS)
    os.environ["KERAS_HOME"] = str(home)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import cxrlib  # noqa: F401, PLC0415 - sets TensorFlow's environment (cxrlib.core.tfsetup.TF_ENV)
