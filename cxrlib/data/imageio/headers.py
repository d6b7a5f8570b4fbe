"""Read a film's size, channels, bit depth and format from its header, without decoding pixels.

PNG headers (IHDR) are parsed here, JPEG headers in :mod:`.jpeg`, DICOM through pydicom with
``stop_before_pixels``. PNG and JPEG files are also checked for their end marker, so truncated
files are caught by a scan. A 64 KiB window (:class:`cxrlib.data.imageio.source.Source`) covers
the headers of almost every
film in one read.
"""
from __future__ import annotations

import os
import stat
import struct
from typing import Any, BinaryIO

from cxrlib.data.imageio.dicom import NATIVE_SYNTAXES, not_an_image_reason
from cxrlib.data.imageio.jpeg import jpeg_header
from cxrlib.data.imageio.source import Source
from cxrlib.data.imageio.film import (DICOM_SUFFIXES, IMAGE_SUFFIXES, JPEG_SIGNATURE, PNG_SIGNATURE,
                                      ImageMeta, ImageReadError)

_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> channels as decoded (palette -> RGB)


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
            meta = _parse_header(Source(fh, os.fstat(fh.fileno()).st_size), os.path.basename(where), where)
    except OSError as exc:
        raise _os_error(where, exc) from None
    if max_pixels is not None:
        check_size(meta, max_pixels, where)
    return meta


def is_film_file(path: str) -> bool:
    """Whether a folder walk (a dataset scan, ``predict`` of a folder) reads the file at ``path``:
    a name with an image ending (:data:`IMAGE_SUFFIXES`), or a DICOM by its preamble under any
    other name (a PACS export or a CD names its films ``IM000001`` or by a UID)."""
    return path.lower().endswith(IMAGE_SUFFIXES) or dicom_by_preamble(path)


