"""Atomic file and folder writes: a reader never sees a half-written file or cache entry, a crash
leaves the old one (and a build folder that the next writer of the same entry removes)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def temporary_beside(target: Path, suffix: str) -> Path:
    """A new empty hidden file in ``target``'s folder, with the permissions a plain ``open``
    would give (mkstemp makes 0600). The name is cut: a temporary must not be "too long" where
    the target is not."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:48]}.", suffix=suffix or ".tmp",
                               dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed over ``target``.

    The temporary file lives in the same folder so that ``os.replace`` is an atomic rename.
    On an exception the temporary file is removed and ``target`` is left as it was; an OSError
    that names no file (a write into the open temporary: disk full) is given ``target``'s name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = temporary_beside(target, suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a write into an open file (disk
            exc.filename = os.fspath(target)  # full): name the file it was for, not no file
        raise


@contextmanager
def partial_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh hidden build folder ``.<name>.partial-<pid>-<random>`` beside the folder
    ``target``, to fill and then ``os.replace`` into place; it is removed on exit if still there.

    Build folders of the same ``target`` left by processes that died mid-write are deleted
    first; those of a writer still alive are kept (it may yet finish first).
    """
    from cxrlib.core.processes import pid_alive  # noqa: PLC0415

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for old in target.parent.glob(f".{target.name}.partial-*"):
        try:
            pid = int(old.name.rsplit(".partial-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(old, ignore_errors=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    partial.mkdir()
    try:
        yield partial
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (fsync before the rename)."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    write_bytes_atomic(target, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """``obj`` as the indented, sorted JSON text every JSON file of the project holds."""
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def write_json_atomic(target: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    write_text_atomic(target, json_text(obj))


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """Read JSON, returning ``default`` when the file is missing."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default
