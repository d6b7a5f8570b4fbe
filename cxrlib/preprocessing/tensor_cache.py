"""Preprocessed films of a dataset, cached on disk as one memory-mapped uint8 array.

A cache entry is the folder ``paths.cache_dir("tensors")/<key>/`` holding ``images.npy``
(``(N, S, S)`` uint8, row ``i`` = manifest row ``i``) and ``index.json`` (key, config, the ordered
``rel_paths`` and the films that failed to decode). The key is a hash of the dataset
fingerprint, the preprocessing config hash and the ordered ``rel_paths``, so a changed file,
a changed setting or a different subset (e.g. ``Dataset.for_task``) is a different entry.

Writes are atomic at the folder level: the entry is built in a hidden ``.<key>.partial-<pid>-*``
folder beside it and renamed into place only when complete (``os.replace``), so a crash
mid-fill never leaves a folder that a later call reads as valid. An entry that fails any check
on opening (missing or unparsable index, wrong key, shape or paths) is rebuilt.
"""
from __future__ import annotations

import concurrent.futures as cf
import errno
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cxrlib.core import paths
from cxrlib.core.config import PreprocessConfig
from cxrlib.core.fsutil import partial_folder, read_json, write_json_atomic
from cxrlib.core.outputs import WriteError, os_reason
from cxrlib.preprocessing.pipeline import preprocess_film

CACHE_FORMAT = 2  # bump when preprocessing code changes its output, to retire old entries
# 2: a JPEG with corrupt scan data is a decode failure now (cxrlib.data.imageio.libjpeg), not a film
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.json"


@dataclass
class CachedTensors:
    """Preprocessed films of a dataset, in manifest order.

    Attributes:
        images: ``(N, S, S)`` uint8, memory-mapped read-only from the cache (a plain array
            when ``N == 0``).
        rel_paths: dataset-relative paths, row ``i`` of ``images`` is ``rel_paths[i]``.
        key: the cache key (folder name).
        hit: True when the entry already existed and nothing was decoded.
        problems: films that could not be decoded, ``{"rel_path", "reason"}`` each; their rows
            are all zeros.
        folder: the cache entry's folder (``None`` for an empty dataset).
    """

    images: np.ndarray
    rel_paths: list[str]
    key: str
    hit: bool
    problems: list[dict] = field(default_factory=list)
    folder: Path | None = None


