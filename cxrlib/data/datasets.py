"""Open a chest X-ray dataset folder as it is, and describe it as a manifest table.

Accepted layouts (:data:`LAYOUTS`), recognised from the folder names, not from configuration:

* ``class_folders``: one folder per class, names matched through
  :func:`cxrlib.core.classes.canonical_class` (``COVID``, ``covid``, ``COVID-19``, ``NORMAL``,
  ``Viral Pneumonia``, ``virus``...), optionally inside ``train/``, ``test/``, ``val/`` folders
  (the split is kept in ``folder_split``). Images may sit in sub-folders of a class folder.
* ``radiography_db``: the COVID-19 Radiography Database, ``<class>/images/`` and ``<class>/masks/``;
  the mask with the image's file name is remembered in ``mask_path``.
* ``kermany``: ``chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}``; the root may be ``chest_xray``,
  its parent, or one split folder. A pneumonia film is viral or bacterial by its file name
  (``person1661_virus_2872.jpeg``, ``person1_bacteria_1.jpeg``); bacterial films are excluded or
  kept as their own class (``bacterial="class"``). The split folder is kept in ``kermany_split``.
* ``manifest``: no class folders, but a ``manifest.csv`` with ``file`` and ``label`` columns.

Wrapper folders are looked through: a root holding a single sub-folder (as unzipped archives do)
is opened one level down, up to three levels.

A ``manifest.csv`` beside the images (e.g. ``../shared/datasets/cxr3``) supplies ``patient_id``,
``group_id``, ``source`` (or ``source_repo``) and ``mask_path`` (a lung mask file, relative to
it: :func:`cxrlib.data.rows.manifest_masks`) for the files it lists (column ``file``, a path
relative to the manifest); missing columns and empty cells fall back to the rules below. Without
one, patient ids come from :func:`patient_id_from_name`, else the file stem; ``group_id`` is the
patient id; ``source`` is the layout's name (``kermany``, ``radiography_db``, ``class_folders``):
never the folder's own name, so a copied or moved dataset is the same data.

Sizes come from file headers (:func:`cxrlib.data.imageio.read_header`), never from decoding, so large
folders are summarised in seconds. Files whose header cannot be read, that exceed ``max_pixels`` or
whose short side is under ``min_side`` ("too small to classify") are listed in ``Dataset.problems``
with the reason; they never stop a scan.

Where a scan may read is decided by :mod:`cxrlib.data.roots`: the folder must be allowed by
``CXR_DATA_ROOTS``, and every file it yields must resolve inside it (links and manifest paths that
lead out are refused and listed as problems; link loops and dangling links are listed as unreadable).
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from cxrlib.core.classes import BACTERIAL, CLASSES, task_classes
from cxrlib.data.imageio import (DEFAULT_MAX_PIXELS, ImageMeta, ImageReadError, check_min_side,
                                 check_size, min_film_side, read_header)
from cxrlib.data.fingerprint import DigestCache, content_fingerprint, stat_key
from cxrlib.data.rows import (MANIFEST_COLUMNS, _rel, check_copies, check_labels, extra_manifest_columns,
                              extra_values, manifest_masks, manifest_row)
from cxrlib.data.layouts import (LAYOUTS, DatasetError, find_layout, has_entries,
                      manifest_candidates, read_manifest_csv, subdirs)
from cxrlib.data.roots import DatasetFolder, check_allowed, printable, utf8_name

PROBLEM_COLUMNS = ["path", "reason", "rel_path", "label", "file_bytes", "digest"]
ProgressFn = Callable[[int, int], None]


@dataclass
class Dataset:
    """A scanned dataset folder.

    Attributes:
        root: the folder as given (absolute).
        layout: one of :data:`LAYOUTS`.
        manifest: one row per readable image of a known class; columns :data:`MANIFEST_COLUMNS`
            (plus ``kermany_split`` for the Kermany layout, and every other column of a
            ``manifest.csv``: :func:`extra_manifest_columns`), sorted by ``rel_path``.
        problems: files that could not be read: ``path``, ``reason``, ``rel_path``, ``label``.
        fingerprint: the content fingerprint of the rows (:mod:`cxrlib.data.fingerprint`):
            relative paths, sizes, content digests, labels, ids and sources of every film
            considered, readable or not. It changes when a film is added, removed or replaced
            or an id changes, not when the folder is copied or moved; :meth:`for_task` gives
            the fingerprint of one task's rows.
        warnings: things a user should know that did not stop the scan (empty class folder,
            unknown folders skipped, bacterial films excluded, manifest disagreements).
        manifest_file: the ``manifest.csv`` used, if any.
        task: set by :meth:`for_task`.
    """

    root: Path
    layout: str
    manifest: pd.DataFrame
    problems: pd.DataFrame
    fingerprint: str
    warnings: list[str] = field(default_factory=list)
    manifest_file: Path | None = None
    task: str | None = None

    def __len__(self) -> int:
        return len(self.manifest)

    def classes(self) -> list[str]:
        """Classes present, in model order (COVID-19, Normal, Viral Pneumonia), then others."""
        present = set(self.manifest["label"])
        order = [*CLASSES, BACTERIAL]
        return [c for c in order if c in present] + sorted(present - set(order))

    def for_task(self, task: str) -> "Dataset":
        """The rows of ``task``'s classes only, with the fingerprint of those rows, ``task`` set.

        Raises:
            ValueError: for an unknown task.
        """
        keep = task_classes(task)
        manifest = self.manifest[self.manifest["label"].isin(keep)].reset_index(drop=True)
        problems = self.problems[self.problems["label"].isin(keep)].reset_index(drop=True)
        return dataclasses.replace(self, task=task, warnings=list(self.warnings), manifest=manifest,
                                   problems=problems,
                                   fingerprint=content_fingerprint(manifest, problems))


# --------------------------------------------------------------------------------- scanning
_HEADER_CACHE: dict[tuple[str, int, int], ImageMeta | str] = {}
_SCAN_CACHE: dict[tuple, tuple[str, Dataset]] = {}
_HEADER_CACHE_LIMIT = 500_000


def _header(path: str, size: int, mtime_ns: int) -> ImageMeta | str:
    key = (path, size, mtime_ns)
    hit = _HEADER_CACHE.get(key)
    if hit is None:
        try:
            hit = read_header(path)
        except ImageReadError as exc:
            hit = exc.reason
        if len(_HEADER_CACHE) >= _HEADER_CACHE_LIMIT:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[key] = hit
    return hit


def scan_dataset(root: str | os.PathLike, *, bacterial: str = "exclude",
                 progress: ProgressFn | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 workers: int = 1, min_side: int | None = None) -> Dataset:
    """Scan a dataset folder into a :class:`Dataset` (see the module docstring for layouts).

    Scanning the same unchanged folder again in one process returns the cached result (the
    folder is still listed and stat-ed to prove it unchanged); headers of unchanged files are
    never read twice.

    Args:
        root: the dataset folder.
        bacterial: Kermany bacterial pneumonia films: ``"exclude"`` or ``"class"`` (kept with the
            label ``"Bacterial Pneumonia"``; no task uses it, the dataset page shows it).
        progress: called as ``progress(done, total)`` while headers are read (about 100 times,
            and always once with ``done == total``).
        max_pixels: films with more pixels are listed as problems ("image too large").
        min_side: films whose short side is under this many pixels are listed as problems
            ("too small to classify"), so nothing trains on them (default
            :func:`cxrlib.data.imageio.min_film_side`: 32, or ``$CXR_MIN_FILM_SIDE``).
        workers: threads reading headers. 1 (default) reads them in this thread: with files in
            the page cache, parsing holds the GIL and 4 threads measured 20-40% slower on 20 000
            files; more threads can help on a slow network disk.

    Returns:
        The :class:`Dataset`.

    Raises:
        FolderNotAllowed: (a DatasetError) ``CXR_DATA_ROOTS`` does not allow this folder.
        DatasetError: missing, unreadable or empty folder, unrecognised layout, or no images.
        ValueError: ``bacterial`` is not ``"exclude"`` or ``"class"``.
    """
    if bacterial not in ("exclude", "class"):
        raise ValueError("bacterial must be 'exclude' or 'class'")
    root = check_allowed(root)  # first: a refused folder is not even looked at
    if not utf8_name(root):  # every film's path holds it: no table, CSV or run file could
        raise DatasetError(f"dataset folder {printable(root)}: its path is not valid UTF-8; "
                           "rename it to read it")
    min_side = min_film_side() if min_side is None else int(min_side)
    warnings: list[str] = []
    problems: list[dict] = []
    layout, base, candidates, manifest_file, table = _locate(root, bacterial, warnings, problems)
    listed = manifest_file.parent if manifest_file is not None else base  # its `file` paths' folder
    if table and layout != "manifest" and not any(_rel(c.path, listed) in table for c in candidates):
        warnings.append(f"manifest.csv lists none of the {len(candidates)} films found (its 'file' "
                        f"paths are relative to {listed.name}/); its columns are not used")

    inside = DatasetFolder(root)
    files, lines = [], []
    for c in candidates:
        st, reason = inside.film(c.path)
        if st is None:  # a path that is not UTF-8 is listed in its printable form
            problems.append({"path": printable(c.path), "reason": reason, "label": c.label})
            continue
        rel = _rel(c.path, root)
        files.append((c, rel, st.st_size, st.st_mtime_ns))
        lines.append(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\t{c.mask}\n")  # a mask that appears
    if manifest_file is not None:
        st = manifest_file.stat()
        lines.append(f"{_rel(str(manifest_file), root)}\t{st.st_size}\t{st.st_mtime_ns}\n")
    key = stat_key(lines)
    cache_key = (str(root), bacterial, max_pixels, min_side)
    cached = _SCAN_CACHE.get(cache_key)
    if cached is not None and cached[0] == key:
        if progress:
            progress(len(files), len(files))
        return _copy(cached[1])

    digests = DigestCache(root)
    extra = extra_manifest_columns(table)
    rows = []
    for (c, rel, size, mtime), meta in zip(files, _read_headers(files, progress, workers)):
        if isinstance(meta, ImageMeta):
            try:
                check_size(meta, max_pixels, c.path)
                check_min_side(meta, min_side, c.path)
            except ImageReadError as exc:
                meta = exc.reason
        try:
            digest = digests.digest(c.path, size, mtime)
        except OSError as exc:
            digest, meta = "", f"cannot read file ({exc.strerror})"
        if isinstance(meta, str):
            problems.append({"path": c.path, "reason": meta, "label": c.label,
                             "file_bytes": size, "digest": digest})
        else:
            rows.append({**manifest_row(c, rel, meta, listed, table, layout), "file_bytes": size,
                         "digest": digest, **extra_values(c, listed, table, extra)})
    digests.save()
    if not rows:
        raise DatasetError(f"no readable images in {root}: all {len(problems)} files failed, e.g. "
                           f"{problems[0]['path']}: {problems[0]['reason']}")
    columns = MANIFEST_COLUMNS + (["kermany_split"] if layout == "kermany" else []) + list(extra.values())
    manifest = pd.DataFrame(rows, columns=columns).sort_values("rel_path").reset_index(drop=True)
    if table and layout != "manifest" and "label" in next(iter(table.values())):
        check_labels(manifest, table, listed, warnings)
    check_copies(manifest, warnings)
    problem_table = pd.DataFrame(problems, columns=["path", "reason", "label", "file_bytes", "digest"])
    problem_table["rel_path"] = [_rel(p, root) for p in problem_table["path"]]
    problem_table = problem_table[PROBLEM_COLUMNS].sort_values("rel_path").reset_index(drop=True)
    fingerprint = content_fingerprint(manifest, problem_table)
    dataset = Dataset(root, layout, manifest, problem_table, fingerprint, warnings, manifest_file)
    _SCAN_CACHE[cache_key] = (key, dataset)
    return _copy(dataset)


def _locate(root: Path, bacterial: str, warnings: list[str], problems: list[dict]):
    """Layout, its base folder, the candidate image files, and the manifest.csv (path, table)."""
    if not root.exists():
        raise DatasetError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root}")
    if not subdirs(root) and not has_entries(root):
        raise DatasetError(f"dataset folder {root} is empty (expected "
                           f"{'; or '.join(LAYOUTS.values())})")
    found = find_layout(root, warnings)
    manifest_file, table = None, None
    inside = DatasetFolder(root)
    between = []  # the layout's folder and every wrapper folder above it, up to the root
    if found:
        folder = found[1]
        while folder != root and root in folder.parents:
            between.append(folder)
            folder = folder.parent
    for folder in dict.fromkeys([*between, root]):
        if (folder / "manifest.csv").is_file():
            if inside.stat(str(folder / "manifest.csv"))[0] is None:
                warnings.append(f"{folder / 'manifest.csv'} is a link to outside the dataset "
                                "folder; ignored")
                continue
            manifest_file = folder / "manifest.csv"
            table = read_manifest_csv(manifest_file, warnings)
            break
    if found:
        layout, base, candidates = found
    elif table and "label" in next(iter(table.values())):
        layout, base = "manifest", manifest_file.parent
        candidates = manifest_candidates(base, table, warnings, problems)
    else:
        why = [w for w in warnings if w.startswith(manifest_file.name)] if manifest_file else []
        if table and "label" not in next(iter(table.values())):
            why.append(f"{manifest_file.name} has no 'label' column")
        raise DatasetError(f"{root}: no class folders found" + "".join(f", and {w}" for w in why)
                           + ". Accepted layouts: " + "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items()))
    bacterial_n = sum(c.label == BACTERIAL for c in candidates)
    if bacterial == "exclude" and bacterial_n:
        candidates = [c for c in candidates if c.label != BACTERIAL]
        warnings.append(f"{bacterial_n} bacterial pneumonia films excluded (bacterial='exclude')")
    if not candidates:
        raise DatasetError(f"no images found in {root} ({LAYOUTS[layout]}); "
                           + "; ".join(warnings))
    if manifest_file is not None:
        manifest_masks(candidates, manifest_file.parent, table, inside, warnings)
    return layout, base, candidates, manifest_file, table


def _copy(dataset: Dataset) -> Dataset:
    return dataclasses.replace(dataset, manifest=dataset.manifest.copy(),
                               problems=dataset.problems.copy(), warnings=list(dataset.warnings))


def _read_headers(stats: list, progress: ProgressFn | None, workers: int) -> list[ImageMeta | str]:
    total = len(stats)
    every = max(1, -(-total // 100))  # about 100 calls, whatever the total
    if progress:
        progress(0, total)
    jobs = [(c.path, size, mtime) for c, _, size, mtime in stats]
    out: list[ImageMeta | str] = []
    if workers > 1 and total > 64:
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(lambda job: _header(*job), jobs, chunksize=32)
            for i, meta in enumerate(results, 1):
                out.append(meta)
                if progress and (i % every == 0 or i == total):
                    progress(i, total)
    else:
        for i, job in enumerate(jobs, 1):
            out.append(_header(*job))
            if progress and (i % every == 0 or i == total):
                progress(i, total)
    if progress and total == 0:
        progress(0, 0)
    return out
