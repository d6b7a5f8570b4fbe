"""Deployable copies of a trained run's model: a TensorFlow SavedModel or a TensorFlow Lite file.

Both take the model's own input, float32 ``(N, S, S, 3)`` in [0, 1], and give its ``(N, C)``
class probabilities; ``cxr_model.json`` beside them says which classes and which preprocessing
(:class:`cxrlib.core.config.PreprocessConfig`) turn a film into that input, because a deployed
model without its preprocessing gives wrong answers silently.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from cxrlib.core.fsutil import write_bytes_atomic, write_json_atomic

FORMATS = ("savedmodel", "tflite")


def export_model(model, fmt: str, out_dir: str | Path, *, classes, preprocess: dict,
                 run_id: str | None = None) -> Path:
    """Write ``model`` as ``fmt`` into ``out_dir``; returns the model's path.

    Args:
        model: the Keras model (image -> probabilities).
        fmt: ``"savedmodel"`` (folder ``saved_model/``, signature ``serve``) or ``"tflite"``
            (``model.tflite``, converted from the SavedModel; float32, no quantisation).
        out_dir: the folder to write (made if missing; an earlier export there is replaced).
        classes: the class names, in output order.
        preprocess: the run's preprocessing config as a dict.
        run_id: the run it came from, recorded in ``cxr_model.json``.

    Raises:
        ValueError: for an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    from cxrlib.core.tfsetup import tf  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "saved_model"
    staging = out / ".saved_model.partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.export(str(staging), format="tf_saved_model", verbose=False)
    if fmt == "savedmodel":
        shutil.rmtree(saved, ignore_errors=True)
        staging.rename(saved)
        target = saved
    else:
        blob = tf().lite.TFLiteConverter.from_saved_model(str(staging)).convert()
        shutil.rmtree(staging, ignore_errors=True)
        target = out / "model.tflite"
        write_bytes_atomic(target, blob)
    write_json_atomic(out / "cxr_model.json", {
        "format": fmt, "file": target.name, "run_id": run_id, "classes": list(classes),
        "input": {"shape": [None, *map(int, model.input_shape[1:])], "dtype": "float32",
                  "range": [0.0, 1.0], "channels": "grey repeated on 3 channels"},
        "output": "class probabilities in the order of 'classes'", "preprocess": preprocess})
    return target
