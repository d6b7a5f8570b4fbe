"""Loading saved models: ``best.keras`` files, in Keras's safe mode (no code from the file runs)."""
from __future__ import annotations

from pathlib import Path

from cxrlib.core.tfsetup import keras as _keras


class ModelFileError(ValueError):
    """A file that is not a loadable saved model."""


KERAS_ENTRIES = ("config.json", "model.weights.h5")
"""What every ``.keras`` archive holds (Keras 3)."""


def keras_file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be a ``.keras`` model, from its zip directory alone (no TensorFlow,
    no weights read: cheap enough for every run of a listing), or None when it looks whole."""
    import zipfile  # noqa: PLC0415

    try:
        with zipfile.ZipFile(path) as archive:
            missing = [n for n in KERAS_ENTRIES if n not in archive.namelist()]
    except (OSError, zipfile.BadZipFile) as exc:
        return f"not a Keras model file (.keras zip archive): {exc}"
    return f"not a Keras model file: no {', '.join(missing)} in the archive" if missing else None


def load_model(path: str | Path):
    """Load a model saved by training (``best.keras``), without its optimizer or loss.

    Keras's ``safe_mode`` stays on: a file whose layers would run arbitrary code (a ``Lambda``
    layer) is refused, never executed.

    Raises:
        ModelFileError: the file is missing or not a loadable ``.keras`` model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    if path.suffix != ".keras" or keras_file_problem(path):
        raise ModelFileError(f"{path} is not a Keras model file (.keras zip archive)")
    keras = _keras()
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelFileError(f"could not load model {path}: {type(exc).__name__}: {exc}") from exc
