"""Recognise the folder layouts of public chest X-ray sets and list their image files.

Used by :func:`cxrlib.data.datasets.scan_dataset` (see its module docstring for the layouts); this
module only walks folders and reads ``manifest.csv``: it decodes no image (a file without an
image ending is opened for its first 132 bytes only, to find a DICOM by its preamble:
:func:`cxrlib.data.imageio.is_film_file`). Folders reached through a
symbolic link that leads outside the dataset folder are skipped with a warning (a link to a folder
inside a class folder is not followed, with a warning too), and an entry that
cannot be inspected (a link loop) never stops the walk (see :mod:`cxrlib.data.roots`).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from cxrlib.core.classes import BACTERIAL, NORMAL, VIRAL, canonical_class
from cxrlib.data.imageio import is_film_file
from cxrlib.data.roots import DatasetError, DatasetFolder, printable

LAYOUTS: dict[str, str] = {
    "class_folders": "one folder per class (COVID-19 / COVID / covid, Normal / NORMAL, "
                     "Viral Pneumonia / virus / viral), optionally inside train/ test/ val/ folders",
    "radiography_db": "COVID-19 Radiography Database: <class>/images/ and <class>/masks/",
    "kermany": "Kermany chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}",
    "manifest": "a manifest.csv with 'file' and 'label' columns (paths relative to it)",
}
SPLIT_FOLDERS = {"train": "train", "training": "train", "test": "test", "testing": "test",
                 "val": "val", "valid": "val", "validation": "val"}
_SKIP = {"__macosx", "masks"}


@dataclass
class Candidate:
    """An image file found by a layout, before its header is read."""

    path: str  # plain strings: pathlib parsing was most of a 20 000-file scan's time
    label: str
    split: str = ""
    mask: str = ""


# --------------------------------------------------------------------------------- folders
def subdirs(folder: Path, warnings: list[str] | None = None, inside: DatasetFolder | None = None,
            *, strict: bool | None = None) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted.

    Args:
        folder: the folder to list.
        warnings: where skipped folders are reported.
        inside: the dataset's :class:`DatasetFolder`; a sub-folder that is a link leading outside
            it is skipped with a warning.
        strict: raise :class:`DatasetError` when ``folder`` cannot be listed (the dataset root);
            default: when ``warnings`` is None. Otherwise that is a warning and ``[]``.
    """
    strict = warnings is None if strict is None else strict
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not e.name.startswith(".") and _is_dir(e)]
    except PermissionError:
        if strict:
            raise DatasetError(f"cannot read dataset folder {folder}: permission denied") from None
        if warnings is not None:
            warnings.append(f"cannot read folder {folder}: permission denied; skipped")
        return []
    found = []
    for e in entries:
        if e.name.lower() == "__macosx":
            continue
        refusal = inside.folder_refusal(e.path) if inside is not None and e.is_symlink() else None
        if refusal:
            if warnings is not None:
                warnings.append(f"folder '{e.name}' in {folder} is {refusal}; skipped")
            continue
        found.append(Path(e.path))
    return sorted(found, key=lambda p: p.name)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link loop (ELOOP) and the like: not a folder; a scan lists such files
        return False


