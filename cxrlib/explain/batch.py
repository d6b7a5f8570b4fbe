"""Explaining many films: overlays at native resolution and one table row per film, streamed.

Films are decoded, preprocessed and explained one batch at a time; a batch's overlays are written
and its films dropped before the next batch is read, so a folder of any size never holds more
than ``batch_size`` decoded films in memory. Files that cannot be read get a row with the reason.

Each row holds the class probabilities, the explained class, whether the map is flat (no overlay
is written for a flat map: it is not an explanation), the deletion score
(:func:`cxrlib.explain.faithfulness.deletion_score`) and the share of the heatmap inside the lung
fields when the learned lung segmenter's weights are installed (:func:`lung_segmenter`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrlib.core.config import ExplainConfig

NO_LUNGS = "lung segmenter weights not installed (cxrlib/lungs/assets): in_lung_share left empty"
NO_LUNGS_CELL = "none (no lung segmenter weights)"
"""The ``lung_mask`` cell of every row when the segmenter is not available."""


@dataclass(frozen=True)
class BatchSettings:
    """How a folder is explained.

    Attributes:
        explain: the CAM and how it is drawn (:class:`cxrlib.core.config.ExplainConfig`: method,
            layer or ``None`` for the method's default, target or ``None`` for each film's
            predicted class, alpha, colormap, contour).
        deletion_steps: steps of the deletion test (as the Explain page: 20); 0 skips it.
        batch_size: films decoded and explained at once (the memory bound).
    """

    explain: ExplainConfig = ExplainConfig()
    deletion_steps: int = 20
    batch_size: int = 16


def lung_segmenter() -> tuple[Callable[..., list] | None, str]:
    """``(lung_fields, "")`` when the learned lung segmenter and its weights are installed, else
    ``(None, why not)``. ``lung_fields(films, paths, predicted=...)`` is
    :func:`cxrlib.lungs.lung_fields`."""
    try:
        from cxrlib.lungs import lung_fields  # noqa: PLC0415
        from cxrlib.lungs.network import ASSET_DIR, ASSET_NAME  # noqa: PLC0415
    except ImportError:
        return None, NO_LUNGS
    if not (Path(ASSET_DIR) / f"{ASSET_NAME}.json").is_file():
        return None, NO_LUNGS
    return lung_fields, ""


def explain_files(source: Any, files: Sequence[str | Path], out_names: Sequence[str | Path],
                  out_dir: str | Path, settings: BatchSettings = BatchSettings(), *,
                  progress: Callable[[int, int], None] | None = None,
                  on_film: Callable[[str, np.ndarray, FilmExplanation], None] | None = None,
                  output: Any = None) -> Iterator[dict[str, Any]]:
    """Explain image files with a run's model, writing an overlay PNG per film; yields rows.

    Args:
        source: a :class:`cxrlib.runs.run.Run` (or anything with ``config.preprocess``,
            ``classes`` and ``load_model()``).
        files: image files, in order.
        out_names: per file, the overlay's path relative to ``out_dir`` (without suffix).
        out_dir: folder for the overlays (created).
        settings: method, layer, target, overlay and batch size.
        progress: ``progress(done, total)`` after each batch.
        on_film: ``on_film(path, film, explanation)`` for each readable film while its batch
            is in memory (e.g. to build its DICOM results).
        output: the rules the overlays are written by (:class:`cxrlib.core.outputs.UserOutput`;
            default: none is written over an existing file).

    Yields:
        One dict per file, in order: ``path``, ``overlay`` (relative path, "" when none),
        ``width``, ``height``, ``method``, ``layer``, ``target`` (class name), ``predicted``,
        ``p_<class>``, ``flat``, ``deletion_score``, ``in_lung_share``, ``lung_mask``, ``error``,
        ``warning`` (the film's decoder warning, "" for none).

    Raises:
        ValueError: an unknown method or layer, or a model that does not fit the run.
    """
    from cxrlib.evaluation.predict import check_model_fits  # noqa: PLC0415
    from cxrlib.explain.methods import get_cam  # noqa: PLC0415

    if settings.batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {settings.batch_size}")
    model = source.load_model()
    check_model_fits(model, source.config.preprocess, source.classes)
    cam = get_cam(settings.explain.method, model, settings.explain.layer)
    from cxrlib.core.outputs import UserOutput  # noqa: PLC0415

    lungs, _ = lung_segmenter()
    output = output or UserOutput()
    out_dir = output.folder(Path(out_dir))
    for begin in range(0, len(files), settings.batch_size):
        end = min(begin + settings.batch_size, len(files))
        # One function call per batch: its films are freed when it returns, before the next read.
        yield from _explain_batch(source, model, cam, list(files[begin:end]),
                                  list(out_names[begin:end]), out_dir, settings, lungs, on_film,
                                  output)
        if progress is not None:
            progress(end, len(files))


def overlay_name(name: str | Path, method: str) -> str:
    """The overlay's path under the output folder: ``<name>-<method>.png``."""
    return f"{Path(name).as_posix()}-{method}.png"


@dataclass
class FilmExplanation:
    """One film explained in memory (what :func:`explain_films` returns per film).

    Attributes:
        row: the table row (as :func:`explain_files` yields, ``overlay`` still "").
        heatmap: the CAM at the model input size, or None (unreadable film).
        box: the part of the film the model saw, ``(x0, y0, x1, y1)``, or None.
        lungs: the film's :class:`cxrlib.lungs.LungSegmentation`, or None (no segmenter, or
            unreadable).
        overlay: uint8 RGB ``(H, W, 3)`` at the film's size, or None (flat map, unreadable).
    """

    row: dict[str, Any]
    heatmap: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None
    lungs: Any = None
    overlay: np.ndarray | None = None


def explain_films(source: Any, films: Sequence[np.ndarray | None], paths: Sequence[str],
                  settings: BatchSettings = BatchSettings(), *, errors: Sequence[str] | None = None,
                  warnings: Sequence[str] | None = None,
                  model=None, cam=None, lungs: Any = "installed") -> list[FilmExplanation]:
    """Explain decoded films in memory (one batch): rows, heatmaps, lung fields and overlays.

    Args:
        source: a run (``config.preprocess``, ``classes``, ``load_model()``).
        films: uint8 films; None for one that could not be read (its ``errors`` entry says why).
        paths: per film, the name its row carries (a file path, or a DICOM SOP instance UID).
        settings: method, layer, target, overlay and deletion steps.
        errors: per film, "" or the reason it could not be read.
        warnings: per film, "" or its decoder warning (the row's ``warning``).
        model, cam: an already loaded model and CAM (else loaded here).
        lungs: :func:`lung_segmenter`'s callable, None for none; by default the installed one.

    Returns:
        One :class:`FilmExplanation` per film, in order.
    """
    from cxrlib.explain.faithfulness import deletion_score  # noqa: PLC0415
    from cxrlib.explain.overlay import overlay  # noqa: PLC0415
    from cxrlib.preprocessing.geometry import input_box, input_lung_share  # noqa: PLC0415
    from cxrlib.preprocessing.pipeline import preprocess_film, to_model_input  # noqa: PLC0415

    if model is None:
        from cxrlib.evaluation.predict import check_model_fits  # noqa: PLC0415

        model = source.load_model()
        check_model_fits(model, source.config.preprocess, source.classes)
    if cam is None:
        from cxrlib.explain.methods import get_cam  # noqa: PLC0415

        cam = get_cam(settings.explain.method, model, settings.explain.layer)
    if isinstance(lungs, str):
        lungs = lung_segmenter()[0]
    classes, cfg = list(source.classes), source.config.preprocess
    errors = list(errors) if errors is not None else [""] * len(films)
    warnings = list(warnings) if warnings is not None else [""] * len(films)
    done = [FilmExplanation(_empty_row(str(p), classes, cam.name, cam.layer, e, w))
            for p, e, w in zip(paths, errors, warnings)]
    ok = [i for i, f in enumerate(films) if f is not None]
    if not ok:
        return done
    crops = _crop_lungs(cfg, [films[i] for i in ok])  # the lung crop's masks, segmented once
    x = to_model_input(np.stack([preprocess_film(films[i], cfg, c) for i, c in zip(ok, crops)]))
    boxes = [input_box(films[i], cfg, c) for i, c in zip(ok, crops)]  # what the model saw
    result = cam.explain(x, settings.explain.target)
    masks = _lung_masks(lungs, [films[i] for i in ok], [paths[i] for i in ok], crops)
    for j, i in enumerate(ok):
        heat, item = result.heatmaps[j], done[i]
        row = item.row
        item.heatmap, item.box = heat, boxes[j]
        item.lungs = None if masks is None else masks[j]
        row.update({"width": films[i].shape[1], "height": films[i].shape[0],
                    "target": classes[int(result.targets[j])],
                    "predicted": classes[int(result.probs[j].argmax())],
                    "flat": bool(result.flat[j])})
        row.update({f"p_{c}": float(p) for c, p in zip(classes, result.probs[j])})
        row["lung_mask"] = NO_LUNGS_CELL if masks is None else ""
        if result.flat[j]:  # not an explanation: no overlay, no scores
            continue
        item.overlay = overlay(films[i], heat, alpha=settings.explain.alpha,
                               colormap=settings.explain.colormap,
                               contour=settings.explain.contour, box=boxes[j])
        if settings.deletion_steps > 0:
            row["deletion_score"] = deletion_score(model, x[j], heat, int(result.targets[j]),
                                                   steps=settings.deletion_steps)
        if masks is not None:
            seg = masks[j]  # counted at the model input, as the audit counts it
            row.update(in_lung_share=input_lung_share(heat, seg.mask, boxes[j], cfg.size),
                       lung_mask=seg.source + (" (flagged: poor mask)" if seg.flagged else ""))
    return done


def _explain_batch(source, model, cam, paths: list, names: list, out_dir: Path,
                   settings: BatchSettings, lungs, on_film, output) -> list[dict[str, Any]]:
    from cxrlib.data.imageio import read_films  # noqa: PLC0415
    from cxrlib.explain.png import to_png  # noqa: PLC0415

    films, errors, warnings = read_films(paths)
    done = explain_films(source, films, [str(p) for p in paths], settings, errors=errors,
                         warnings=warnings, model=model, cam=cam, lungs=lungs)
    for item, name, film in zip(done, names, films):
        if on_film is not None and film is not None:
            on_film(str(item.row["path"]), film, item)
        if item.overlay is None:
            continue
        rel = Path(overlay_name(name, cam.name))
        output.write(out_dir / rel, to_png(item.overlay))
        item.row["overlay"] = rel.as_posix()
    return [item.row for item in done]


def _crop_lungs(cfg, films: list) -> list:
    if "lung_crop" not in cfg.steps:
        return [None] * len(films)
    from cxrlib.lungs import segment_lungs  # noqa: PLC0415

    return [segment_lungs(f) for f in films]


def _lung_masks(lungs, films: list, paths: list, crops: list):
    """The films' lung fields; a crop run's predicted masks (``crops``) are not computed again."""
    if lungs is None:
        return None
    return lungs(films, [str(p) for p in paths], predicted=crops)


def _empty_row(path: str, classes: list[str], method: str, layer: str,
               error: str, warning: str = "") -> dict[str, Any]:
    return {"path": path, "overlay": "", "width": None, "height": None, "method": method,
            "layer": layer, "target": "", "predicted": "",
            **{f"p_{c}": float("nan") for c in classes}, "flat": None,
            "deletion_score": float("nan"), "in_lung_share": float("nan"), "lung_mask": "",
            "error": error, "warning": warning}


def columns(classes: Sequence[str]) -> list[str]:
    """The columns of :func:`explain_files`' rows, in order."""
    return list(_empty_row("", list(classes), "", "", ""))
