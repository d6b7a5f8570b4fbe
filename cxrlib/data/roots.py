"""Where datasets may be read from: the allowed folders, and the paths a dataset may yield.

Two rules. Both are applied by :func:`cxrlib.data.datasets.scan_dataset`. That is the one gate every
dataset passes through: the CLI's commands, the app's sidebar, training, evaluation and the audit's
external folder all open their data with it, so no entry point can forget a rule.

* **Allowed roots.** ``CXR_DATA_ROOTS`` is a list of folders separated by ``os.pathsep``. When it
  is set, only folders inside one of them can be opened (:func:`check_allowed`). Unset or blank,
  any folder can. The check runs on the resolved path before anything else is looked at. A refused
  folder therefore reveals nothing, not even whether it exists. This matters on a server for
  several users, where the sidebar must not become a browser of the server's own filesystem.
  The app also calls the check before its own friendly pre-checks, for the same reason.
* **Containment.** Every file a dataset yields must resolve inside the dataset folder
  (:class:`DatasetFolder`). Other paths are refused with the reason: ``manifest.csv`` rows that are
  absolute or climb out with ``../``, and symbolic links (to files or to folders) whose target lies
  outside. Links in a loop, and links whose target is missing, are listed as unreadable. None of
  these stops a scan.
"""
from __future__ import annotations

import errno
import os
import stat as stat_
from pathlib import Path

from cxrlib.core.outputs import is_inside  # noqa: F401  (one rule; imported from here too)

ROOTS_ENV = "CXR_DATA_ROOTS"
REFUSED_OUTSIDE = "refused: the path leads outside the dataset folder"
REFUSED_LINK = "refused: a symbolic link to a file outside the dataset folder"
LINK_LOOP = "symbolic link loop (too many levels of links)"
DANGLING_LINK = "dangling symbolic link (its target does not exist)"
NOT_UTF8 = "file name is not valid UTF-8; rename it to read it"
_KINDS = ((stat_.S_ISDIR, "a folder"), (stat_.S_ISFIFO, "a named pipe (FIFO)"),
          (stat_.S_ISSOCK, "a socket"), (stat_.S_ISCHR, "a character device"),
          (stat_.S_ISBLK, "a block device"))


