"""DICOM films in, DICOM results out: predict and explain datasets held in memory.

The films are decoded by the one reader (:func:`cxrlib.dicom.films.film_of_dataset`), scored
and explained by the one batch path (:func:`cxrlib.explain.batch.explain_films`), and each
explained film gets its :class:`cxrlib.dicom.results.ResultObjects` (lung SEG, heatmap SEG,
overlay SC, SR). A film that cannot be decoded gets a row with the reason and no objects.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxrlib.dicom.report import build_results
from cxrlib.dicom.results import FilmFindings, ResultObjects


@dataclass
class DicomResult:
    """One source dataset explained: its table row and, when explained, its DICOM results."""

    row: dict[str, Any]
    objects: ResultObjects | None
    overlay: np.ndarray | None


def decode_datasets(datasets: Sequence) -> tuple[list, list[str], list[str]]:
    """``(films, errors, warnings)``: per dataset its uint8 pixels or None, "" or the reason,
    and "" or its decoder warning (:func:`cxrlib.data.imageio.read_films`)."""
    from cxrlib.data.imageio import read_films  # noqa: PLC0415
    from cxrlib.dicom.films import film_of_dataset  # noqa: PLC0415

    return read_films(datasets, film_of_dataset)


def predict_datasets(run, datasets: Sequence, *, model=None, batch_size: int = 32):
    """Class probabilities of DICOM datasets, as :func:`cxrlib.evaluation.predict.predict_paths`
    gives for files (``path`` is the SOP instance UID), plus study/series UID columns."""
    import pandas as pd  # noqa: PLC0415

    from cxrlib.evaluation.predict import check_model_fits, predict_films  # noqa: PLC0415

    model = model or run.load_model()
    classes = list(run.classes)
    check_model_fits(model, run.config.preprocess, classes)
    films, errors, warnings = decode_datasets(datasets)
    ok = [i for i, f in enumerate(films) if f is not None]
    probs = np.full((len(films), len(classes)), np.nan, np.float32)
    if ok:
        probs[ok] = predict_films(model, [films[i] for i in ok], run.config.preprocess,
                                  batch_size=batch_size, tta=run.config.train.tta)
    frame = pd.DataFrame({"study_uid": [str(d.StudyInstanceUID) for d in datasets],
                          "series_uid": [str(d.SeriesInstanceUID) for d in datasets],
                          "path": [str(d.SOPInstanceUID) for d in datasets]})
    frame["pred"] = ["" if np.isnan(p).any() else classes[int(p.argmax())] for p in probs]
    for j, name in enumerate(classes):
        frame[f"p_{name}"] = probs[:, j]
    frame["error"] = errors
    frame["warning"] = warnings
    return frame


def explain_datasets(run, datasets: Sequence, settings=None, *, model=None, cam=None,
                     lungs: Any = "installed") -> list[DicomResult]:
    """Explain DICOM datasets in memory and build each film's DICOM results.

    Args:
        run: a run (``id``, ``config``, ``classes``, ``load_model()``).
        datasets: pydicom datasets of films (one batch: all are decoded at once).
        settings: :class:`cxrlib.explain.batch.BatchSettings` (method, layer, target, overlay).
        model, cam, lungs: as :func:`cxrlib.explain.batch.explain_films`.
    """
    from cxrlib.explain.batch import BatchSettings, explain_films  # noqa: PLC0415

    settings = settings or BatchSettings()
    films, errors, warnings = decode_datasets(datasets)
    done = explain_films(run, films, [str(d.SOPInstanceUID) for d in datasets], settings,
                         errors=errors, warnings=warnings, model=model, cam=cam, lungs=lungs)
    return [DicomResult(item.row, None if film is None else results_of(run, ds, film, item),
                        item.overlay) for ds, film, item in zip(datasets, films, done)]


def results_of(run, source, film: np.ndarray, item) -> ResultObjects:
    """The DICOM results of one explained film (:class:`cxrlib.explain.batch.FilmExplanation`)."""
    from cxrlib.preprocessing.geometry import heatmap_to_film  # noqa: PLC0415

    row, classes = item.row, list(run.classes)
    seg = item.lungs
    share = row.get("in_lung_share")
    findings = FilmFindings(
        classes=classes, probabilities=[float(row[f"p_{c}"]) for c in classes], run_id=str(run.id),
        model_family=str(run.config.model.family), cam_method=str(row["method"]),
        cam_layer=str(row["layer"]),
        in_lung_share=None if share is None or not np.isfinite(share) else float(share),
        lung_mask=row.get("lung_mask") or "none",
        mask_flagged=None if seg is None else bool(seg.flagged),
        heatmap="flat: no explanation at this layer" if row["flat"] else "")
    heat = None if row["flat"] else heatmap_to_film(item.heatmap, film.shape[:2], item.box)
    return build_results(source, findings, heatmap=heat, overlay=item.overlay,
                         lung_mask=None if seg is None else seg.mask,
                         lung_quality=None if seg is None else seg.quality,
                         target=str(row["target"]))
