"""JPEG decoding that hears libjpeg's warnings instead of leaving them on the terminal.

libjpeg does not fail on most damaged entropy-coded data. A truncated file with an end marker
appended, random scan data, or a few KiB overwritten in the middle all decode to a full-size picture
whose lower part is grey or garbage. The only sign is a line that libjpeg's default message handler
``fprintf``-s to the process's stderr, for example ``Corrupt JPEG data: premature end of data segment``
or ``Corrupt JPEG data: 1374 extraneous bytes before marker 0xd9``. OpenCV gives Python no
other sign: ``cv2.imdecode`` returns the array as if all were well.

So file descriptor 2 is pointed at a temporary file while ``cv2.imdecode`` runs
(``os.dup`` / ``os.dup2``). Lines from libjpeg become the decode's warnings; any other text
caught meanwhile (another thread's log line, for instance) is written back to the real stderr when
the capture ends. fd 2 belongs to the whole process, so the capture is shared: decodes on several
threads run at the same time under one capture. A decode that saw a libjpeg line appear while it
ran may be hearing another thread's warning, so it decodes again alone (exclusive capture) to
learn which lines are its own. That repeat costs time only for damaged files. To keep other
threads' stderr from being held back for long, a capture that has lasted :data:`MAX_CAPTURE_S`
takes no new decodes: it drains, writes back what it held, and the next decode starts a new one.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import time

import cv2
import numpy as np

MAX_CAPTURE_S = 0.25
# libjpeg's warning texts (jerror.h, libjpeg-turbo's jerror.h): the lines a capture keeps.
_LIBJPEG_LINE = re.compile(rb"^(Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters"
                           rb"|Inconsistent progression sequence|Unknown Adobe color transform"
                           rb"|Application transferred too many scanlines"
                           rb"|Warning: unknown JFIF revision|Warning: thumbnail image size)")
_CORRUPTION = ("Corrupt JPEG data", "Premature end of JPEG file", "Inconsistent progression sequence")


def corruption(warnings: list[str]) -> list[str]:
    """The warnings that mean the scan data was damaged (so some decoded pixels are invented)."""
    return [w for w in warnings if w.startswith(_CORRUPTION)]


class _Capture:
    """fd 2 redirected into one temporary file while any decode is in flight (see module doc)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.active = 0            # decodes running under the shared capture
        self.exclusive = False     # one decode running alone
        self.waiting = 0           # exclusive decodes waiting for the shared ones to finish
        self.started = 0.0
        self.saved: int | None = None
        self.sink: int | None = None

    # -- fd juggling (called with self.cond held) -----------------------------------------
    def _begin(self) -> None:
        if self.sink is None:
            fh = tempfile.TemporaryFile(prefix="cxr-stderr-")
            self.sink = os.dup(fh.fileno())
            fh.close()
        try:
            sys.stderr.flush()  # Python's own pending text goes out before fd 2 moves
        except (AttributeError, OSError, ValueError):
            pass
        try:
            self.saved = os.dup(2)
        except OSError:  # fd 2 was closed: restore it closed
            self.saved = None
        os.dup2(self.sink, 2)
        self.started = time.monotonic()

    def _end(self) -> bytes:
        size = os.fstat(self.sink).st_size
        text = os.pread(self.sink, size, 0) if size else b""
        if self.saved is None:
            os.close(2)
        else:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        os.ftruncate(self.sink, 0)
        os.lseek(self.sink, 0, os.SEEK_SET)
        other = b"".join(line for line in text.splitlines(keepends=True)
                         if not _LIBJPEG_LINE.match(line))
        while other and self.saved is not None:
            other = other[os.write(2, other):]
        return text

    def _position(self) -> int:
        return os.fstat(self.sink).st_size

    # -- decodes ----------------------------------------------------------------------------
    def shared(self, data: np.ndarray, flags: int) -> tuple[np.ndarray | None, bool]:
        """Decode under the shared capture; also says whether any libjpeg line appeared meanwhile."""
        with self.cond:
            while (self.exclusive or self.waiting
                   or (self.active and time.monotonic() - self.started > MAX_CAPTURE_S)):
                self.cond.wait()
            if self.active == 0:
                self._begin()
            self.active += 1
            start = self._position()
        try:
            arr = cv2.imdecode(data, flags)
        finally:
            with self.cond:
                stop = self._position()
                heard = os.pread(self.sink, stop - start, start) if stop > start else b""
                self.active -= 1
                if self.active == 0:
                    self._end()
                    self.cond.notify_all()
        return arr, any(_LIBJPEG_LINE.match(line) for line in heard.splitlines())

    def alone(self, data: np.ndarray, flags: int) -> tuple[np.ndarray | None, list[str]]:
        """Decode with no other decode in flight: every libjpeg line caught is this file's."""
        with self.cond:
            self.waiting += 1
            while self.exclusive or self.active:
                self.cond.wait()
            self.waiting -= 1
            self.exclusive = True
            self._begin()
        text = b""
        try:
            arr = cv2.imdecode(data, flags)
        finally:
            with self.cond:
                text = self._end()
                self.exclusive = False
                self.cond.notify_all()
        lines = [line.decode("utf-8", "replace").strip() for line in text.splitlines()]
        return arr, [line for line in lines if _LIBJPEG_LINE.match(line.encode())]


_CAPTURE = _Capture()


def _after_fork_in_child() -> None:
    """A child forked mid-capture gets its real stderr back and a capture of its own."""
    global _CAPTURE  # noqa: PLW0603
    if (_CAPTURE.active or _CAPTURE.exclusive) and _CAPTURE.saved is not None:
        os.dup2(_CAPTURE.saved, 2)
    _CAPTURE = _Capture()


os.register_at_fork(after_in_child=_after_fork_in_child)


def imdecode_jpeg(data: np.ndarray, flags: int) -> tuple[np.ndarray | None, list[str]]:
    """``cv2.imdecode`` of a JPEG, with the warnings libjpeg printed while decoding it.

    Args:
        data: the file's bytes as a ``uint8`` array.
        flags: ``cv2.imdecode`` flags.

    Returns:
        ``(array or None, warnings)``: the warnings are libjpeg's lines, e.g.
        ``"Corrupt JPEG data: premature end of data segment"`` (use :func:`corruption`).
    """
    capture = _CAPTURE
    arr, heard = capture.shared(data, flags)
    if not heard:
        return arr, []
    return capture.alone(data, flags)