def printable(path: str | os.PathLike) -> str:
    """``path`` as text that any table, CSV or terminal takes: bytes that are not UTF-8 (held
    as surrogates by Python) shown as ``\\xff``, control characters (C0, DEL, C1) as Python
    writes them (``\\n``, ``\\x1b``), so a name can neither split a line nor send a terminal
    escape; any other name is returned as it is. Every file name the CLI prints goes through it."""
    text = os.fspath(path)
    if not utf8_name(text):
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return text.translate(_CONTROL)


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))} | {
    0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def utf8_name(path: str | os.PathLike) -> bool:
    """Whether ``path`` is valid UTF-8 (a name that is not cannot be held by a table or CSV)."""
    try:
        os.fspath(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def not_regular(st: os.stat_result) -> str | None:
    """Why a file of mode ``st`` is not read (only regular files are opened: a FIFO would block
    the reader forever), or None for a regular file."""
    if stat_.S_ISREG(st.st_mode):
        return None
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
    return f"{kind}, not a regular file; not opened"


class DatasetError(Exception):
    """A folder that cannot be opened as a dataset (the message says why and what to do)."""


class FolderNotAllowed(DatasetError):
    """A folder outside every folder listed in ``CXR_DATA_ROOTS``."""


class UnusablePath(DatasetError):
    """A path the system cannot take at all: a NUL character, a name or a path too long."""


NAME_MAX, PATH_MAX = 255, 4096
"""Linux's limits on one name and on a whole path, in bytes."""


def _unusable(text: str) -> str | None:
    """Why ``text`` cannot be a path on this system, told from the text alone (nothing is
    touched, so nothing is revealed about what exists); ``None`` when it can."""
    if "\0" in text:
        return "it holds a NUL character"
    raw = os.fsencode(text)
    if len(raw) >= PATH_MAX or any(len(part) > NAME_MAX for part in raw.split(b"/")):
        return "file name too long"
    return None


def allowed_roots() -> list[Path] | None:
    """The resolved folders of ``CXR_DATA_ROOTS``, or ``None`` when it is unset or blank (no limit)."""
    raw = os.environ.get(ROOTS_ENV, "")
    roots = [Path(os.path.realpath(os.path.expanduser(p.strip())))
             for p in raw.split(os.pathsep) if p.strip()]
    return roots or None


def check_allowed(folder: str | os.PathLike) -> Path:
    """Resolve ``folder`` and make sure ``CXR_DATA_ROOTS`` allows opening it.

    Args:
        folder: a dataset folder (or a file or folder given to ``predict``).

    Returns:
        The resolved path (symbolic links followed, ``~`` expanded).

    Raises:
        FolderNotAllowed: ``CXR_DATA_ROOTS`` is set and the resolved path lies outside all of
            its folders. The check does not touch the path, so the error is the same whether it
            exists or not.
        UnusablePath: the system cannot take it as a path (a NUL, a name or a path too long).
    """
    why = _unusable(os.fspath(folder))
    if why is not None:
        shown = printable(folder)  # a NUL shown as \x00
        shown = shown if len(shown) <= 80 else f"{shown[:60]}… ({len(shown):,} characters)"
        raise UnusablePath(f"{shown} cannot be used as a folder path: {why}")
    real = os.path.realpath(os.path.expanduser(os.fspath(folder)))
    roots = allowed_roots()
    if roots is not None and not any(is_inside(real, str(r)) for r in roots):
        raise FolderNotAllowed(f"{folder} is outside the folders this installation may open "
                               f"({ROOTS_ENV}: {os.pathsep.join(map(str, roots))})")
    return Path(real)


class DatasetFolder:
    """The paths one dataset may yield: those that resolve inside its folder.

    Resolved parent folders are cached, so checking 20 000 files in a few folders costs one
    ``lstat`` per file. That is the ``stat`` a scan makes anyway. A link costs one more ``stat``.

    Args:
        root: the dataset folder.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = os.path.realpath(os.fspath(root))
        self._dirs: dict[str, str] = {}

    def _real_dir(self, folder: str) -> str:
        real = self._dirs.get(folder)
        if real is None:
            real = self._dirs[folder] = os.path.realpath(folder)
        return real

    def folder_refusal(self, folder: str | os.PathLike) -> str | None:
        """``None`` when ``folder`` resolves inside the dataset folder, else why it is skipped."""
        if is_inside(self._real_dir(os.fspath(folder)), self.root):
            return None
        return "a symbolic link to a folder outside the dataset folder"

    def regular_file(self, path: str) -> bool:
        """Whether ``path`` is a regular file that resolves inside the folder (:meth:`stat`)."""
        st, _ = self.stat(path)
        return st is not None and stat_.S_ISREG(st.st_mode)

    def film(self, path: str) -> tuple[os.stat_result | None, str | None]:
        """:meth:`stat` of a file to open, also refusing a name that is not valid UTF-8
        (:data:`NOT_UTF8`: no table or CSV can hold it) and anything but a regular file
        (:func:`not_regular`)."""
        if not utf8_name(path):
            return None, NOT_UTF8
        st, reason = self.stat(path)
        return (None, not_regular(st)) if st is not None and not_regular(st) else (st, reason)

    def stat(self, path: str) -> tuple[os.stat_result | None, str | None]:
        """The file's ``stat`` (links followed), or ``None`` and the reason it cannot be used.

        Reasons: :data:`REFUSED_OUTSIDE` (the path itself leads out), :data:`REFUSED_LINK` (a link
        whose target lies outside; its target is not looked at), :data:`LINK_LOOP`,
        :data:`DANGLING_LINK`, ``"file not found"`` (also for a path with a NUL byte) or
        ``"cannot read file (...)"``.
        """
        if "\x00" in str(path):  # no file system takes it (os.stat raises ValueError)
            return None, "file not found (the path holds a NUL byte)"
        head, name = os.path.split(path)
        real_head = self._real_dir(head)
        if not is_inside(real_head, self.root):
            return None, REFUSED_OUTSIDE
        real = os.path.join(real_head, name)
        try:
            st = os.lstat(real)
        except OSError as exc:
            return None, _os_reason(exc)
        if not stat_.S_ISLNK(st.st_mode):
            return st, None
        if not is_inside(os.path.realpath(real), self.root):  # before any stat of the target
            return None, REFUSED_LINK
        try:
            return os.stat(real), None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None, LINK_LOOP
            if exc.errno == errno.ENOENT:
                return None, DANGLING_LINK
            return None, _os_reason(exc)


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "file not found"
    return f"cannot read file ({exc.strerror or exc})"