def tensor_key(fingerprint: str, cfg: PreprocessConfig, rel_paths: list[str]) -> str:
    """Cache key: sha256 of the dataset fingerprint, ``cfg.hash()`` and the ordered paths."""
    blob = json.dumps([CACHE_FORMAT, fingerprint, cfg.hash(), list(rel_paths)],
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def _read_pixels(path: str) -> np.ndarray:
    from cxrlib.data import imageio  # noqa: PLC0415  (looked up per call: tests count read_film calls)

    return imageio.read_film(path).pixels


def preprocess_path(path: str, cfg: PreprocessConfig) -> tuple[np.ndarray | None, str | None]:
    """Decode and preprocess one film; a failure becomes ``(None, reason)``, never an exception."""
    try:
        return preprocess_film(_read_pixels(path), cfg), None
    except Exception as exc:  # noqa: BLE001  a bad film must not stop the whole dataset
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        return None, str(reason)


def _open_entry(folder: Path, key: str, rel_paths: list[str], size: int) -> CachedTensors | None:
    try:
        index = read_json(folder / INDEX_FILE)
        if not index or index.get("key") != key or index.get("rel_paths") != rel_paths:
            return None
        images = np.load(folder / IMAGES_FILE, mmap_mode="r")
    except (OSError, ValueError):  # half-written, truncated or foreign files: rebuild
        return None
    if images.dtype != np.uint8 or images.shape != (len(rel_paths), size, size):
        return None
    return CachedTensors(images, list(rel_paths), key, True, list(index.get("problems", [])), folder)



def _fill(out: np.ndarray, paths_: list[str], rel_paths: list[str], cfg: PreprocessConfig,
          workers: int, executor: str, progress: Callable[[int, int], None] | None) -> list[dict]:
    total = len(paths_)
    problems: list[dict] = []

    def store(i: int, pixels: np.ndarray | None, reason: str | None) -> None:
        if pixels is None:
            out[i] = 0
            problems.append({"rel_path": rel_paths[i], "reason": reason})
        else:
            out[i] = pixels

    pool_kind = cf.ProcessPoolExecutor if executor == "process" else cf.ThreadPoolExecutor
    with pool_kind(max_workers=workers) as pool:
        futures = {pool.submit(preprocess_path, p, cfg): i for i, p in enumerate(paths_)}
        try:
            for done, future in enumerate(cf.as_completed(futures), start=1):
                store(futures[future], *future.result())
                if progress is not None:
                    progress(done, total)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    problems.sort(key=lambda p: p["rel_path"])
    return problems


def _allocated_memmap(path: Path, shape: tuple[int, int, int], root: Path) -> np.ndarray:
    """A writable memory-mapped ``.npy`` whose every block is allocated on disk first.

    ``open_memmap`` makes a sparse file: on a full disk the first write into a page that has no
    block kills the process with SIGBUS, which no ``except`` can catch. ``posix_fallocate``
    reserves the blocks up front, so a full disk is an ordinary ``ENOSPC`` here instead.

    Raises:
        WriteError: not enough space (or another OS error) for the entry, in one line.
    """
    images = None
    try:
        images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        except OSError as exc:  # a file system that cannot reserve blocks: as before, sparse
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        finally:
            os.close(fd)
    except OSError as exc:
        del images
        need = int(np.prod(shape)) / 1e6
        raise WriteError(f"cannot build the tensor cache in {root} ({need:.1f} MB): "
                         f"{os_reason(exc)}; free space there "
                         "or delete old cache entries") from None
    return images


def load_tensors(dataset, cfg: PreprocessConfig, *, workers: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 executor: str = "thread") -> CachedTensors:
    """Preprocessed films of ``dataset`` from the cache, building the entry on a miss.

    Args:
        dataset: a :class:`cxrlib.data.datasets.Dataset` (uses ``manifest["path"]``,
            ``manifest["rel_path"]`` and ``fingerprint``).
        cfg: preprocessing configuration; ``cfg.size`` is the side of each cached image.
        workers: parallel decoders (default: the CPUs this process may use).
        progress: ``progress(done, total)`` after each decoded film (main thread only).
        executor: ``"thread"`` (default: OpenCV releases the GIL while decoding and filtering)
            or ``"process"``.

    Returns:
        :class:`CachedTensors`; on a hit nothing is decoded.
    """
    if executor not in ("thread", "process"):
        raise ValueError("executor must be 'thread' or 'process'")
    manifest = dataset.manifest
    rel_paths = [str(p) for p in manifest["rel_path"]]
    file_paths = [str(p) for p in manifest["path"]]
    key = tensor_key(dataset.fingerprint, cfg, rel_paths)
    size = cfg.size
    if not rel_paths:
        return CachedTensors(np.zeros((0, size, size), np.uint8), [], key, False, [], None)

    root = paths.cache_dir("tensors")
    folder = root / key
    entry = _open_entry(folder, key, rel_paths, size)
    if entry is not None:
        if progress is not None:
            progress(len(rel_paths), len(rel_paths))
        return entry

    with partial_folder(folder) as partial:
        started = time.perf_counter()
        images = _allocated_memmap(partial / IMAGES_FILE, (len(rel_paths), size, size), root)
        workers = workers or len(os.sched_getaffinity(0))
        problems = _fill(images, file_paths, rel_paths, cfg, workers, executor, progress)
        images.flush()
        del images
        write_json_atomic(partial / INDEX_FILE, {
            "format": CACHE_FORMAT, "key": key, "fingerprint": dataset.fingerprint,
            "config": cfg.to_dict(), "count": len(rel_paths), "size": size,
            "rel_paths": rel_paths, "problems": problems,
            "seconds": round(time.perf_counter() - started, 3),
        })
        if folder.exists():  # an invalid entry (it failed _open_entry above)
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(partial, folder)
        except OSError:  # another process finished the same entry first: use theirs
            pass
    entry = _open_entry(folder, key, rel_paths, size)
    if entry is None:
        raise RuntimeError(f"tensor cache entry {folder} is unreadable right after writing it")
    entry.hit = False
    return entry


def cached_problems(dataset, cfg: PreprocessConfig) -> list[dict] | None:
    """The films of ``dataset`` that failed to decode when its cache entry for ``cfg`` was built
    (``{"rel_path", "reason"}`` each; training leaves them out), or ``None`` when there is no
    entry yet. Reads the entry's index only: nothing is decoded."""
    rel_paths = [str(p) for p in dataset.manifest["rel_path"]]
    key = tensor_key(dataset.fingerprint, cfg, rel_paths)
    try:
        index = read_json(paths.cache_dir("tensors") / key / INDEX_FILE)
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("key") != key:
        return None
    return list(index.get("problems", []))


def clear_cache() -> int:
    """Delete every tensor cache entry; returns how many folders were removed."""
    root = paths.cache_dir("tensors")
    removed = 0
    if root.exists():
        for child in root.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
    return removed