def _image_files(folder: Path, warnings: list[str], skip: set[str] = frozenset()) -> list[str]:
    """Image files under ``folder`` (recursive; hidden files and ``skip`` folders left out)."""
    def onerror(exc: OSError) -> None:
        warnings.append(f"cannot read folder {exc.filename}: {exc.strerror or exc}; skipped")

    found = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d.lower() not in skip)
        for d in [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            # os.walk lists it but does not go in (a loop, or a folder elsewhere): say so
            warnings.append(f"folder {printable(os.path.join(dirpath, d))} is a link to a folder; "
                            "not followed")
            dirnames.remove(d)
        found += [path for path in (os.path.join(dirpath, f) for f in filenames if not f.startswith("."))
                  if is_film_file(path)]
    return sorted(found)


def _child(folder: Path, name: str, inside: DatasetFolder | None = None) -> Path | None:
    for d in subdirs(folder, [], inside):
        if d.name.lower() == name:
            return d
    return None


def _class_candidates(class_dirs: list[tuple[Path, str, str]], warnings: list[str],
                      inside: DatasetFolder) -> tuple[str, list[Candidate]]:
    radiography = any(_child(d, "images", inside) for d, _, _ in class_dirs)
    out: list[Candidate] = []
    for folder, label, split in class_dirs:
        images = _child(folder, "images", inside) if radiography else None
        masks = _child(folder, "masks", inside) if radiography else None
        files = _image_files(images or folder, warnings, skip=_SKIP if radiography else set())
        if not files:
            warnings.append(f"class folder '{folder.name}' ({label}) holds no images")
        for f in files:
            mask = os.path.join(masks, os.path.basename(f)) if masks else ""
            out.append(Candidate(f, label, split, mask if mask and inside.regular_file(mask) else ""))
    return ("radiography_db" if radiography else "class_folders"), out


def _kermany_candidates(splits: dict[str, Path], warnings: list[str],
                        inside: DatasetFolder) -> list[Candidate]:
    out: list[Candidate] = []
    unknown = 0
    for split, folder in sorted(splits.items()):
        for d in subdirs(folder, warnings, inside):
            kind = d.name.lower()
            other = canonical_class(d.name) if kind not in ("normal", "pneumonia") else None
            if kind not in ("normal", "pneumonia") and other is None:
                warnings.append(f"folder '{d.name}' in {folder.name} is not a known class; skipped")
                continue
            for f in _image_files(d, warnings):
                name = os.path.basename(f).lower()
                if other:  # e.g. a COVID folder added beside Kermany's NORMAL and PNEUMONIA
                    label = other
                elif kind == "normal":
                    label = NORMAL
                elif "virus" in name:
                    label = VIRAL
                elif "bacteria" in name:
                    label = BACTERIAL
                else:
                    unknown += 1
                    continue
                out.append(Candidate(f, label, split))
    if unknown:
        warnings.append(f"{unknown} PNEUMONIA films name neither 'virus' nor 'bacteria'; skipped")
    return out


def find_layout(root: Path, warnings: list[str]) -> tuple[str, Path, list[Candidate]] | None:
    """Recognise a folder layout under ``root``.

    Returns:
        ``(layout, base folder, candidates)``, or ``None`` when no folder layout matches (the
        caller then tries a ``manifest.csv`` with labels).

    Raises:
        DatasetError: ``root`` cannot be listed.
    """
    folder = root
    inside = DatasetFolder(root)
    for _ in range(4):
        dirs = subdirs(folder, warnings, inside, strict=folder == root)
        names = {d.name.lower(): d for d in dirs}
        splits = {SPLIT_FOLDERS[n]: d for n, d in names.items() if n in SPLIT_FOLDERS}
        if "pneumonia" in names:
            split = SPLIT_FOLDERS.get(folder.name.lower(), "")
            return "kermany", folder, _kermany_candidates({split: folder}, warnings, inside)
        if splits and any(_child(d, "pneumonia", inside) for d in splits.values()):
            return "kermany", folder, _kermany_candidates(splits, warnings, inside)
        class_dirs = [(d, canonical_class(d.name), "") for d in dirs]
        if not any(label for _, label, _ in class_dirs) and splits:
            class_dirs = [(c, canonical_class(c.name), split) for split, d in sorted(splits.items())
                          for c in subdirs(d, warnings, inside)]
            others = [d.name for d in dirs if d.name.lower() not in {*SPLIT_FOLDERS, *_SKIP}]
        else:
            others = []
        known = [(d, label, split) for d, label, split in class_dirs if label]
        if known:
            if others:  # only when the split folders' class folders are what is read
                warnings.append(f"folder{'s' * (len(others) > 1)} {', '.join(others)} beside the "
                                f"split folders {', '.join(sorted(d.name for d in splits.values()))} "
                                "not read (only class folders inside split folders are)")
            for d, label, _ in class_dirs:
                if not label and d.name.lower() not in _SKIP:
                    warnings.append(f"folder '{d.name}' is not a known class; skipped")
            layout, candidates = _class_candidates(known, warnings, inside)
            return layout, folder, candidates
        if len(dirs) != 1 or _image_files_here(folder):
            return None
        folder = dirs[0]
    return None


def _image_files_here(folder: Path) -> bool:
    return any(is_film_file(os.path.join(folder, f)) for f in os.listdir(folder))


# --------------------------------------------------------------------------------- manifest.csv
def read_manifest_csv(path: Path, warnings: list[str]) -> dict[str, dict[str, str]] | None:
    """``{file: {column: value}}`` of a manifest.csv, or ``None`` when it is unusable."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        warnings.append(f"{path.name} could not be read ({type(exc).__name__}); ignored")
        return None
    if "file" not in columns:
        warnings.append(manifest_unusable(path, columns))
        return None
    table: dict[str, dict[str, str]] = {}
    labels: dict[str, list[str]] = {}
    for row in rows:
        key = listed_key(str(path.parent), row.pop("file") or "")
        table.setdefault(key, {k: v or "" for k, v in row.items() if k is not None})
        labels.setdefault(key, []).append(row.get("label") or "")
    for key, seen in labels.items():
        if len(set(seen)) > 1:  # a manifest-only layout leaves the film out (manifest_candidates)
            table[key][CONFLICT] = ", ".join(dict.fromkeys(seen))
            warnings.append(f"{path.name} lists {key} {len(seen)} times with different labels "
                            f"({table[key][CONFLICT]}): which one is right cannot be told")
    return table


def listed_key(folder: str, file: str) -> str:
    """The one spelling of a manifest's ``file``: ``\\`` as ``/``, normalised lexically (``./``,
    ``//`` and ``x/..`` folded, as the film's path is in :func:`manifest_candidates`), relative
    to ``folder``; a path that leads outside stays absolute (refused when the film is looked at)."""
    if not file:
        return file
    path = os.path.normpath(os.path.join(folder, file.replace("\\", "/")))
    prefix = os.path.join(folder, "")
    return path[len(prefix):] if path.startswith(prefix) else path


CONFLICT = "\0labels"
"""Key (not a column name a CSV can hold) of a manifest row whose file is listed with two labels."""


def manifest_unusable(path: Path, columns: list[str]) -> str:
    """Why a manifest.csv without a ``file`` column is ignored, naming a wrong separator."""
    header = ",".join(columns)
    for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
        if sep in header and "file" in header.lower().split(sep):  # File;Label too
            return (f"{path.name} has no 'file' column: its header {header!r} is separated by "
                    f"{name}; separate columns by commas; ignored")
    return f"{path.name} has no 'file' column; ignored"


def manifest_candidates(folder: Path, table: dict[str, dict[str, str]], warnings: list[str],
                        problems: list[dict]) -> list[Candidate]:
    """The files a labelled ``manifest.csv`` lists.

    Missing files, and paths that lead outside ``folder`` (absolute, ``../``, links), go to
    ``problems`` with the reason; a path outside is refused before it is looked at.
    """
    out, unknown = [], 0
    inside = DatasetFolder(folder)
    for rel, info in table.items():
        if CONFLICT in info:
            problems.append({"path": os.path.normpath(os.path.join(folder, rel)), "label": None,
                             "reason": f"listed in manifest.csv with different labels ({info[CONFLICT]}); "
                                       "left out"})
            continue
        label = canonical_class(info["label"])
        if label is None:
            unknown += 1
            continue
        path = os.path.normpath(os.path.join(folder, rel))
        st, reason = inside.film(path)
        if st is None:
            missing = reason in (None, "file not found")
            problems.append({"path": printable(path), "label": label,
                             "reason": "listed in manifest.csv but not found" if missing else reason})
            continue
        out.append(Candidate(path, label))
    if unknown:
        warnings.append(f"{unknown} manifest.csv rows have a label that is not a known class; skipped")
    return out


def has_entries(folder: Path) -> bool:
    """Whether ``folder`` holds anything visible (raises DatasetError when it cannot be listed)."""
    try:
        return any(not f.startswith(".") for f in os.listdir(folder))
    except PermissionError:
        raise DatasetError(f"cannot read dataset folder {folder}: permission denied") from None
