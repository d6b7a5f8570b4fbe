"""Lung masks that datasets carry themselves: reading them, and finding a film's own mask.

Two layouts are read:

* ``cxr3-lungs`` (``../shared/datasets/cxr3-lungs``): a folder mirroring the film dataset, one PNG
  per film at the film's relative path with the suffix ``.png``; values 255 lung field, 127
  "ignore" (a device or markup lying over the lung), 0 background. An optional ``manifest.csv``
  with ``file`` and ``mask`` columns maps films to masks explicitly.
* the COVID-19 Radiography Database: ``<class>/masks/<name>`` beside ``<class>/images/<name>``,
  values 0 / 255. Its masks are 256 x 256 while its films are 299 x 299: masks are resized to
  the film (nearest neighbour) when the caller gives the film's size.

Levels are read by range (< 64 background, 64-191 ignore, >= 192 lung) so that JPEG-coded or
blurred masks snap to the three levels; a 0/1 mask counts 1 as lung.
"""
from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import cv2
import numpy as np

LUNG, IGNORE = 255, 127
MANIFEST = "manifest.csv"


def read_mask_levels(path: str | os.PathLike, shape: tuple[int, int] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Read a mask file as ``(lung, ignore)`` bool arrays.

    Args:
        path: a mask image in either layout (module docstring).
        shape: ``(H, W)`` of the film; the mask is resized to it (nearest) when it differs.

    Returns:
        ``lung`` (value 255) and ``ignore`` (value 127) masks, each ``bool (H, W)``.

    Raises:
        cxrlib.data.imageio.ImageReadError: the file cannot be decoded.
    """
    from cxrlib.data.imageio import read_film  # noqa: PLC0415

    values = read_film(path).pixels
    if values.ndim == 3:  # RGB-saved masks: a pixel is as "on" as its brightest channel
        values = values.max(axis=2)
    if values.max() == 1:
        values = values * np.uint8(255)
    if shape is not None and values.shape != tuple(shape):
        values = cv2.resize(values, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return values >= 192, (values >= 64) & (values < 192)


def dataset_mask(path: str | os.PathLike | None, shape: tuple[int, int] | None = None
                 ) -> np.ndarray | None:
    """The lung field of a dataset's own mask file, as a bool array.

    The "ignore" pixels (127: a device over the lung) count as lung field here: they lie inside
    it, and a CAM on a pacemaker over the lung is still a CAM in the lung. (Dice leaves them out:
    see :func:`cxrlib.lungs.measures.dice`.)

    Args:
        path: the mask file (either layout), or None.
        shape: ``(H, W)`` of the film, to resize the mask to (nearest) when it differs.

    Returns:
        ``bool (H, W)``, or None when ``path`` is None or no such file exists.

    Raises:
        cxrlib.data.imageio.ImageReadError: the file exists but cannot be decoded.
    """
    if path is None or not Path(path).is_file():
        return None
    lung, ignore = read_mask_levels(path, shape)
    return lung | ignore


MASK_SUFFIXES = (".png", ".jpg", ".jpeg")
"""File-name endings of the mask files a ``--masks`` folder is indexed by."""


class MaskIndex:
    """The mask files of one ``--masks`` folder, looked up by the film's path in its dataset.

    Keys are relative paths without suffix, lower-cased, with a ``masks`` folder read as
    ``images`` (the Radiography DB layout), so ``COVID/masks/COVID-1.png`` answers the film
    ``COVID/images/COVID-1.png`` and ``COVID-19/a.png`` answers ``COVID-19/a.jpg``. With a
    ``manifest.csv`` holding ``file`` and ``mask`` columns, its pairs are used as well.
    """

    def __init__(self, folder: str | os.PathLike):
        """Index every PNG (and JPEG) mask under ``folder``.

        The folder must be one ``CXR_DATA_ROOTS`` allows; files and ``manifest.csv`` pairs that
        lead outside it are left out, and a ``manifest.csv`` that cannot be parsed is a warning.

        Raises:
            NotADirectoryError: ``folder`` is not a folder.
            cxrlib.data.roots.FolderNotAllowed: ``CXR_DATA_ROOTS`` does not allow it.
        """
        from cxrlib.data.roots import DatasetFolder, check_allowed  # noqa: PLC0415

        check_allowed(folder)
        self.folder = Path(folder)
        if not self.folder.is_dir():
            what = "not found" if not self.folder.exists() else \
                "is a file, not a folder" if self.folder.is_file() else "is not a folder"
            raise NotADirectoryError(f"masks folder {self.folder} {what}")
        inside = DatasetFolder(self.folder)
        self._by_key: dict[str, Path] = {}
        self._by_stem: dict[str, list[Path]] = {}
        self.rows: dict[str, dict[str, str]] = {}
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or not name.lower().endswith(MASK_SUFFIXES):
                    continue
                path = Path(dirpath) / name
                if inside.stat(str(path))[0] is None:  # a link that leads out, a loop
                    continue
                self._by_key.setdefault(_key(path.relative_to(self.folder).as_posix()), path)
                self._by_stem.setdefault(path.stem.lower(), []).append(path)
        manifest = self.folder / MANIFEST
        if manifest.is_file():
            try:
                with open(manifest, newline="", encoding="utf-8-sig") as fh:
                    pairs = [(r.get("file"), r.get("mask"), r) for r in csv.DictReader(fh)]
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                warnings.warn(f"{manifest} could not be read ({type(exc).__name__}: {exc}); its "
                              "file/mask pairs are not used", stacklevel=2)
                pairs = []
            for film, mask, row in pairs:
                if not film or not mask or not mask.lower().endswith(MASK_SUFFIXES):
                    continue
                path = os.path.normpath(self.folder / mask)
                if inside.regular_file(path):  # refused before it is looked at when it leads out
                    self._by_key[_key(film)] = Path(path)
                    self.rows[_key(film)] = row

    def __len__(self) -> int:
        return len(set(self._by_key.values()))

    def find(self, rel_path: str) -> Path | None:
        """The mask of the film at ``rel_path`` (relative to its dataset root), or None.

        Falls back to a file-name match when the folder structure differs and the name is
        unique in the index.
        """
        hit = self._by_key.get(_key(rel_path))
        if hit is None:
            same = self._by_stem.get(Path(rel_path).stem.lower(), [])
            hit = same[0] if len(same) == 1 else None
        return hit

    def row(self, rel_path: str) -> dict[str, str]:
        """The ``manifest.csv`` row of the film (empty when there is none)."""
        return self.rows.get(_key(rel_path), {})


def _key(rel_path: str) -> str:
    parts = Path(rel_path.replace("\\", "/")).with_suffix("").parts
    return "/".join("images" if p.lower() == "masks" else p.lower() for p in parts)


def find_dataset_mask(film_path: str | os.PathLike | None, *, masks: MaskIndex | None = None,
                      rel_path: str | None = None,
                      named: str | os.PathLike | None = None) -> Path | None:
    """A film's own mask file, by the one rule every lung measure and the lung model's data use:
    the ``--masks`` folder's (the user's explicit choice), else the file the dataset names for
    it (``named``: the manifest's ``mask_path``), else a Radiography DB ``masks/`` sibling.

    Args:
        film_path: the film's file (None for a film without one, e.g. an upload).
        masks: an index of a ``--masks`` folder (cxr3-lungs or Radiography DB layout), if any.
        rel_path: the film's path relative to its dataset root (default: its file name).
        named: the mask file the dataset names for the film ("" or None: none).

    Returns:
        The mask's path, or None when the film has none.
    """
    if masks is not None and film_path is not None:
        hit = masks.find(rel_path or Path(film_path).name)
        if hit is not None:
            return hit
    if named is not None and str(named) and Path(named).is_file():
        return Path(named)
    if film_path is None:
        return None
    film_path = Path(film_path)
    if film_path.parent.name.lower() == "images":
        for folder in film_path.parent.parent.iterdir():
            if folder.name.lower() == "masks":
                for candidate in (folder / film_path.name, folder / f"{film_path.stem}.png"):
                    if candidate.is_file():
                        return candidate
    return None
