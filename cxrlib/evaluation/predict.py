"""Batched inference: films, files or a labelled folder through a trained run's model.

Every film goes through the run's own preprocessing (:func:`cxrlib.preprocessing.preprocess_film`),
then the model in batches through the one compiled forward pass (:mod:`cxrlib.models.inference`).
Files that cannot be read are listed with the reason; they never stop a batch. A model whose input
or class count does not fit the preprocessing and the task is refused before any film is read
(:func:`check_model_fits`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrlib.core.config import PreprocessConfig
from cxrlib.data.imageio import IMAGE_SUFFIXES, is_film_file  # what a scan reads: one rule for scans and predictions

def _pixels(film: Any) -> np.ndarray:
    return film.pixels if hasattr(film, "pixels") else np.asarray(film)


def predict_films(model, films: Sequence[Any], preprocess_cfg: PreprocessConfig,
                  batch_size: int = 32, tta: str = "none") -> np.ndarray:
    """Class probabilities of decoded films.

    Args:
        model: a Keras model taking float32 ``(N, S, S, 3)`` in [0, 1], S = ``preprocess_cfg.size``.
        films: uint8 grey ``(H, W)`` or RGB ``(H, W, 3)`` arrays (or :class:`cxrlib.data.imageio.Film`).
        preprocess_cfg: the run's preprocessing.
        batch_size: films per model call (memory is bounded by one batch of inputs).
        tta: the run's test-time augmentation (``TrainConfig.tta``, :mod:`cxrlib.models.tta`),
            so a film gets the probabilities the run's own test predictions were made with.

    Returns:
        float32 ``(N, C)`` probabilities in the model's class order.
    """
    from cxrlib.models.tta import predict_tta  # noqa: PLC0415
    from cxrlib.preprocessing.pipeline import preprocess_film  # noqa: PLC0415

    _check_batch_size(batch_size)
    check_model_fits(model, preprocess_cfg)
    n_out = int(model.output_shape[-1])
    if len(films) == 0:
        return np.zeros((0, n_out), np.float32)
    out = []
    for begin in range(0, len(films), batch_size):
        grey = np.stack([preprocess_film(_pixels(f), preprocess_cfg)
                         for f in films[begin:begin + batch_size]])
        out.append(predict_tta(model, grey, tta, batch_size=batch_size))
    return np.concatenate(out, axis=0)


def _check_batch_size(batch_size: int) -> None:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def check_model_fits(model, preprocess_cfg: PreprocessConfig,
                     classes: Sequence[str] | None = None) -> None:
    """Refuse a model that cannot score films prepared by ``preprocess_cfg`` for ``classes``.

    The preprocessing gives grey films repeated on 3 channels, ``S x S x 3``; the model's input
    must be that, and its output one probability per class of the task.

    Raises:
        cxrlib.models.io.ModelFileError: one line saying what does not fit.
    """
    from cxrlib.models.io import ModelFileError  # noqa: PLC0415

    size = preprocess_cfg.size
    shape = model.input_shape
    got = tuple(shape[1:]) if isinstance(shape, tuple) else None
    if got is None or len(got) != 3 or any(g not in (None, w) for g, w in zip(got, (size, size, 3))):
        text = " x ".join(map(str, got)) if got else str(shape)
        raise ModelFileError(f"the model's input is {text}, but films are prepared as {size} x "
                             f"{size} x 3 (grey on 3 channels): it cannot score them")
    n_out = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
    if classes is not None and n_out != len(classes):
        raise ModelFileError(f"the model outputs {n_out} values, but the task has {len(classes)} "
                             f"classes ({', '.join(classes)})")


def image_files(inputs: str | Path | Iterable[str | Path],
                left_out: list[dict] | None = None) -> list[Path]:
    """Files to predict: folders searched recursively, explicit paths kept as given.

    A folder yields the files a dataset scan reads (image names, and DICOMs by their preamble
    under any other name: :func:`cxrlib.data.imageio.is_film_file`). Hidden files and
    folders, other names, folder links (not followed), link loops, dangling links and links that
    lead outside the folder are left out (:class:`cxrlib.data.roots.DatasetFolder`).

    Args:
        inputs: files and folders.
        left_out: when given, gets ``{"path", "reason"}`` for every file or folder left out.

    Raises:
        cxrlib.data.roots.FolderNotAllowed: an input outside ``CXR_DATA_ROOTS`` (when set).
    """
    from cxrlib.data.roots import NOT_UTF8, check_allowed, not_regular, printable, utf8_name  # noqa: PLC0415

    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    found: list[Path] = []
    skipped = [] if left_out is None else left_out
    for item in map(Path, items):
        check_allowed(item)
        if not utf8_name(item):
            skipped.append({"path": printable(item), "reason": NOT_UTF8})
        elif item.is_dir():
            found.extend(_folder_images(item, skipped))
        elif item.exists() and not_regular(item.stat()):  # a FIFO would block the reader
            skipped.append({"path": str(item), "reason": not_regular(item.stat())})
        else:
            found.append(item)
    return found


def _folder_images(folder: Path, left_out: list[dict]) -> list[Path]:
    from cxrlib.data.roots import DatasetFolder, printable  # noqa: PLC0415

    inside, found = DatasetFolder(folder), []

    def unreadable(exc: OSError) -> None:
        left_out.append({"path": exc.filename, "reason": f"cannot read folder ({exc.strerror})"})

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        for d in dirnames:
            if d.startswith(".") or os.path.islink(os.path.join(dirpath, d)):
                left_out.append({"path": os.path.join(dirpath, d), "reason": "hidden folder; not searched"
                                 if d.startswith(".") else "a link to a folder; not followed"})
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not os.path.islink(os.path.join(dirpath, d)))
        for name in filenames:
            path, reason = os.path.join(dirpath, name), None
            if name.startswith("."):
                reason = "hidden file"
            elif not is_film_file(path):
                reason = f"not an image file name (reads {', '.join(IMAGE_SUFFIXES)})"
            else:
                reason = inside.film(path)[1]
            if reason:
                left_out.append({"path": printable(path), "reason": reason})
            else:
                found.append(Path(path))
    left_out.sort(key=lambda r: str(r["path"]))
    return sorted(found)


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
        files), ``p_<class>`` per class (NaN when unreadable), ``error`` ("" or the reason),
        ``warning`` ("" or the film's decoder warning: scored, but maybe not as it looks).
    """
    return _predict_files(model or run.load_model(), list(map(str, paths)), run.config.preprocess,
                          run.classes, batch_size=batch_size, progress=progress,
                          tta=run.config.train.tta)


