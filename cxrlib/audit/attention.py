"""Where the model looks: share of each film's CAM mass inside its lung fields.

The lung fields are the learned segmenter's, or a dataset's own masks where it has them
(:func:`cxrlib.preprocessing.geometry.input_lung_fields`), in the geometry of the model input
the CAM was computed on. Films whose predicted mask is flagged as poor
(:attr:`cxrlib.lungs.LungSegmentation.flagged`) keep their row, but are left out of every
share and of the gallery, and counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrlib.lungs import cam_in_lung_share, segment_batch


@dataclass
class Attention:
    """The per-film table of :func:`attention_audit` and what it was computed from.

    Attributes:
        table: see :func:`attention_table`.
        heatmaps: ``float32 (N, h, w)`` the CAMs, row ``i`` for ``table`` row ``i``.
        masks: ``bool (N, S, S)`` the lung masks the shares were computed with.
    """

    table: pd.DataFrame
    heatmaps: np.ndarray
    masks: np.ndarray


@dataclass
class GalleryFilm:
    """One gallery film exactly as it was scored: the model input, its mask, its CAM.

    Attributes:
        rel_path / label / pred / in_lung_share: as in :func:`attention_table`.
        image: ``uint8 (S, S)`` the grey model input the CAM was computed on.
        mask: ``bool (S, S)`` the lung mask the share was computed with, at that size.
        heatmap: the CAM (resized to ``S`` x ``S`` bilinearly for the share).
        mask_source: ``"dataset"`` or ``"predicted"``.
    """

    rel_path: str
    label: str
    pred: str
    in_lung_share: float
    image: np.ndarray
    mask: np.ndarray
    heatmap: np.ndarray
    mask_source: str


def lung_fields_of(manifest: pd.DataFrame, rel_paths, images: np.ndarray, cfg, *, masks=None,
                   chunk: int = 16, progress=None) -> list:
    """Lung fields of a dataset's films (e.g. a run's test films) in their model inputs' geometry.

    Each film is decoded again at its own size (a chunk at a time: originals can be large), its
    lung field taken from the manifest's ``mask_path``, a masks folder or the segmenter, and
    carried into its model input (:func:`cxrlib.preprocessing.geometry.input_lung_fields`).

    Args:
        manifest: the dataset's manifest (``rel_path``, ``path``; ``mask_path`` when present).
        rel_paths: the films, in the order of ``images``.
        images: their model inputs ``uint8 (N, S, S)`` (for a film that no longer decodes, the
            segmenter's mask of its model input is used: the same geometry, a predicted mask).
        cfg: the run's :class:`cxrlib.core.config.PreprocessConfig`.
        masks: a :class:`cxrlib.lungs.MaskIndex` of a masks folder, or None.
        chunk: films decoded at once.
        progress: ``progress(done, total)``.

    Returns:
        One :class:`cxrlib.lungs.LungSegmentation` per film, mask ``bool (S, S)``.
    """
    from cxrlib.preprocessing.geometry import input_lung_fields  # noqa: PLC0415

    rows = manifest.set_index(manifest["rel_path"].astype(str))
    rel_paths = [str(p) for p in rel_paths]
    out: list = []
    for start in range(0, len(rel_paths), chunk):
        part = rel_paths[start:start + chunk]
        films = {k: _decode(rows.at[rel, "path"]) for k, rel in enumerate(part)}
        good = [k for k, f in films.items() if f is not None]
        segs = dict(zip(good, input_lung_fields(
            [films[k] for k in good], [str(rows.at[part[k], "path"]) for k in good], cfg,
            masks=masks, rel_paths=[part[k] for k in good],
            mask_paths=[rows.at[part[k], "mask_path"] if "mask_path" in rows.columns else None
                        for k in good])))
        bad = [k for k in range(len(part)) if k not in segs]
        segs.update(zip(bad, segment_batch([np.asarray(images[start + k]) for k in bad])))
        out.extend(segs[k] for k in range(len(part)))
        if progress is not None:
            progress(len(out), len(rel_paths))
    return out


def _decode(path) -> np.ndarray | None:
    from cxrlib.data.imageio import read_film  # noqa: PLC0415

    try:
        return read_film(path).pixels
    except Exception:  # noqa: BLE001  the file changed since its tensors were cached
        return None


def attention_audit(model, images: np.ndarray, labels, classes: tuple[str, ...], *,
                    rel_paths=None, method: str = "gradcam", layer: str | None = None,
                    batch_size: int = 16, segmentations=None) -> Attention:
    """Per film: the CAM of the predicted class and the share of its mass inside the lungs.

    Args:
        model: a Keras model taking float32 ``(N, S, S, 3)`` in [0, 1].
        images: preprocessed grey films ``uint8 (N, S, S)``.
        labels: true class names, one per film.
        classes: the model's class order.
        rel_paths: film identifiers for the table (default ``0..N-1``).
        method / layer: CAM method and layer (:func:`cxrlib.explain.get_cam`).
        batch_size: films per CAM call.
        segmentations: one :class:`cxrlib.lungs.LungSegmentation` per film, its mask at the
            model input's size and geometry (:func:`cxrlib.preprocessing.geometry.input_lung_fields`);
            None segments the model inputs themselves (predicted masks).

    Returns:
        An :class:`Attention`.
    """
    from cxrlib.explain import get_cam  # noqa: PLC0415
    from cxrlib.preprocessing.pipeline import to_model_input  # noqa: PLC0415

    images = np.asarray(images)
    segs = segmentations if segmentations is not None else segment_batch(list(images))
    cam = get_cam(method, model, layer)
    shares, preds, heats = [], [], []
    for start in range(0, len(images), batch_size):
        heat, probs = cam(to_model_input(images[start:start + batch_size]))
        preds.extend(np.asarray(classes)[probs.argmax(axis=1)])
        heats.extend(np.asarray(heat, np.float32))
        shares.extend(cam_in_lung_share(h, s.mask) for h, s in zip(heat, segs[start:start + batch_size]))
    ids = list(rel_paths) if rel_paths is not None else list(range(len(images)))
    table = pd.DataFrame({"rel_path": ids, "label": list(labels), "pred": preds,
                          "in_lung_share": shares, "mask_source": [s.source for s in segs],
                          "lung_area": [float(np.mean(s.mask)) for s in segs],
                          "mask_quality": [float(s.quality) for s in segs],
                          "mask_flagged": [bool(s.flagged) for s in segs]})
    shape = images.shape[1:] if len(images) else (0, 0)
    masks = np.stack([s.mask for s in segs]) if segs else np.zeros((0, *shape), bool)
    return Attention(table, np.stack(heats) if heats else np.zeros((0, *shape), np.float32), masks)


def attention_table(model, images: np.ndarray, labels, classes: tuple[str, ...], *,
                    rel_paths=None, method: str = "gradcam", layer: str | None = None,
                    batch_size: int = 16, segmentations=None) -> pd.DataFrame:
    """The table of :func:`attention_audit` (same arguments).

    Returns:
        ``rel_path``, ``label``, ``pred``, ``in_lung_share`` (nan for an empty CAM),
        ``mask_source`` (``dataset`` / ``predicted``), ``lung_area`` (the share of the model
        input inside the mask: what a CAM spread evenly would score), ``mask_quality`` and
        ``mask_flagged`` (a predicted mask below the segmenter's quality threshold: left out of
        the shares).
    """
    return attention_audit(model, images, labels, classes, rel_paths=rel_paths, method=method,
                           layer=layer, batch_size=batch_size, segmentations=segmentations).table


def masks_used(sources) -> str:
    """Which masks a figure used: ``"predicted"``, ``"dataset"``, or both with their counts."""
    counts = pd.Series(list(sources), dtype=object).value_counts()
    if len(counts) == 0:
        return "none"
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{name} ({int(n)})" for name, n in sorted(counts.items()))


def lung_mask_counts(segmentations) -> dict[str, int]:
    """``films``, ``dataset`` and ``predicted`` (where the masks came from) and ``flagged``
    (predicted masks below the quality threshold: left out of the figures) of a list of
    :class:`cxrlib.lungs.LungSegmentation`."""
    segs = list(segmentations)
    return {"films": len(segs), "dataset": sum(s.source == "dataset" for s in segs),
            "predicted": sum(s.source == "predicted" for s in segs),
            "flagged": sum(bool(s.flagged) for s in segs)}


def attention_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per true class (and ``all``): the in-lung share over the films whose mask is trusted.

    Returns:
        ``label``, ``films`` (all films), ``flagged`` (films left out: their predicted mask is
        flagged as poor), ``scored`` (films in the mean: a trusted mask and a non-empty CAM),
        ``mean`` and ``median`` in-lung share, ``lung_area`` (the mean share of the input that
        is lung: the share of an evenly spread CAM, the level to read ``mean`` against; a lung
        crop raises it), and ``masks`` (:func:`masks_used` of the scored films).
    """
    def agg(g: pd.DataFrame) -> dict:
        kept = g[~g["mask_flagged"].astype(bool)]
        s = kept["in_lung_share"].dropna()
        return {"films": len(g), "flagged": int(g["mask_flagged"].astype(bool).sum()),
                "scored": len(s), "mean": float(s.mean()) if len(s) else float("nan"),
                "median": float(s.median()) if len(s) else float("nan"),
                "lung_area": float(kept.loc[s.index, "lung_area"].mean()) if len(s) else float("nan"),
                "masks": masks_used(kept.loc[s.index, "mask_source"])}
    rows = [{"label": c, **agg(g)} for c, g in table.groupby("label", sort=True)]
    rows.append({"label": "all", **agg(table)})
    return pd.DataFrame(rows)


def attention_gallery(table: pd.DataFrame, n: int = 12, *, reliable_only: bool = True) -> pd.DataFrame:
    """The ``n`` films with the most CAM mass outside the lungs (lowest in-lung share first).

    With ``reliable_only``, films whose mask is flagged are left out (their share says little,
    and it is not in the summary either).
    """
    t = table.dropna(subset=["in_lung_share"])
    if reliable_only:
        t = t[~t["mask_flagged"].astype(bool)]
    return t.sort_values("in_lung_share", kind="stable").head(n).reset_index(drop=True)


def gallery_films(attention: Attention, images: np.ndarray, gallery: pd.DataFrame) -> list[GalleryFilm]:
    """The gallery's films exactly as scored: model input, mask and CAM of each, by row."""
    row_of = {str(p): i for i, p in enumerate(attention.table["rel_path"])}
    out = []
    for g in gallery.itertuples():
        i = row_of[str(g.rel_path)]
        out.append(GalleryFilm(str(g.rel_path), str(g.label), str(g.pred), float(g.in_lung_share),
                               np.asarray(images[i]), attention.masks[i], attention.heatmaps[i],
                               str(g.mask_source)))
    return out
