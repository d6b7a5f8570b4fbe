"""User-named outputs (``--out``, ``--out-dir``, ``--manifest``): the one writer of them
(:class:`UserOutput`), what it refuses (:class:`OutputRefused`, exit 2) and how it reports the
system's refusals (:class:`WriteError`, exit 4). The atomic writes beneath it are
:mod:`cxrlib.core.fsutil`'s."""
from __future__ import annotations

import errno
import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from cxrlib.core.fsutil import temporary_beside


class OutputRefused(Exception):
    """A user-named output that must not be written (exists without ``--overwrite``, or is an
    input, a dataset file or one of the workspace's own stores): a usage error, exit code 2."""


class WriteError(Exception):
    """The system refused a write (read-only file system, name too long, disk full, a folder
    where a file should go): one line naming the user's path, never a temporary file; exit 4."""


def is_inside(real_path: str, real_folder: str) -> bool:
    """Whether resolved ``real_path`` is ``real_folder`` or lies below it (both already resolved)."""
    return real_path == real_folder or real_path.startswith(os.path.join(real_folder, ""))


def landing(target: str | os.PathLike) -> str:
    """Where a write to ``target`` lands: its folder's links followed, its own name not (an
    atomic write replaces a link named as the target, never writes through it)."""
    target = Path(target)
    return os.path.join(os.path.realpath(target.parent), target.name)


def workspace_stores() -> list[str]:
    """The workspace's own stores, resolved: ``models/`` (runs and caches), the real folder of
    each link to elsewhere in ``models/`` or in its runs folder (a run folder that is a link is a
    layout ``delete`` supports; a cache can be put on another disk so), and the reviews database
    with its journal files (each also where its link leads). No user-named output may land
    there."""
    from cxrlib.core import paths  # noqa: PLC0415

    ws = os.path.realpath(paths.workspace())
    linked = []
    for folder in (os.path.join(ws, "models"), paths.runs_dir()):
        try:
            with os.scandir(folder) as entries:
                linked += [os.path.realpath(e.path) for e in entries if e.is_symlink()]
        except OSError:  # not there yet (or unreadable: what is in it cannot be used either)
            pass
    reviews = [os.path.join(ws, "reviews.sqlite" + s) for s in ("", "-wal", "-shm", "-journal")]
    return [os.path.realpath(os.path.join(ws, "models")), *linked, *reviews,
            *{os.path.realpath(r) for r in reviews} - set(reviews)]


_REASONS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system", errno.ENAMETOOLONG: "file name too long",
            errno.EISDIR: "it is a folder, not a file", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied"}


def os_reason(exc: OSError) -> str:
    """Why the system refused, in a few words (no file name: temporaries stay unnamed)."""
    return _REASONS.get(exc.errno, exc.strerror or type(exc).__name__)


def os_error_of(exc: BaseException) -> OSError | None:
    """The system's refusal behind ``exc``: itself when an OSError, else one of :func:`os_reason`'s
    refusals that a library reported in its own words, which end with the C library's text
    (TensorFlow's writers: ``ResourceExhaustedError: ...; No space left on device``); None when
    ``exc`` is no refusal of the system."""
    if isinstance(exc, OSError):
        return exc
    text = str(exc)
    found = next((n for n in _REASONS if os.strerror(n) in text), None)
    return None if found is None else OSError(found, os.strerror(found))


def _about_the_write(exc: OSError, tmp: Path, target: Path) -> bool:
    """Whether ``exc``, raised while an output was filled and put in place, is about writing it:
    it names the temporary or the target, or it names no file and says the disk refused."""
    if exc.filename is not None:
        return os.fsdecode(exc.filename) in (str(tmp), str(target))
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO)


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file ``path`` names (its link, not followed); ``None`` when
    there is none."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _file_above(target: Path) -> Path | None:
    """The nearest of ``target``'s folders that exists, when it is not a folder (a file, a
    dangling link): nothing can be made below it."""
    for parent in target.parents:
        if os.path.lexists(parent):
            return None if os.path.isdir(parent) else parent
    return None


def write_error(target: str | os.PathLike, exc: OSError) -> WriteError:
    """The one-line :class:`WriteError` of ``exc`` raised while writing ``target``."""
    return WriteError(f"cannot write {os.fsdecode(target)}: {os_reason(exc)}")


