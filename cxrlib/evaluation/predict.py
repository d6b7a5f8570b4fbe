"""Batched inference: films, files or a labelled folder through a trained run's model.

Every film goes through the run's own preprocessing (:func:`cxrlib.preprocessing.steps.preprocess_film`)
and :func:`cxrlib.preprocessing.steps.to_model_input`, then the model in batches through one
``tf.function`` with a free batch dimension (traced once; measured 3-4x faster than
``model.predict`` per call on these CPUs, see ../shared/NOTES.md). Files that cannot be read
are listed with the reason; they never stop a batch.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrlib.core.config import PreprocessConfig
from cxrlib.data.imageio import IMAGE_SUFFIXES  # what read_film can open; one list for scans and predictions

_CALLS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def _model_call(model):
    """A ``tf.function`` of ``model(x, training=False)`` for any batch size, cached per model.

    The function reaches the model through a weak reference: a cached value that held the model
    itself would keep its WeakKeyDictionary key alive, so no model would ever be freed.
    """
    try:
        return _CALLS[model]
    except (KeyError, TypeError):
        pass
    from cxrlib.core.tfsetup import tf  # noqa: PLC0415

    tf_ = tf()
    size = model.input_shape[1:]
    model_ref = weakref.ref(model)
    fn = tf_.function(lambda x: model_ref()(x, training=False),
                      input_signature=[tf_.TensorSpec((None, *size), tf_.float32)])
    try:
        _CALLS[model] = fn
    except TypeError:
        pass
    return fn


def _pixels(film: Any) -> np.ndarray:
    return film.pixels if hasattr(film, "pixels") else np.asarray(film)


def predict_films(model, films: Sequence[Any], preprocess_cfg: PreprocessConfig,
                  batch_size: int = 32) -> np.ndarray:
    """Class probabilities of decoded films.

    Args:
        model: a Keras model taking float32 ``(N, S, S, 3)`` in [0, 1], S = ``preprocess_cfg.size``.
        films: uint8 grey ``(H, W)`` or RGB ``(H, W, 3)`` arrays (or :class:`cxrlib.data.imageio.Film`).
        preprocess_cfg: the run's preprocessing.
        batch_size: films per model call (memory is bounded by one batch of inputs).

    Returns:
        float32 ``(N, C)`` probabilities in the model's class order.
    """
    from cxrlib.preprocessing.pipeline import preprocess_film, to_model_input  # noqa: PLC0415

    _check_batch_size(batch_size)
    n_out = int(model.output_shape[-1])
    if len(films) == 0:
        return np.zeros((0, n_out), np.float32)
    call = _model_call(model)
    out = []
    for begin in range(0, len(films), batch_size):
        grey = np.stack([preprocess_film(_pixels(f), preprocess_cfg)
                         for f in films[begin:begin + batch_size]])
        out.append(np.asarray(call(to_model_input(grey)), np.float32))
    return np.concatenate(out, axis=0)


def _check_batch_size(batch_size: int) -> None:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def image_files(inputs: str | Path | Iterable[str | Path]) -> list[Path]:
    """Files to predict: a folder (searched recursively for the image suffixes a dataset scan
    reads, hidden files left out) or explicit paths (kept as given)."""
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    found: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*")
                                if p.is_file() and not p.name.startswith(".")
                                and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(item)
    return found


def predict_paths(run, paths: Iterable[str | Path], *, batch_size: int = 32, model=None,
                  progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Predict image files with a run's model and preprocessing.

    Args:
        run: a :class:`cxrlib.runs.run.Run` (its config gives the preprocessing, its classes
            the columns).
        paths: image files (not folders; see :func:`image_files`).
        batch_size: films decoded and predicted at once.
        model: an already loaded model to use instead of ``run.load_model()``.
        progress: ``progress(done, total)`` after each batch.

    Returns:
        One row per path in input order: ``path``, ``pred`` (class name, "" for unreadable
        files), ``p_<class>`` per class (NaN when unreadable), ``error`` ("" or the reason).
    """
    return _predict_files(model or run.load_model(), list(map(str, paths)), run.config.preprocess,
                          run.classes, batch_size=batch_size, progress=progress)