def _predict_files(model, files: list[str], preprocess_cfg: PreprocessConfig,
                   classes: Sequence[str], *, batch_size: int,
                   progress: Callable[[int, int], None] | None, tta: str = "none") -> pd.DataFrame:
    from cxrlib.data.imageio import read_films  # noqa: PLC0415

    _check_batch_size(batch_size)
    check_model_fits(model, preprocess_cfg, classes)
    probs = np.full((len(files), len(classes)), np.nan, np.float32)
    errors, warnings = [""] * len(files), [""] * len(files)
    for begin in range(0, len(files), batch_size):
        end = min(begin + batch_size, len(files))
        films, errors[begin:end], warnings[begin:end] = read_films(files[begin:end])
        rows = [begin + j for j, film in enumerate(films) if film is not None]
        if rows:
            probs[rows] = predict_films(model, [f for f in films if f is not None],
                                        preprocess_cfg, batch_size=batch_size, tta=tta)
        if progress is not None:
            progress(end, len(files))
    frame = pd.DataFrame({"path": files})
    readable = ~np.isnan(probs).any(axis=1)
    pred = np.array([""] * len(files), dtype=object)
    if readable.any():
        pred[readable] = np.asarray(classes, dtype=object)[probs[readable].argmax(axis=1)]
    frame["pred"] = pred
    for j, name in enumerate(classes):
        frame[f"p_{name}"] = probs[:, j]
    frame["error"] = errors
    frame["warning"] = warnings
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
        ``patient_id``, ``group_id``, ``source``, ``pred``, ``p_<class>``..., ``error``, then
        every other column of the folder's manifest (its ``manifest.csv`` columns too).

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
                            run.config.preprocess, classes, batch_size=batch_size, progress=progress,
                            tta=run.config.train.tta)
    keep = [c for c in ("rel_path", "path", "label", "patient_id", "group_id", "source") if c in manifest]
    scored = scored.drop(columns=["path"])
    extra = [c for c in manifest.columns if c not in keep and c not in scored.columns]
    predictions = pd.concat([manifest[keep], scored, manifest[extra]], axis=1)
    ok = predictions["error"] == ""
    prob_cols = [f"p_{c}" for c in classes]
    ids = predictions.loc[ok, "patient_id"].fillna("").astype(str) if "patient_id" in predictions else None
    metrics = evaluate(predictions.loc[ok, "label"].to_numpy(), predictions.loc[ok, prob_cols].to_numpy(),
                       classes, None if ids is None else ids.to_numpy())
    metrics.update({"run_id": run.id, "data": str(Path(root).resolve()),
                    "fingerprint": dataset.fingerprint, "excluded": {str(k): int(v) for k, v in excluded.items()},
                    "unreadable": int((~ok).sum()) + int(len(dataset.problems))})
    return metrics, predictions


def evaluate_test_split(run) -> tuple[dict, pd.DataFrame]:
    """A run's own test split, as :func:`evaluate_folder` reports a folder (no model is run).

    Returns:
        ``(metrics, predictions)``: :func:`cxrlib.evaluation.metrics.evaluate` of the stored
        test predictions plus ``run_id``, ``data`` and ``fingerprint``; the test rows of
        ``run.predictions()``.

    Raises:
        ValueError: the run has no test predictions (not done yet).
    """
    from cxrlib.evaluation.core import from_predictions  # noqa: PLC0415
    from cxrlib.evaluation.metrics import evaluate  # noqa: PLC0415

    predictions = run.test_predictions()
    if predictions.empty:
        raise ValueError(f"run {run.id} has no test predictions (is it done?)")
    y, probs, patients = from_predictions(predictions, run.classes)
    metrics = evaluate(y, probs, run.classes, patients)
    metrics.update({"run_id": run.id, "data": str(run.config.data.root), "fingerprint": run.fingerprint,
                    "split": "test"})
    return metrics, predictions
