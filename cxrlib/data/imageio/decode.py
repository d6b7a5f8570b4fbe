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

from cxrlib.data.imageio.film import DEFAULT_MAX_PIXELS, Film, ImageMeta, ImageReadError
from cxrlib.data.imageio.headers import _os_error, _parse_header, check_size
from cxrlib.data.imageio.source import Source
from cxrlib.data.imageio.libjpeg import corruption, imdecode_jpeg


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


def _decode(data: bytes, name: str, where: str, max_pixels: int) -> Film:
    meta = _parse_header(Source(io.BytesIO(data), len(data)), name, where)
    check_size(meta, max_pixels, where)
    if meta.format == "DICOM":
        pixels = _decode_dicom(data, where, meta)
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


def _decode_dicom(data: bytes, name: str, meta: ImageMeta) -> np.ndarray:
    import pydicom  # noqa: PLC0415
    from pydicom.pixels import apply_modality_lut, apply_voi_lut  # noqa: PLC0415

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        arr = ds.pixel_array
    except Exception as exc:  # missing decoder plugin, truncated pixel data, ...
        text = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ImageReadError(name, f"cannot decode DICOM pixel data ({text})") from None
    if meta.extra.get("frames", 1) > 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] == 3:  # colour DICOM (pydicom gives RGB)
        return to_uint8(arr)
    try:
        values = apply_voi_lut(apply_modality_lut(arr, ds), ds)
    except Exception as exc:  # malformed LUT / window elements: pydicom raises many types
        raise ImageReadError(name, f"corrupt DICOM (bad modality or VOI LUT: {type(exc).__name__})") from None
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ImageReadError(name, "corrupt DICOM (pixel values are not finite after the LUTs)")
    grey = stretch_to_uint8(values)
    if meta.photometric == "MONOCHROME1":
        grey = 255 - grey
    return grey


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 arrays pass through; 16-bit integer arrays are min-max stretched (see module doc)."""
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.uint16:
        lo, hi = int(arr.min()), int(arr.max())
        if hi == lo:
            return np.full(arr.shape, round(lo * 255 / 65535), np.uint8)
        # A 65536-entry lookup table is exact and ~10x faster than float arithmetic per pixel.
        lut = np.clip(np.round((np.arange(65536, dtype=np.float64) - lo) * 255.0 / (hi - lo)), 0, 255)
        return lut.astype(np.uint8)[arr]
    return stretch_to_uint8(arr.astype(np.float64))


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Linear min-max stretch of any numeric array to uint8 (a flat array becomes all 0)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi == lo:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)