class UserOutput:
    """The one way every user-named output (``--out``, ``--out-dir``, ``--manifest``) is written.

    * A path that exists is refused unless ``overwrite`` (``--overwrite``) is given.
    * Even with ``overwrite`` it never writes over an input of the same command (a file, or an
      existing file inside an input folder), anything inside ``outside`` (a dataset folder the
      output must stay out of), or the workspace's own stores (:func:`workspace_stores`).
    * A path that is a folder where a file goes cannot be replaced, nor one that is not a
      regular file (a device such as ``/dev/null``, a FIFO, a socket). Links are never
      followed: a link is replaced itself, only with ``overwrite``.
    * The write is atomic (a hidden temporary beside it, renamed into place); without
      ``overwrite`` the final step is a hard link, so a file made meanwhile is not replaced.
    * A refusal raises :class:`OutputRefused` (exit 2); an OS error, or a folder where the file
      goes, :class:`WriteError` (exit 4). Both name the user's path, never a temporary one.

    Args:
        overwrite: the user's ``--overwrite``.
        inputs: the command's input files and folders.
        outside: folders the output must not land in at all (e.g. ``scan``'s dataset).
        flag: the option that named the output, for messages.
    """

    def __init__(self, *, overwrite: bool = False, inputs=(), outside=(), flag: str = "--out"):
        self.overwrite = overwrite
        self.flag = flag
        self._inputs = [os.path.realpath(p) for p in inputs if os.fspath(p)]
        self._outside = [os.path.realpath(p) for p in outside if os.fspath(p)]

    def _refuse(self, target, why: str) -> OutputRefused:
        return OutputRefused(f"{self.flag} {os.fsdecode(target)} {why}")

    def check(self, target: str | os.PathLike, *, folder: bool = False) -> Path:
        """Refuse ``target`` now (before any work) if it may not be written; returns it.

        ``folder=True``: ``target`` is a folder the command writes files into (each of them is
        checked again by :meth:`write`); it may exist, but not as a file.
        """
        target = Path(target)
        if os.fspath(target) == "-":  # standard output where a command writes there (cli.common)
            raise self._refuse(target, f"is standard output, which {self.flag} does not write to; "
                                       "name a file")
        blocker = _file_above(target)
        if blocker is not None:  # found now, before any work, whatever the command
            raise self._refuse(target, f"cannot be made: {blocker} is a file")
        # a folder's own links are followed (its files land in the real folder); a file's
        # last part is not (the atomic rename replaces a link, never writes through it)
        lands = os.path.realpath(target) if folder else landing(target)
        for store in workspace_stores():
            if is_inside(lands, store):
                raise self._refuse(target, "is inside the workspace's own stores "
                                           f"({store}); choose a path outside them")
        for root in self._outside:
            if is_inside(lands, root):
                raise self._refuse(target, f"would write over or into the dataset in {root}; "
                                           "write it outside that folder")
        for item in self._inputs:
            if lands == item or (not folder and os.path.lexists(target) and is_inside(lands, item)):
                raise self._refuse(target, "would write over an input of this command "
                                           f"({item}); choose another path")
        if folder:
            if os.path.lexists(target) and not os.path.isdir(target):
                raise self._refuse(target, "is a file, not a folder")
            return target
        if os.path.lexists(target):
            if os.path.isdir(target) and not os.path.islink(target):
                raise WriteError(f"cannot write {os.fsdecode(target)}: it is a folder, not a file")
            if not (os.path.islink(target) or os.path.isfile(target)):  # never replace /dev/null
                raise self._refuse(target, "is not a regular file (a device, FIFO or socket); "
                                           "choose another path")
            if not self.overwrite:
                raise self._refuse(target, "already exists; choose another path, or "
                                           "--overwrite to replace it")
        return target

    @contextmanager
    def path(self, target: str | os.PathLike, suffix: str = "", *,
             placed: list | None = None) -> Iterator[Path]:
        """Check ``target``, then yield a temporary path to fill; renamed over ``target`` on
        success (see the class doc). ``suffix`` is the temporary's suffix (e.g. ``.png``).
        ``placed``: a new file put in place (not one replaced) is added to it as
        ``(target, (st_dev, st_ino))``, so that :meth:`write_all` can take it back."""
        target = self.check(target)
        try:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError as exc:
                raise self._refuse(target, f"cannot be made: {exc.filename} is a file") from None
            tmp_path = temporary_beside(target, suffix)
        except OSError as exc:
            raise write_error(target, exc) from None
        try:
            yield tmp_path
            self.check(target)  # again: something may have appeared while the command worked
            if self.overwrite:
                os.replace(tmp_path, target)
            else:
                ours = _identity(tmp_path)  # the file put in place is this one
                try:
                    os.link(tmp_path, target)  # fails if target appeared meanwhile: never replaced
                except FileExistsError:
                    raise self._refuse(target, "appeared while this command ran; nothing was "
                                               "written over it") from None
                except OSError:  # no hard links on this file system (e.g. FAT)
                    os.replace(tmp_path, target)
                tmp_path.unlink(missing_ok=True)
                if placed is not None:
                    placed.append((target, ours))
        except OSError as exc:
            tmp_path.unlink(missing_ok=True)
            if _about_the_write(exc, tmp_path, target):
                raise write_error(target, exc) from None
            raise  # e.g. a film the command read while filling it: not this output's error
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise

    def write(self, target: str | os.PathLike, data: bytes | str) -> Path:
        """Write ``data`` (text as UTF-8) to ``target`` by the rules of the class; returns it."""
        return self.write_all([(target, data)])[0]

    def write_all(self, items) -> list[Path]:
        """Write several ``(target, data)`` files as one output (e.g. a film's DICOM results):
        every target is checked before any is written, and every file filled before any is put
        in place, so a refusal or a full disk found then leaves none of them. (A target that
        appears while the files are put in place is refused, and the files of this output
        already put in place are taken back; with ``overwrite`` nothing appears too late, and the
        files replaced are gone.) Returns the targets."""
        items = [(self.check(target), data.encode("utf-8", "surrogateescape")
                  if isinstance(data, str) else data) for target, data in items]
        placed: list = []
        try:
            with ExitStack() as stack:
                for target, blob in items:
                    with open(stack.enter_context(self.path(target, placed=placed)), "wb") as fh:
                        fh.write(blob)
                        fh.flush()
                        os.fsync(fh.fileno())
        except BaseException:
            for target, identity in placed:  # ours only: not a file someone put there since
                if _identity(target) == identity:
                    Path(target).unlink(missing_ok=True)
            raise
        return [target for target, _ in items]

    def folder(self, target: str | os.PathLike) -> Path:
        """Check the folder ``target`` and make it; returns it."""
        target = self.check(target, folder=True)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise self._refuse(target, f"cannot be made: {exc.filename} is a file") from None
        except OSError as exc:
            raise write_error(target, exc) from None
        return target
