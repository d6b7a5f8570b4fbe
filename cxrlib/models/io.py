"""Loading saved models: ``best.keras`` files, in Keras's safe mode (no code from the file runs)."""
from __future__ import annotations

from pathlib import Path

from cxrlib.core.tfsetup import keras as _keras


class ModelFileError(ValueError):
    """A file that is not a loadable saved model."""


def load_model(path: str | Path):
    """Load a model saved by training (``best.keras``), without its optimizer or loss.

    Keras's ``safe_mode`` stays on: a file whose layers would run arbitrary code (a ``Lambda``
    layer) is refused, never executed.

    Raises:
        ModelFileError: the file is missing or not a loadable ``.keras`` model.
    """
    import zipfile  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a Keras model file (.keras zip archive)")
    keras = _keras()
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelFileError(f"could not load model {path}: {type(exc).__name__}: {exc}") from exc
