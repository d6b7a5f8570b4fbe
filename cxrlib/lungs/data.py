"""Films paired with their human lung masks: the rows, their split, and the tensors trained on.

A row is a film of a scanned dataset (:func:`cxrlib.data.datasets.scan_dataset`, so labels,
patient and duplicate groups come from the one place the rest of cxrlib takes them from) that
has a mask: in a ``--masks`` folder (cxr3-lungs layout, with or without its ``manifest.csv``) or
beside it in the Radiography DB layout.

Licences: a film whose ``image_license`` (cxr3-lungs manifest) or ``license`` (the dataset's
manifest) contains "NC" may not be trained on, because the weights ship with the software; it
may be evaluated on. Rows with no licence information count as trainable (the user's data).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

import cv2
import numpy as np
import pandas as pd

from cxrlib.core import paths
from cxrlib.core.config import SplitConfig
from cxrlib.data.splits import group_keys, split_manifest
from cxrlib.lungs.masks import MaskIndex, find_dataset_mask, read_mask_levels
from cxrlib.lungs.prepare import prepare_film

ROW_COLUMNS = ["path", "rel_path", "label", "group_id", "mask_path", "image_license", "nc"]
_CACHE_VERSION = 1  # bump when prepare_film or the target encoding changes

ProgressFn = Callable[[int, int], None]


def paired_rows(data_dir: str | os.PathLike, masks_dir: str | os.PathLike | None = None
                ) -> pd.DataFrame:
    """Films of ``data_dir`` that have a human lung mask, one row each.

    Args:
        data_dir: a dataset folder in any layout :func:`cxrlib.data.datasets.scan_dataset` reads.
        masks_dir: a folder of masks (cxr3-lungs or Radiography DB layout); None uses only the
            masks the dataset carries itself (Radiography DB ``masks/``).

    Returns:
        Columns :data:`ROW_COLUMNS`, sorted by ``rel_path``; ``nc`` is True for films that may
        not be trained on.

    Raises:
        ValueError: no film of the dataset has a mask.
    """
    from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415

    dataset = scan_dataset(data_dir)
    manifest = dataset.manifest.copy()
    manifest["group_id"] = group_keys(manifest)
    index = MaskIndex(masks_dir) if masks_dir is not None else None
    rows = []
    for r in manifest.itertuples(index=False):
        mask = find_dataset_mask(r.path, masks=index, rel_path=r.rel_path,
                                 named=getattr(r, "mask_path", "") or None)
        if mask is None:
            continue
        # the masks folder's own licence column, else the one the scan carried from the
        # dataset's manifest.csv (matched to its films however deep the manifest sits)
        licence = ((index.row(r.rel_path).get("image_license") if index else None)
                   or str(getattr(r, "image_license", "") or getattr(r, "license", "") or ""))
        rows.append({"path": r.path, "rel_path": r.rel_path, "label": r.label, "group_id": r.group_id,
                     "mask_path": str(mask), "image_license": licence, "nc": "NC" in licence})
    if not rows:
        where = f" in {masks_dir}" if masks_dir is not None else " (no --masks folder, no masks/ folders)"
        raise ValueError(f"no film of {data_dir} has a lung mask{where}")
    return pd.DataFrame(rows, columns=ROW_COLUMNS).sort_values("rel_path").reset_index(drop=True)


def split_rows(rows: pd.DataFrame, *, seed: int = 0, test_fraction: float = 0.2,
               val_fraction: float = 0.06) -> pd.Series:
    """``"train"``, ``"val"`` or ``"test"`` for every row, by group (no group on two sides).

    Trainable groups (no NC film) are split ``1 - test - val`` / ``val`` / ``test``, stratified
    by class (:func:`cxrlib.data.splits.split_manifest`). Groups holding an NC film are split
    ``test`` / rest, and their rest becomes validation: they can never be trained on, and the
    validation side chooses the checkpoint and the quality threshold.

    Returns:
        A Series aligned with ``rows.index``.
    """
    group_nc = rows.groupby("group_id")["nc"].transform("any")
    split = pd.Series("", index=rows.index, dtype=object, name="split")
    for nc, val in ((False, val_fraction), (True, 0.0)):
        part = rows[group_nc == nc]
        if len(part):
            sides = split_manifest(part, SplitConfig(test_fraction=test_fraction, val_fraction=val, seed=seed))
            split[part.index] = sides.where(~(nc & (sides == "train")), "val")
    return split


def load_tensors(rows: pd.DataFrame, size: int, progress: ProgressFn | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoded, prepared films and their targets at the working size, cached on disk.

    Args:
        rows: rows from :func:`paired_rows`.
        size: working side.
        progress: ``progress(done, total)`` while decoding (not called on a cache hit).

    Returns:
        ``films`` ``uint8 (N, S, S)`` (:func:`cxrlib.lungs.prepare.prepare_film`), ``target``
        ``uint8 (N, S, S)`` (lung share of each pixel x 255, from area-averaging the full-size
        mask), ``weight`` ``uint8 (N, S, S)`` (255 minus the "ignore" share x 255).
    """
    key = _cache_key(rows, size)
    cache = paths.cache_dir("lungs") / f"{key}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return stored["films"], stored["target"], stored["weight"]
    from cxrlib.data.imageio import read_film  # noqa: PLC0415

    n = len(rows)
    films, target, weight = (np.zeros((n, size, size), np.uint8) for _ in range(3))
    for i, r in enumerate(rows.itertuples(index=False)):
        pixels = read_film(r.path).pixels
        lung, ignore = read_mask_levels(r.mask_path, pixels.shape[:2])
        films[i] = prepare_film(pixels, size)
        target[i] = _area(lung, size)
        weight[i] = 255 - _area(ignore, size)
        if progress:
            progress(i + 1, n)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, films=films, target=target, weight=weight)
    tmp.replace(cache)
    return films, target, weight


def _area(mask: np.ndarray, size: int) -> np.ndarray:
    share = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return np.round(share * 255).astype(np.uint8)


def _cache_key(rows: pd.DataFrame, size: int) -> str:
    lines = [f"v{_CACHE_VERSION} size {size}"]
    for film, mask in zip(rows["path"], rows["mask_path"]):
        for p in (film, mask):
            st = os.stat(p)
            lines.append(f"{p} {st.st_size} {st.st_mtime_ns}")
    return hashlib.sha256(json.dumps(lines).encode()).hexdigest()[:16]


def unseen_by(rows: pd.DataFrame, meta: dict) -> pd.Series:
    """True for the rows the weights described by ``meta`` never saw in training or validation.

    A row is seen when its film is among the asset's recorded training or validation files, or
    its group among the recorded training or validation groups (both are checked, so the answer
    holds even if the group key of a later cxrlib names groups differently).

    Args:
        rows: from :func:`paired_rows`.
        meta: a weights asset's record (:func:`cxrlib.lungs.network.read_asset_meta`).

    Returns:
        A bool Series aligned with ``rows.index``; all True when the asset records nothing.
    """
    groups = meta.get("groups", {})
    seen_groups = set(groups.get("train", [])) | set(groups.get("val", []))
    seen_files = set(meta.get("train_files", [])) | set(meta.get("val_files", []))
    return ~(rows["group_id"].isin(seen_groups) | rows["rel_path"].isin(seen_files))
