"""Read chest films (JPEG, PNG 8/16-bit, DICOM) into uint8 arrays, and read their headers fast.

Every reader either returns a :class:`Film` or raises :class:`ImageReadError` with a short human
reason; nothing else escapes, so a dataset scan can list bad files and go on.

Rules (the same for files and uploaded bytes):

* The format is recognised from the file's signature, not its name: PNG (``\\x89PNG``), JPEG
  (``FF D8``) and DICOM (``DICM`` at byte 128, or a ``.dcm``/``.dicom`` name).
* The pixel count is read from the header and checked against ``max_pixels`` *before* any pixel
  is decoded, so a decompression bomb costs a few bytes of reading.
* A JPEG without its end-of-image marker after the scan data, or a PNG without its ``IEND``
  chunk, is truncated and refused, even where a decoder would return a partly grey picture.
* Output is ``np.uint8``: grey films stay ``(H, W)``; colour films are ``(H, W, 3)`` in RGB order.
  Alpha is dropped (not composited). A grey + alpha PNG becomes ``(H, W)``.
  Pixels are returned as stored: an EXIF orientation tag is not applied (CXR files rarely carry
  one, and header sizes then always match the decoded film).
* 16-bit samples become 8-bit by a linear min-max stretch of the film's *actual* range:
  ``round((v - lo) * 255 / (hi - lo))`` with ``lo, hi`` the smallest and largest value present, so a
  12-bit film stored in 16 bits uses the full 8-bit range. A flat film (``hi == lo``) maps to the
  single value ``round(lo * 255 / 65535)``.
* DICOM: the modality LUT (rescale slope / intercept) and then the VOI LUT or window from the
  file are applied with pydicom (``apply_modality_lut``, ``apply_voi_lut``), the result is
  min-max stretched to 8 bits as above, and MONOCHROME1 films (bright = low value) are inverted
  so that bone is bright in every film. Multi-frame files give their first frame.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np

DEFAULT_MAX_PIXELS = int(os.environ.get("CXR_MAX_PIXELS", 40_000_000))
"""Largest film (width x height) the readers decode: 40 megapixels, or ``$CXR_MAX_PIXELS``.
The largest public CXRs are about 4300 x 4300 (18.5 MP)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", *DICOM_SUFFIXES)
"""File-name endings a dataset scan treats as images (case-insensitive)."""

# Start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> channels as decoded (palette -> RGB)
_TAIL_BYTES = 4096  # end markers are searched this far from the end (allows trailing padding)
_WINDOW = 65536


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


# --------------------------------------------------------------------------------- headers
def read_header(path: str | os.PathLike, *, max_pixels: int | None = None) -> ImageMeta:
    """Read size, channels, bit depth and format from a file's header, without decoding pixels.

    PNG and JPEG headers are parsed here (IHDR chunk; JPEG start-of-frame marker, seeking over the
    other segments); DICOM through pydicom with ``stop_before_pixels``. PNG and JPEG files are also
    checked for their end marker, so truncated files are caught by a scan.

    Args:
        path: the image file.
        max_pixels: when given, a film with more pixels raises (as :func:`read_film` would).

    Returns:
        The header's :class:`ImageMeta`.

    Raises:
        ImageReadError: missing, empty, unreadable, unrecognised, truncated or too large a file.
    """
    where = os.fspath(path)
    try:
        with open(where, "rb") as fh:
            meta = _parse_header(_Source(fh, os.fstat(fh.fileno()).st_size), os.path.basename(where), where)
    except OSError as exc:
        raise _os_error(where, exc) from None
    if max_pixels is not None:
        check_size(meta, max_pixels, where)
    return meta


def _os_error(where: str | os.PathLike, exc: OSError) -> ImageReadError:
    """The :class:`ImageReadError` for a file the operating system would not read."""
    if isinstance(exc, FileNotFoundError):
        reason = "file not found"
    elif isinstance(exc, PermissionError):
        reason = "permission denied"
    elif isinstance(exc, IsADirectoryError):
        reason = "is a folder, not a file"
    else:
        reason = f"cannot read file ({exc.strerror or exc})"
    return ImageReadError(where, reason)


def check_size(meta: ImageMeta, max_pixels: int, path: str | os.PathLike) -> None:
    """Raise :class:`ImageReadError` when ``meta`` describes more than ``max_pixels`` pixels."""
    if meta.pixels > max_pixels:
        raise ImageReadError(path, f"image too large: {meta.width} x {meta.height} = "
                                   f"{meta.pixels / 1e6:.1f} MP exceeds the limit of "
                                   f"{max_pixels / 1e6:.1f} MP")


