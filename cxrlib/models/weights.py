"""MobileNetV2's ImageNet weights, found offline first (Keras's own cache, then the shared
folder), downloaded otherwise."""
from __future__ import annotations

import os
from pathlib import Path

from cxrlib.core import paths
from cxrlib.core.tfsetup import keras as _keras

WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
               + paths.WEIGHTS_FILE)


class WeightsUnavailable(RuntimeError):
    """The ImageNet weights are neither on disk nor downloadable."""


def _download_weights(cache_dir: Path, **options) -> Path:
    """Let Keras fetch the weights file into ``cache_dir/models`` (its usual download);
    ``force_download=True`` when a broken file of that name is there (Keras would return it)."""
    keras = _keras()
    return Path(keras.utils.get_file(paths.WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models",
                                     cache_dir=str(cache_dir), **options))


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    """A readable file that starts as an HDF5 file does: not an empty or broken download, nor a
    folder this user may not read (PermissionError), which count as no file."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
    except OSError:
        return False


def resolve_imagenet_weights() -> Path:
    """Find the MobileNetV2 ImageNet (no-top, alpha 1.0) weights file, downloading if needed.

    Looks in ``$KERAS_HOME/models/`` (default ``~/.keras/models``), then in the shared folder's
    ``weights/`` (:func:`cxrlib.core.paths.shared_dir`, ``../shared/weights`` beside the project),
    and only then lets Keras download it into its cache as it always does; a file there that
    is not an HDF5 file (empty, a broken download) counts as none. The 224-px file is
    used for every input size: the convolution weights do not depend on the input size.

    Returns:
        Path of the ``.h5`` weights file.

    Raises:
        WeightsUnavailable: neither on disk nor downloadable. The message tells the user to pass
            ``weights="random"`` explicitly; random weights are never chosen silently.
    """
    local = paths.keras_home() / "models" / paths.WEIGHTS_FILE
    shared = paths.shared_dir() / "weights" / paths.WEIGHTS_FILE
    for found in (local, shared):
        if _is_hdf5(found):
            return found
    try:
        options = {"force_download": True} if os.path.lexists(local) else {}
        got = _download_weights(paths.keras_home(), **options)
        if not _is_hdf5(got):
            raise OSError(f"{got} is not an HDF5 weights file")
        return got
    except Exception as exc:  # URL errors, SSL errors, hash mismatch, read-only folder...
        raise WeightsUnavailable(
            f"MobileNetV2 ImageNet weights are not available: neither {local} nor {shared} "
            f"exists and the download from {WEIGHTS_URL} failed ({type(exc).__name__}: {exc}). "
            f"Put the file {paths.WEIGHTS_FILE} in {local.parent} or {shared.parent}, or set "
            f"KERAS_HOME to a folder whose models/ holds it, or choose weights='random' "
            f"explicitly (ModelConfig(weights='random'), CLI --weights random) to train from "
            f"random weights.") from exc

