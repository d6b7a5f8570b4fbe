"""Shared fixtures: an isolated workspace, synthetic datasets, and the real-data tier's paths.

Environment for TensorFlow and Keras is set here, before any test imports them: quiet logs, and
``KERAS_HOME`` pointing at a folder where the shared ImageNet MobileNetV2 weights are linked, so
``weights="imagenet"`` never downloads.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CXR_SHARED_DIR", ROOT.parent / "shared"))
CXR3 = SHARED / "datasets" / "cxr3"
CXR3_FULLRES = SHARED / "datasets" / "cxr3-fullres"
WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_keras_home = Path(tempfile.mkdtemp(prefix="cxr-keras-home-"))
(_keras_home / "models").mkdir()
if (SHARED / "weights" / WEIGHTS_FILE).exists():
    (_keras_home / "models" / WEIGHTS_FILE).symlink_to(SHARED / "weights" / WEIGHTS_FILE)
os.environ["KERAS_HOME"] = str(_keras_home)
# Tests never write into the project's own models/ folder.
os.environ["CXR_WORKSPACE"] = tempfile.mkdtemp(prefix="cxr-workspace-")
sys.path.insert(0, str(ROOT))
import cxrlib  # noqa: E402,F401 - TensorFlow's environment (cxrlib.core.tfsetup.TF_ENV) before any test imports it

REAL_DATA_REASON = f"real-data tier skipped: {CXR3} not found (../shared is not beside the checkout)"


@pytest.fixture
def default_cam_layers() -> dict[str, str]:
    """Where each CAM method defaults on MobileNetV2, written out here rather than read from the
    methods' own declarations: the signed methods keep the published layer, those that need
    non-negative activations take the backbone's last ReLU6."""
    published, relu = "block_16_depthwise", "out_relu"
    return {"gradcam": published, "hirescam": published, "gradcam++": relu, "scorecam": relu,
            "faster-scorecam": relu, "xgradcam": relu, "layercam": relu, "ablationcam": relu,
            "eigencam": relu, "layercam-fused": relu, "occlusion": "input", "finercam": published}


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A fresh ``CXR_WORKSPACE`` (runs and caches) for one test."""
    monkeypatch.setenv("CXR_WORKSPACE", str(tmp_path / "workspace"))
    return tmp_path / "workspace"


@pytest.fixture(scope="module")
def module_workspace(tmp_path_factory) -> Path:
    """A fresh ``CXR_WORKSPACE`` shared by one test module (its runs trained once)."""
    folder = tmp_path_factory.mktemp("module-workspace")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_WORKSPACE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """A small 3-class synthetic dataset (24 films a class, 96 px), made once per session.

    Fixed anatomy: the tests' fixed random ``tiny`` backbone learns the class signs only when
    every film is drawn on the same body (see ``cxrlib.data.synthetic.synthetic_film``).
    """
    from cxrlib.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "demo", n_per_class=24, size=96,
                                  vary_anatomy=False)


@pytest.fixture(scope="session")
def cxr3() -> Path:
    """The shared real dataset; skips the test (saying why) when absent."""
    if not (CXR3 / "manifest.csv").exists():
        pytest.skip(REAL_DATA_REASON)
    return CXR3


@pytest.fixture(scope="session")
def cxr3_fullres() -> Path:
    if not (CXR3_FULLRES / "manifest.csv").exists():
        pytest.skip(REAL_DATA_REASON)
    return CXR3_FULLRES


@pytest.fixture(scope="session")
def imagenet_weights() -> Path:
    path = _keras_home / "models" / WEIGHTS_FILE
    if not path.exists():
        pytest.skip(f"real-data tier skipped: {SHARED / 'weights' / WEIGHTS_FILE} not found")
    return path