def dicom_by_preamble(path: str) -> bool:
    """Whether ``path`` is a regular file holding a DICOM preamble (``DICM`` at byte 128, PS3.10).

    A link is not followed (where it leads is the dataset's containment rule, applied later to
    image names) and a FIFO is not read (it would block): both are False, as is any OS error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.pread(fd, 4, 128) == b"DICM"
    except OSError:
        return False
    finally:
        os.close(fd)


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
    """Raise :class:`ImageReadError` when ``meta`` describes more than ``max_pixels`` pixels.

    Every frame of a multi-frame DICOM counts (``meta.extra["frames"]``): the file's pixel data
    is read whole even though only its first frame is decoded."""
    frames = int(meta.extra.get("frames", 1) or 1)
    if meta.pixels * frames > max_pixels:
        size = f"{meta.width} x {meta.height}" + (f" x {frames} frames" if frames > 1 else "")
        raise ImageReadError(path, f"image too large: {size} = "
                                   f"{meta.pixels * frames / 1e6:.1f} MP exceeds the limit of "
                                   f"{max_pixels / 1e6:.1f} MP")


def check_min_side(meta: ImageMeta, min_side: int, path: str | os.PathLike) -> None:
    """Raise :class:`ImageReadError` when ``meta``'s short side is under ``min_side`` pixels
    ("too small to classify"; see :data:`cxrlib.data.imageio.film.MIN_FILM_SIDE`)."""
    if min(meta.width, meta.height) < min_side:
        raise ImageReadError(path, f"too small to classify: {meta.width} x {meta.height} px "
                                   f"(the short side must be at least {min_side} px)")


def _parse_header(src: Source, name: str, where: str) -> ImageMeta:
    if src.size == 0:
        raise ImageReadError(where, "empty file (0 bytes)")
    head = src.get(0, 132)
    if head.startswith(PNG_SIGNATURE):
        return _png_header(src, head, where)
    if head.startswith(JPEG_SIGNATURE):
        return jpeg_header(src, where)
    if head[128:132] == b"DICM" or name.lower().endswith(DICOM_SUFFIXES):
        return _dicom_header(src.fh, src.size, where)
    raise ImageReadError(where, "not an image: unrecognised file signature (expected JPEG, PNG or DICOM)")


def _png_header(src: Source, head: bytes, where: str) -> ImageMeta:
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


def _dicom_header(fh: BinaryIO, size: int, where: str) -> ImageMeta:
    import pydicom  # noqa: PLC0415  (heavy-ish; only DICOM needs it)
    from pydicom.uid import DeflatedExplicitVRLittleEndian  # noqa: PLC0415

    fh.seek(0)
    try:
        ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
        # pydicom stops before the pixel data element, so reading to the end means it has none
        # (a deflated file is read whole to be inflated: its decode says so instead).
        tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if fh.tell() >= size and tsyntax != DeflatedExplicitVRLittleEndian:
            raise ImageReadError(where, not_an_image_reason(ds))
        meta = _dicom_meta(ds)
        _check_native_pixel_data(fh, size, ds, meta)
        return meta
    except ImageReadError as exc:
        raise ImageReadError(where, exc.reason) from None
    except Exception as exc:  # pydicom raises many types on bad input
        raise ImageReadError(where, f"corrupt DICOM ({type(exc).__name__})") from None


def _dicom_meta(ds: Any) -> ImageMeta:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if not rows or not cols:
        raise ImageReadError("", not_an_image_reason(ds, "without an image (no Rows / Columns)"))
    photometric = str(ds.get("PhotometricInterpretation", "") or "") or None
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return ImageMeta(cols, rows, int(ds.get("SamplesPerPixel", 1) or 1),
                     int(ds.get("BitsAllocated", 16) or 16), "DICOM", photometric,
                     extra={"bits_stored": int(ds.get("BitsStored", 0) or 0) or None,
                            "frames": int(ds.get("NumberOfFrames", 1) or 1),
                            "transfer_syntax": str(tsyntax) if tsyntax else None,
                            "modality": str(ds.get("Modality", "") or "") or None})


_LONG_VRS = {b"OB", b"OW", b"OD", b"OF", b"OL", b"OV", b"UN"}


def _check_native_pixel_data(fh: BinaryIO, size: int, ds: Any, meta: ImageMeta) -> None:
    """Hold an uncompressed film's pixel data against its header, reading only the element's own
    header where pydicom stopped (``fh`` is there): a file that ends inside the pixel data, or a
    header whose Rows x Columns x frames need more bytes than the element holds, raises
    :class:`ImageReadError` (as a truncated PNG or JPEG does at the scan). Longer pixel data
    puts the bytes the header needs in ``meta.extra["pixel_data_needed"]`` (the decode reads
    those), and whole frames beyond the header's in ``meta.extra["pixel_data_frames"]`` (the
    decode says so)."""
    kind = NATIVE_SYNTAXES.get(str(meta.extra.get("transfer_syntax") or ""))
    if kind is None or meta.photometric == "YBR_FULL_422":  # compressed, or subsampled: the decoder checks
        return
    order, explicit = kind
    start = fh.tell()
    head = fh.read(12)
    if len(head) < 8 or struct.unpack(order + "HH", head[:4]) != (0x7FE0, 0x0010):
        return  # not the (7FE0,0010) Pixel Data element: float pixels and the like, the decoder's
    if explicit and head[4:6] not in _LONG_VRS:
        length, offset = struct.unpack(order + "H", head[6:8])[0], 8
    elif explicit:
        length, offset = (struct.unpack(order + "I", head[8:12])[0] if len(head) == 12 else 0), 12
    else:
        length, offset = struct.unpack(order + "I", head[4:8])[0], 8
    if length == 0xFFFFFFFF:
        return  # encapsulated under a native syntax: the decoder says what is wrong
    frames = int(meta.extra.get("frames", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    frame_bits = meta.pixels * meta.channels * bits
    needed = (frame_bits * frames + 7) // 8  # 1-bit frames are packed across frame boundaries
    have = max(0, size - start - offset)
    if have < min(length, needed):
        raise ImageReadError("", f"truncated DICOM (the file ends inside its pixel data: {have} of "
                                 f"{length} bytes)")
    if length < needed:
        shape = f"{meta.width} x {meta.height} px" + (f" x {frames} frames" if frames > 1 else "")
        samples = f"{meta.channels} sample{'s' * (meta.channels > 1)}"
        raise ImageReadError("", f"corrupt DICOM (its header's {shape}, {samples} of {bits} bits, need "
                                 f"{needed} bytes of pixel data; it holds {length})")
    if length > needed + needed % 2:  # more than the one byte that pads an odd length
        meta.extra["pixel_data_needed"] = needed
    if frame_bits and length * 8 // frame_bits > frames:
        meta.extra["pixel_data_frames"] = length * 8 // frame_bits

