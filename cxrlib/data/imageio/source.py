"""Random access to a film's bytes through one window: what the header readers share
(:mod:`.headers` for PNG and the signature, :mod:`.jpeg` for the marker walk)."""
from __future__ import annotations

from typing import BinaryIO

TAIL_BYTES = 4096  # end markers are searched this far from the end (allows trailing padding)
WINDOW = 65536


class Source:
    """Random access to a file's bytes through one 64 KiB window: a single read covers the
    headers of almost every film, where byte-by-byte reads cost ~0.15 ms a file."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.size = fh, size
        self.start, self.buf = 0, fh.read(WINDOW)

    def get(self, pos: int, n: int) -> bytes:
        if not (self.start <= pos and pos + n <= self.start + len(self.buf)):
            self.fh.seek(pos)
            if n > WINDOW:
                return self.fh.read(n)
            self.start, self.buf = pos, self.fh.read(WINDOW)
        return self.buf[pos - self.start:pos - self.start + n]

    def tail_has(self, marker: bytes, after: int = 0) -> bool:
        """Whether ``marker`` occurs in the last few KiB of the file (but not before ``after``)."""
        start = max(after, self.size - TAIL_BYTES)
        return marker in self.get(start, self.size - start)
