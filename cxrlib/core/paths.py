"""Where the project keeps data, caches and runs.

Everything hangs off one *workspace* folder: the project root (the folder holding ``cxrlib/``)
unless ``CXR_WORKSPACE`` says otherwise. Tests point ``CXR_WORKSPACE`` at a temporary folder.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def workspace() -> Path:
    """The folder under which ``models/`` (runs and caches) lives."""
    return Path(os.environ.get("CXR_WORKSPACE") or PROJECT_ROOT)


def runs_dir() -> Path:
    """``models/runs``: one folder per training run, named by the run id."""
    return workspace() / "models" / "runs"


def cache_dir(kind: str) -> Path:
    """``models/cache/<kind>``: tensor and feature caches (safe to delete)."""
    return workspace() / "models" / "cache" / kind


SAMPLE_DIR = PROJECT_ROOT / "samples" / "cxr3-sample"
"""The bundled real sample: 120 redistributable films of cxr3 (40 a class; see its README.txt
for the attribution that travels with it)."""


def default_data_dir() -> Path:
    """The dataset folder the app opens first.

    ``CXR_DATA_DIR`` when set; else the project's ``data/`` when something was put there; else
    the bundled real sample (:data:`SAMPLE_DIR`), so a fresh machine opens on real films.
    """
    if os.environ.get("CXR_DATA_DIR"):
        return Path(os.environ["CXR_DATA_DIR"])
    data = PROJECT_ROOT / "data"
    try:
        used = any(not p.name.startswith(".") and p.name != "README.md" for p in data.iterdir())
    except OSError:
        used = False
    return data if used or not SAMPLE_DIR.is_dir() else SAMPLE_DIR


def shared_dir() -> Path:
    """The shared folder beside the project (``CXR_SHARED_DIR``, default ``../shared``), where
    the offline ImageNet weights are looked for (``weights/``)."""
    return Path(os.environ.get("CXR_SHARED_DIR") or PROJECT_ROOT.parent / "shared")


def keras_home() -> Path:
    """Keras's own folder (``$KERAS_HOME``, default ``~/.keras``); weights live in ``models/``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