def _predict_files(model, files: list[str], preprocess_cfg: PreprocessConfig,
                   classes: Sequence[str], *, batch_size: int,
                   progress: Callable[[int, int], None] | None) -> pd.DataFrame:
    from cxrlib.data.imageio import ImageReadError, read_film  # noqa: PLC0415

    _check_batch_size(batch_size)
    probs = np.full((len(files), len(classes)), np.nan, np.float32)
    errors = [""] * len(files)
    for begin in range(0, len(files), batch_size):
        films, rows = [], []
        for i in range(begin, min(begin + batch_size, len(files))):
            try:
                films.append(read_film(files[i]).pixels)
                rows.append(i)
            except ImageReadError as exc:
                errors[i] = exc.reason
            except OSError as exc:
                errors[i] = exc.strerror or str(exc)
        if films:
            probs[rows] = predict_films(model, films, preprocess_cfg, batch_size=batch_size)
        if progress is not None:
            progress(min(begin + batch_size, len(files)), len(files))
    frame = pd.DataFrame({"path": files})
    readable = ~np.isnan(probs).any(axis=1)
    pred = np.array([""] * len(files), dtype=object)
    if readable.any():
        pred[readable] = np.asarray(classes, dtype=object)[probs[readable].argmax(axis=1)]
    frame["pred"] = pred
    for j, name in enumerate(classes):
        frame[f"p_{name}"] = probs[:, j]
    frame["error"] = errors
    return frame


def evaluate_folder(run, root: str | Path, *, batch_size: int = 32, model=None,
                    progress: Callable[[int, int], None] | None = None) -> tuple[dict, pd.DataFrame]:
    """A trained run on another labelled dataset folder.

    The folder is scanned with :func:`cxrlib.data.datasets.scan_dataset` (its class folders map to
    canonical classes through the aliases); images of classes the run does not know are left out
    and counted.

    Returns:
        ``(metrics, predictions)``: :func:`cxrlib.evaluation.metrics.evaluate` plus ``run_id``, ``data``,
        ``fingerprint``, ``excluded`` (images per class the run does not know) and ``unreadable``;
        predictions has ``rel_path``, ``path``, ``label``,
        ``patient_id``, ``group_id``, ``pred``, ``p_<class>``..., ``error``.

    Raises:
        cxrlib.data.datasets.DatasetError: for a folder that is not a dataset.
        ValueError: when no image of the run's classes is readable.
    """
    from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415
    from cxrlib.evaluation.metrics import evaluate  # noqa: PLC0415

    classes = run.classes
    dataset = scan_dataset(root, bacterial=run.config.data.bacterial)
    manifest = dataset.manifest
    known = manifest["label"].isin(classes)
    excluded = manifest.loc[~known, "label"].value_counts().to_dict()
    manifest = manifest.loc[known].reset_index(drop=True)
    if manifest.empty:
        raise ValueError(f"{root} has no images of the run's classes {list(classes)}")
    scored = _predict_files(model or run.load_model(), manifest["path"].astype(str).tolist(),
                            run.config.preprocess, classes, batch_size=batch_size, progress=progress)
    keep = [c for c in ("rel_path", "path", "label", "patient_id", "group_id") if c in manifest]
    predictions = pd.concat([manifest[keep], scored.drop(columns=["path"])], axis=1)
    ok = predictions["error"] == ""
    prob_cols = [f"p_{c}" for c in classes]
    ids = predictions.loc[ok, "patient_id"].fillna("").astype(str) if "patient_id" in predictions else None
    metrics = evaluate(predictions.loc[ok, "label"].to_numpy(), predictions.loc[ok, prob_cols].to_numpy(),
                       classes, None if ids is None else ids.to_numpy())
    metrics.update({"run_id": run.id, "data": str(Path(root).resolve()),
                    "fingerprint": dataset.fingerprint, "excluded": {str(k): int(v) for k, v in excluded.items()},
                    "unreadable": int((~ok).sum()) + int(len(dataset.problems))})
    return metrics, predictions
