"""Decode films (JPEG, PNG 8/16-bit, DICOM) from files or bytes into uint8 arrays.

Rules (the same for files and uploaded bytes; see :mod:`cxrlib.data.imageio`):
grey stays ``(H, W)``, colour becomes ``(H, W, 3)`` RGB, alpha is dropped, 16-bit samples are
min-max stretched to 8 bits over the film's actual range, DICOM gets its modality and VOI LUTs
(pydicom) and MONOCHROME1 is inverted. Every failure is an :class:`ImageReadError` with a reason.

A JPEG whose scan data libjpeg reports as corrupt ("Corrupt JPEG data: ...", "Premature end of JPEG
file") is an error for that file, not a warning: libjpeg still returns a full-size picture, but
it fills the part it could not decode with grey or with garbage from a desynchronised Huffman
stream. Those pixels are invented, and a classifier trained or scored on them learns or reports
on an artefact. A header scan cannot see this; every decode does (:mod:`.libjpeg` catches the
warning that libjpeg would otherwise only print on stderr), so training, prediction, the audit and
the Explain page all list such a film with this reason. libjpeg's harmless warnings (an unknown
JFIF revision, say) are kept in ``Film.meta.extra["decoder_warnings"]``.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np

from cxrlib.data.imageio.dicom import decode_dicom
from cxrlib.data.imageio.film import DEFAULT_MAX_PIXELS, Film, ImageMeta, ImageReadError
from cxrlib.data.imageio.headers import _os_error, _parse_header, check_size
from cxrlib.data.imageio.source import Source
from cxrlib.data.imageio.libjpeg import corruption, imdecode_jpeg
from cxrlib.data.imageio.pixels import to_uint8


def read_film(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Film:
    """Read and decode one film from disk.

    Args:
        path: a JPEG, PNG or DICOM file.
        max_pixels: refuse films with more pixels than this (checked from the header first).

    Returns:
        The :class:`Film` (uint8 grey ``(H, W)`` or RGB ``(H, W, 3)``) with its metadata.

    Raises:
        ImageReadError: for any file that cannot be read; ``reason`` says why.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _os_error(path, exc) from None
    return _decode(data, path.name, str(path), max_pixels)


def decode_film(data: bytes, name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Film:
    """Decode a film from bytes (an upload, or a file already read).

    Args:
        data: the file's bytes.
        name: its file name (used for error messages and to recognise signature-less DICOM).
        max_pixels: refuse films with more pixels than this (checked from the header first).

    Returns:
        The decoded :class:`Film`.

    Raises:
        ImageReadError: ``path`` is ``name``; ``reason`` says what is wrong.
    """
    return _decode(data, Path(name).name, name, max_pixels)


def decoder_warning(film: Film) -> str:
    """A film's decoder warnings in one line ("" for none): what the app shows beside the film,
    and what ``predict`` and ``explain`` put in a row's ``warning`` column."""
    return "; ".join(film.meta.extra.get("decoder_warnings", []))


def read_films(items, read=None) -> tuple[list, list[str], list[str]]:
    """``(films, errors, warnings)``, the one batch reader of the CLI's outputs: per item (a
    path, or what ``read`` takes) its uint8 pixels or None, "" or the reason it could not be
    read, and "" or its :func:`decoder_warning`. ``read`` returns a :class:`Film` (default
    :func:`read_film`)."""
    read = read or read_film
    films, errors, warnings = [], [], []
    for item in items:
        try:
            film = read(item)
        except ImageReadError as exc:
            film, error = None, exc.reason
        except OSError as exc:
            film, error = None, exc.strerror or str(exc)
        else:
            error = ""
        films.append(None if film is None else film.pixels)
        errors.append(error)
        warnings.append("" if film is None else decoder_warning(film))
    return films, errors, warnings


def _decode(data: bytes, name: str, where: str, max_pixels: int) -> Film:
    meta = _parse_header(Source(io.BytesIO(data), len(data)), name, where)
    check_size(meta, max_pixels, where)
    if meta.format == "DICOM":
        pixels = decode_dicom(data, where, meta)
    else:
        pixels = _decode_raster(data, where, meta)
    meta.height, meta.width = pixels.shape[:2]
    return Film(pixels, meta)


def _decode_raster(data: bytes, name: str, meta: ImageMeta) -> np.ndarray:
    buffer, warnings = np.frombuffer(data, np.uint8), []
    try:
        if meta.format == "JPEG":
            arr, warnings = imdecode_jpeg(buffer, cv2.IMREAD_UNCHANGED)
        else:
            arr = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is None or arr.size == 0:
        raise ImageReadError(name, f"corrupt {meta.format} (the decoder could not read the image data)")
    damaged = corruption(warnings)
    if damaged:
        raise ImageReadError(name, "corrupt JPEG data: the decoder would invent part of the picture "
                                   f"(libjpeg: {'; '.join(dict.fromkeys(damaged))})")
    if warnings:
        meta.extra["decoder_warnings"] = warnings
    if arr.ndim == 3:
        if meta.channels == 2:  # grey + alpha comes back as BGRA with B == G == R
            arr = arr[..., 0]
        elif arr.shape[2] == 4:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
        elif arr.shape[2] == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
        else:
            arr = arr[..., 0]
    return to_uint8(arr)

