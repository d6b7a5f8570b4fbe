"""JPEG files: one walk over the marker segments, for the header and the quality estimate.

:func:`segments` is the only place the JPEG marker structure is parsed: :func:`jpeg_header`
reads the frame size from it and :func:`jpeg_quality` the luminance quantisation table.
"""
from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator

import numpy as np

from cxrlib.data.imageio.film import ImageMeta, ImageReadError
from cxrlib.data.imageio.source import Source

# Start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
SOS, DQT = 0xDA, 0xDB


def segments(src, where: str) -> Iterator[tuple[int, int, int]]:
    """The marker segments of a JPEG from its start up to and including the start of scan.

    Args:
        src: random access to the file's bytes (``get(pos, n)``, ``size``), e.g.
            :class:`cxrlib.data.imageio.source.Source`.
        where: the file's name, for error messages.

    Yields:
        ``(marker code, position of the length field, length)``; the payload is the
        ``length - 2`` bytes after the length field. The last segment yielded is SOS (0xDA).

    Raises:
        ImageReadError: a truncated file or a broken marker structure.
    """
    # Walk on a local window of bytes (indexing a bytes object is ~5x cheaper than a method
    # call per segment) and refill it when near its end.
    pos, base, buf = 2, 0, src.get(0, 1 << 16)
    while True:
        if pos + 16 > base + len(buf) and base + len(buf) < src.size:
            base, buf = pos, src.get(pos, 1 << 16)
        i = pos - base
        if i + 2 > len(buf):
            raise ImageReadError(where, "truncated JPEG (ends before the image data)")
        if buf[i] != 0xFF:
            raise ImageReadError(where, "corrupt JPEG (bad marker structure)")
        code, i = buf[i + 1], i + 2
        while code == 0xFF and i < len(buf):  # fill bytes
            code, i = buf[i], i + 1
        pos = base + i
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # standalone markers (and a repeated SOI)
            continue
        if code in (0xD9, 0xFF):
            raise ImageReadError(where, "corrupt JPEG (end of image before any scan)")
        if i + 2 > len(buf):
            raise ImageReadError(where, "truncated JPEG (ends inside a header)")
        length = (buf[i] << 8) | buf[i + 1]
        if length < 2:
            raise ImageReadError(where, "corrupt JPEG (bad segment length)")
        yield code, pos, length
        if code == SOS:
            return
        pos += length


def jpeg_header(src, where: str) -> ImageMeta:
    """The :class:`ImageMeta` of a JPEG from its frame header; checks the end-of-image marker."""
    frame = None
    for code, pos, length in segments(src, where):
        if code in SOF_MARKERS:
            head = src.get(pos + 2, 6)
            if len(head) < 6:
                raise ImageReadError(where, "truncated JPEG (ends inside the frame header)")
            frame = (*struct.unpack(">BHHB", head), code)
        elif code == SOS:
            scan_start = pos + length
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


def jpeg_quality(path: str | os.PathLike) -> float:
    """Estimate the IJG quality (1-100) a JPEG was saved with, from its luminance DQT table.

    The IJG encoder (libjpeg, used by PIL, OpenCV and most cameras' software) scales a standard
    table by ``S = 5000 / Q`` (Q < 50) or ``200 - 2 Q``; the quality whose scaled table is nearest
    the file's table (sum of absolute differences) is returned. Non-IJG tables get the nearest
    quality too, which is still a monotone measure of compression.

    Returns:
        The quality, or ``nan`` when the file is not a JPEG or has no DQT segment.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 17)
    except OSError:
        return float("nan")
    if data[:2] != b"\xff\xd8":
        return float("nan")
    src = Source(io.BytesIO(data), len(data))
    try:
        for code, pos, length in segments(src, str(path)):
            table = _luminance_table(src.get(pos + 2, length - 2)) if code == DQT else None
            if table is not None:
                errors = np.abs(_IJG_TABLES - table[None, :]).sum(axis=1)
                return float(np.argmin(errors) + 1)
    except ImageReadError:
        pass
    return float("nan")


def _luminance_table(seg: bytes) -> np.ndarray | None:
    """Table id 0 of a DQT segment's payload, in natural (not zig-zag) order, or None."""
    p = 0
    while p < len(seg):
        precision, table_id = seg[p] >> 4, seg[p] & 0x0F
        n = 128 if precision else 64
        raw = seg[p + 1:p + 1 + n]
        values = np.frombuffer(raw, ">u2") if precision else np.frombuffer(raw, np.uint8)
        if table_id == 0 and values.size == 64:
            natural = np.empty(64, np.float64)
            natural[_ZIGZAG] = values  # tables are stored in zig-zag order
            return natural
        p += 1 + n
    return None


_STD_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64)


_ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
    20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58,
    59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63])


def _ijg_tables() -> np.ndarray:
    out = np.empty((100, 64))
    for q in range(1, 101):
        scale = 5000 / q if q < 50 else 200 - 2 * q
        out[q - 1] = np.clip(np.floor((_STD_LUMINANCE * scale + 50) / 100), 1, 255)
    return out


_IJG_TABLES = _ijg_tables()

