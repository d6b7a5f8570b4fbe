"""Deployable copies of a trained run's model: a TensorFlow SavedModel or a TensorFlow Lite file.

Both take the model's own input, float32 ``(N, S, S, 3)`` in [0, 1], and give its ``(N, C)``
class probabilities; ``cxr_model.json`` beside them says which classes and which preprocessing
(:class:`cxrlib.core.config.PreprocessConfig`) turn a film into that input, because a deployed
model without its preprocessing gives wrong answers silently.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from cxrlib.core.fsutil import json_text, partial_folder
from cxrlib.core.outputs import OutputRefused, UserOutput, WriteError, os_error_of, write_error

FORMATS = ("savedmodel", "tflite")


SAVED_MODEL_ENTRIES = frozenset({"saved_model.pb", "variables", "assets", "fingerprint.pb",
                                 "keras_metadata.pb"})
"""What a SavedModel folder holds: one holding anything else is the user's, never replaced."""


def export_model(model, fmt: str, out_dir: str | Path, *, classes, preprocess: dict,
                 run_id: str | None = None, output: UserOutput | None = None) -> Path:
    """Write ``model`` as ``fmt`` into ``out_dir``; returns the model's path.

    Args:
        model: the Keras model (image -> probabilities).
        fmt: ``"savedmodel"`` (folder ``saved_model/``, signature ``serve``) or ``"tflite"``
            (``model.tflite``, converted from the SavedModel; float32, no quantisation).
        out_dir: the folder to write (made if missing).
        classes: the class names, in output order.
        preprocess: the run's preprocessing config as a dict.
        run_id: the run it came from, recorded in ``cxr_model.json``.
        output: the rules of user-named outputs (:class:`cxrlib.core.outputs.UserOutput`;
            default: no ``--overwrite``). An earlier export there is replaced only with
            ``overwrite``, and a ``saved_model/`` holding anything but a SavedModel never.

    Raises:
        ValueError: for an unknown format.
        OutputRefused: an output exists (without overwrite) or may not be written.
        WriteError: the system refused the write (disk full, read-only...), TensorFlow's
            writers included; it names the user's path, never the hidden build folder.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    output = output or UserOutput()
    out = output.check(out_dir, folder=True)
    saved = out / "saved_model"
    target = saved if fmt == "savedmodel" else out / "model.tflite"
    output.check(out / "cxr_model.json")
    if fmt == "savedmodel":
        _check_saved_model_folder(saved, output)
    else:
        output.check(target)
    from cxrlib.core.tfsetup import tf  # noqa: PLC0415

    output.folder(out)
    try:
        with partial_folder(saved) as staging:
            model.export(str(staging), format="tf_saved_model", verbose=False)
            if fmt == "savedmodel":
                _check_saved_model_folder(saved, output)  # again: the export took a while
                old = saved.with_name(f".saved_model.replaced-{os.getpid()}")
                if saved.exists():
                    os.replace(saved, old)
                os.replace(staging, saved)
                shutil.rmtree(old, ignore_errors=True)
            else:
                output.write(target, tf().lite.TFLiteConverter.from_saved_model(str(staging)).convert())
    except Exception as exc:  # TensorFlow's writers say "disk full" in errors of their own
        refusal = os_error_of(exc)
        if refusal is None or isinstance(exc, (WriteError, OutputRefused)):
            raise
        raise write_error(target, refusal) from exc  # the user's path, not the hidden build folder
    output.write(out / "cxr_model.json", json_text({
        "format": fmt, "file": target.name, "run_id": run_id, "classes": list(classes),
        "input": {"shape": [None, *map(int, model.input_shape[1:])], "dtype": "float32",
                  "range": [0.0, 1.0], "channels": "grey repeated on 3 channels"},
        "output": "class probabilities in the order of 'classes'", "preprocess": preprocess}))
    return target


def _check_saved_model_folder(saved: Path, output: UserOutput) -> None:
    """A ``saved_model/`` already there is replaced only with ``--overwrite``, and only when it
    holds nothing but a SavedModel's own entries: a folder of the user's files is never
    replaced whole."""
    if not os.path.lexists(saved):
        output.check(saved, folder=True)
        return
    if saved.is_symlink() or not saved.is_dir():
        raise OutputRefused(f"{output.flag} {saved} is already there and is not a SavedModel "
                            "folder; choose another folder")
    output.check(saved, folder=True)
    foreign = sorted(e.name for e in saved.iterdir() if e.name not in SAVED_MODEL_ENTRIES)
    if foreign:
        raise OutputRefused(f"{output.flag} {saved} holds files that are not part of a SavedModel "
                            f"({', '.join(foreign[:3])}); a folder of your files is never "
                            "replaced; choose another folder")
    if not output.overwrite:
        raise OutputRefused(f"{output.flag} {saved} already exists; choose another folder, or "
                            "--overwrite to replace it")
