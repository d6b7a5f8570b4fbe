"""A dataset's content fingerprint: what a run was trained on, independent of where it lies.

The fingerprint is sha256 over one line per film (readable or not) of the task's classes:
its relative path, size, a content digest, its label and the ids and source that decide the
split. Modification times and the folder's own path are not in it, so a copied or moved dataset
keeps its runs, and each task has its own fingerprint (adding a Viral film leaves the binary
task's fingerprint, and its runs, as they were).

The content digest of a file is BLAKE2b over its size and its first and last 64 KiB: enough to
see any replaced, re-encoded or truncated film, at a fraction of reading whole originals. Digests
are cached by (path, size, modification time) in this process and on disk under
``paths.cache_dir("digests")``, so an unchanged folder of 20 000 films is fingerprinted from stat
calls alone. (A file rewritten with the same size and the same nanosecond modification time
keeps its cached digest; nothing else does.)
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pandas as pd

from cxrlib.core import paths
from cxrlib.core.fsutil import write_text_atomic

DIGEST_BYTES = 1 << 16
FINGERPRINT_COLUMNS = ("rel_path", "file_bytes", "digest", "label", "patient_id", "group_id", "source")
_MEMORY: dict[tuple[str, int, int], str] = {}
_MEMORY_LIMIT = 1_000_000
_LOCK = threading.Lock()


def file_digest(path: str, size: int) -> str:
    """BLAKE2b (16 bytes, hex) of a file's size and its first and last :data:`DIGEST_BYTES` bytes.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as fh:
        h.update(fh.read(DIGEST_BYTES))
        if size > DIGEST_BYTES:
            fh.seek(max(DIGEST_BYTES, size - DIGEST_BYTES))
            h.update(fh.read(DIGEST_BYTES))
    return h.hexdigest()


class DigestCache:
    """Digests of one dataset folder's files, kept on disk between processes.

    Args:
        root: the dataset folder (its resolved path names the cache file).
    """

    def __init__(self, root: Path) -> None:
        name = hashlib.sha256(str(root).encode()).hexdigest()[:20]
        self.file = paths.cache_dir("digests") / f"{name}.json"
        self.entries: dict[str, list] = {}
        self.changed = False
        try:
            self.entries = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # none yet, or damaged: rebuilt

    def digest(self, path: str, size: int, mtime_ns: int) -> str:
        """The digest of ``path`` (computed only when its size or modification time changed).

        Raises:
            OSError: the file cannot be read.
        """
        key = (path, size, mtime_ns)
        hit = _MEMORY.get(key)
        if hit is None:
            entry = self.entries.get(path)
            if entry and entry[0] == size and entry[1] == mtime_ns:
                hit = entry[2]
            else:
                hit = file_digest(path, size)
                self.entries[path] = [size, mtime_ns, hit]
                self.changed = True
            with _LOCK:
                if len(_MEMORY) >= _MEMORY_LIMIT:
                    _MEMORY.clear()
                _MEMORY[key] = hit
        return hit

    def save(self) -> None:
        """Write the cache when a digest was computed (atomically; a read-only workspace is fine)."""
        if self.changed:
            try:
                write_text_atomic(self.file, json.dumps(self.entries, separators=(",", ":")))
            except OSError:
                pass
            self.changed = False


def content_fingerprint(manifest: pd.DataFrame, problems: pd.DataFrame | None = None) -> str:
    """16 hex digits of sha256 over :data:`FINGERPRINT_COLUMNS` of every row, sorted.

    Args:
        manifest: the readable films (a :class:`cxrlib.data.datasets.Dataset` manifest, or the
            rows of one task).
        problems: the unreadable films of the same classes (``rel_path``, ``file_bytes``,
            ``digest``, ``label``, ``reason``), which count too: fixing one changes the data.
    """
    lines = [
        "\t".join(str(v) for v in row)
        for row in manifest.reindex(columns=list(FINGERPRINT_COLUMNS)).fillna("").itertuples(index=False)]
    if problems is not None and len(problems):
        cols = ["rel_path", "file_bytes", "digest", "label", "reason"]
        lines += ["!\t" + "\t".join(str(v) for v in row)
                  # object first: a float column of NaN sizes (files never stat-ed) takes "" too
                  for row in problems.reindex(columns=cols).astype(object).fillna("").itertuples(index=False)]
    blob = "\n".join(sorted(lines)).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def stat_key(lines: list[str]) -> str:
    """A cheap key of a folder's state from ``rel_path, size, mtime`` lines (scan cache validity)."""
    return hashlib.sha256("".join(sorted(lines)).encode("utf-8")).hexdigest()[:16]


__all__ = ["DigestCache", "content_fingerprint", "file_digest", "stat_key"]