class _Source:
    """Random access to a file's bytes through one 64 KiB window: a single read covers the
    headers of almost every film, where byte-by-byte reads cost ~0.15 ms a file."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.size = fh, size
        self.start, self.buf = 0, fh.read(_WINDOW)

    def get(self, pos: int, n: int) -> bytes:
        if not (self.start <= pos and pos + n <= self.start + len(self.buf)):
            self.fh.seek(pos)
            if n > _WINDOW:
                return self.fh.read(n)
            self.start, self.buf = pos, self.fh.read(_WINDOW)
        return self.buf[pos - self.start:pos - self.start + n]

    def tail_has(self, marker: bytes, after: int = 0) -> bool:
        """Whether ``marker`` occurs in the last few KiB of the file (but not before ``after``)."""
        start = max(after, self.size - _TAIL_BYTES)
        return marker in self.get(start, self.size - start)


def _parse_header(src: _Source, name: str, where: str) -> ImageMeta:
    if src.size == 0:
        raise ImageReadError(where, "empty file (0 bytes)")
    head = src.get(0, 132)
    if head.startswith(PNG_SIGNATURE):
        return _png_header(src, head, where)
    if head.startswith(JPEG_SIGNATURE):
        return _jpeg_header(src, where)
    if head[128:132] == b"DICM" or name.lower().endswith(DICOM_SUFFIXES):
        return _dicom_header(src.fh, where)
    raise ImageReadError(where, "not an image: unrecognised file signature (expected JPEG, PNG or DICOM)")


def _png_header(src: _Source, head: bytes, where: str) -> ImageMeta:
    if len(head) < 29 or head[12:16] != b"IHDR":
        raise ImageReadError(where, "corrupt PNG (no IHDR header)")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    if width == 0 or height == 0 or colour not in _PNG_CHANNELS:
        raise ImageReadError(where, "corrupt PNG (invalid IHDR header)")
    if not src.tail_has(b"IEND"):
        raise ImageReadError(where, "truncated PNG (no IEND chunk)")
    return ImageMeta(width, height, _PNG_CHANNELS[colour], 16 if depth == 16 else 8, "PNG",
                     extra={"palette": colour == 3, "interlaced": bool(interlace),
                            "stored_bit_depth": depth})


def _jpeg_header(src: _Source, where: str) -> ImageMeta:
    # Walk the marker segments up to the start of scan on a local window of bytes (indexing a
    # bytes object is ~5x cheaper than a method call per segment); refill when near its end.
    pos, frame, base, buf = 2, None, 0, src.get(0, _WINDOW)
    while True:
        if pos + 16 > base + len(buf) and base + len(buf) < src.size:
            base, buf = pos, src.get(pos, _WINDOW)
        i = pos - base
        if i + 2 > len(buf):
            raise ImageReadError(where, "truncated JPEG (ends before the image data)")
        if buf[i] != 0xFF:
            raise ImageReadError(where, "corrupt JPEG (bad marker structure)")
        code, i = buf[i + 1], i + 2
        while code == 0xFF and i < len(buf):  # fill bytes
            code, i = buf[i], i + 1
        pos = base + i
        if code == 0x01 or 0xD0 <= code <= 0xD7:  # standalone markers, no length
            continue
        if code in (0xD9, 0xFF):
            raise ImageReadError(where, "corrupt JPEG (end of image before any scan)")
        if i + 2 > len(buf):
            raise ImageReadError(where, "truncated JPEG (ends inside a header)")
        length = (buf[i] << 8) | buf[i + 1]
        if length < 2:
            raise ImageReadError(where, "corrupt JPEG (bad segment length)")
        if code in _SOF_MARKERS:
            if i + 8 > len(buf):
                raise ImageReadError(where, "truncated JPEG (ends inside the frame header)")
            frame = (*struct.unpack(">BHHB", buf[i + 2:i + 8]), code)
        elif code == 0xDA:  # start of scan: the entropy-coded data follows
            scan_start = pos + length
            break
        pos += length
    if frame is None:
        raise ImageReadError(where, "corrupt JPEG (no frame header before the scan)")
    precision, height, width, components, code = frame
    if width == 0 or height == 0:
        raise ImageReadError(where, "unsupported JPEG (size given after the scan, DNL marker)")
    if not src.tail_has(b"\xff\xd9", after=scan_start):
        raise ImageReadError(where, "truncated JPEG (no end-of-image marker)")
    return ImageMeta(width, height, components, 16 if precision > 8 else 8, "JPEG",
                     extra={"progressive": code in (0xC2, 0xC6, 0xCA, 0xCE),
                            "precision": precision})


def _dicom_header(fh: BinaryIO, where: str) -> ImageMeta:
    import pydicom  # noqa: PLC0415  (heavy-ish; only DICOM needs it)

    fh.seek(0)
    try:
        ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
        return _dicom_meta(ds)
    except ImageReadError as exc:
        raise ImageReadError(where, exc.reason) from None
    except Exception as exc:  # pydicom raises many types on bad input
        raise ImageReadError(where, f"corrupt DICOM ({type(exc).__name__})") from None


def _dicom_meta(ds: Any) -> ImageMeta:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if not rows or not cols:
        raise ImageReadError("", "DICOM without an image (no Rows / Columns)")
    photometric = str(ds.get("PhotometricInterpretation", "") or "") or None
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return ImageMeta(cols, rows, int(ds.get("SamplesPerPixel", 1) or 1),
                     int(ds.get("BitsAllocated", 16) or 16), "DICOM", photometric,
                     extra={"bits_stored": int(ds.get("BitsStored", 0) or 0) or None,
                            "frames": int(ds.get("NumberOfFrames", 1) or 1),
                            "transfer_syntax": str(tsyntax) if tsyntax else None,
                            "modality": str(ds.get("Modality", "") or "") or None})


# --------------------------------------------------------------------------------- decoding
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
    meta = _parse_header(_Source(io.BytesIO(data), len(data)), name, where)
    check_size(meta, max_pixels, where)
    if meta.format == "DICOM":
        pixels = _decode_dicom(data, where, meta)
    else:
        pixels = _decode_raster(data, where, meta)
    meta.height, meta.width = pixels.shape[:2]
    return Film(pixels, meta)


def _decode_raster(data: bytes, name: str, meta: ImageMeta) -> np.ndarray:
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is None or arr.size == 0:
        raise ImageReadError(name, f"corrupt {meta.format} (the decoder could not read the image data)")
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
