"""What a film is: decoded pixels with the header's metadata, and the one error for bad files."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_MAX_PIXELS = int(os.environ.get("CXR_MAX_PIXELS", 40_000_000))
"""Largest film (width x height) the readers decode: 40 megapixels, or ``$CXR_MAX_PIXELS``.
The largest public CXRs are about 4300 x 4300 (18.5 MP)."""

MIN_FILM_SIDE = 32
"""Smallest short side, in pixels, of a film that can be classified (default of :func:`min_film_side`).
A narrower film is a strip, not a chest. The models' inputs are 96-224 px a side, and stretching a
few pixels to that size invents nearly all of them. A dataset scan lists such films as problems
("too small to classify"), so training leaves them out, and the Explain page refuses them with
that message."""


def min_film_side() -> int:
    """The minimum short side in force: ``$CXR_MIN_FILM_SIDE``, else :data:`MIN_FILM_SIDE`."""
    return int(os.environ.get("CXR_MIN_FILM_SIDE") or MIN_FILM_SIDE)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", *DICOM_SUFFIXES)
"""File-name endings a dataset scan treats as images (case-insensitive)."""


class ImageReadError(Exception):
    """A file that cannot be read as a film.

    Attributes:
        path: the file (or upload name) that failed.
        reason: short human text, e.g. ``"truncated JPEG (no end-of-image marker)"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class ImageMeta:
    """What a film's header says about it.

    Attributes:
        width: columns in pixels.
        height: rows in pixels.
        channels: samples per pixel as stored: 1 grey, 2 grey + alpha, 3 colour, 4 colour + alpha
            (a palette PNG counts as 3).
        bit_depth: bits per stored sample container: 8 or 16 (PNG 1/2/4-bit count as 8; DICOM
            gives Bits Allocated, with Bits Stored in ``extra["bits_stored"]``).
        format: ``"PNG"``, ``"JPEG"`` or ``"DICOM"``.
        photometric: DICOM Photometric Interpretation (e.g. ``"MONOCHROME1"``); ``None`` otherwise.
        extra: format details (``progressive``, ``frames``, ``transfer_syntax``, ...).
    """

    width: int
    height: int
    channels: int
    bit_depth: int
    format: str
    photometric: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pixels(self) -> int:
        """Width x height."""
        return self.width * self.height


@dataclass
class Film:
    """A decoded film.

    Attributes:
        pixels: ``np.uint8`` array, ``(H, W)`` grey or ``(H, W, 3)`` RGB.
        meta: header information of the file it came from.
    """

    pixels: np.ndarray
    meta: ImageMeta

