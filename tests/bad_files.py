"""Hostile and odd input files, generated (no binary fixture is committed): the bytes of each case
of ``tests/test_bad_inputs.py``. Every function is seeded and returns ``bytes``."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from test_imageio import _chunk, dicom_file, png_bytes


def chest(seed: int, h: int = 64, w: int = 64) -> np.ndarray:
    """A smooth grey picture (blurred noise): compresses like a film, decodes exactly as PNG."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((h, w)) * 255).astype(np.uint8), (7, 7), 2)


def good_png(seed: int = 0, h: int = 64, w: int = 64) -> bytes:
    return png_bytes(chest(seed, h, w), 0)


def good_jpeg(seed: int = 0, size: int = 256) -> bytes:
    return cv2.imencode(".jpg", chest(seed, size, size), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _scan_start(jpeg: bytes) -> int:
    sos = jpeg.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big")


# ------------------------------------------------------------------ damaged
def truncated_png() -> bytes:
    data = good_png(1)
    return data[: len(data) // 2]


def bitrot_png() -> bytes:
    """Valid signature, IHDR and IEND; the IDAT chunk is garbage (with a correct CRC)."""
    rng = np.random.default_rng(2)
    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", rng.integers(0, 256, 900, dtype=np.uint8).tobytes()) + _chunk(b"IEND", b""))


def truncated_jpeg() -> bytes:
    data = good_jpeg(3)
    return data[: len(data) // 2]


def truncated_jpeg_with_eoi() -> bytes:
    data = good_jpeg(4)
    return data[: len(data) // 2] + b"\xff\xd9"


def random_scan_jpeg() -> bytes:
    data = good_jpeg(5)
    start = _scan_start(data)
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 255, len(data) - start - 2, dtype=np.uint8)  # no 0xFF: no markers
    return data[:start] + noise.tobytes() + b"\xff\xd9"


def overwritten_jpeg() -> bytes:
    """2 KiB in the middle of the scan data replaced by noise."""
    data = bytearray(good_jpeg(6, 384))
    mid = len(data) // 2
    data[mid:mid + 2048] = np.random.default_rng(6).integers(0, 255, 2048, dtype=np.uint8).tobytes()
    return bytes(data)


def bomb_png() -> bytes:
    """A header claiming 100 000 x 100 000 pixels (10 gigapixels) over a few bytes."""
    return png_bytes(np.zeros((1, 1), np.uint8), 0, width=100_000, height=100_000)


def strip_png() -> bytes:
    """20 000 px wide, 1 px high: a strip, not a film."""
    return png_bytes(np.full((1, 20_000), 128, np.uint8), 0)


def tall_strip_png() -> bytes:
    """40 px wide, 20 000 px high: above the minimum side, an extreme aspect ratio."""
    return png_bytes(np.tile(np.linspace(0, 255, 40).astype(np.uint8), (20_000, 1)), 0)


# ------------------------------------------------------------------ unusual but valid
def png16() -> bytes:
    return png_bytes(chest(7).astype(np.uint16) * 200, 0, 16)


def rgba_png() -> bytes:
    grey = chest(8)
    return png_bytes(np.dstack([grey, grey, grey, np.full_like(grey, 200)]), 6)


def palette_png() -> bytes:
    grey = chest(9)
    plte = bytes(v for i in range(256) for v in (i, i, i))
    raw = b"".join(b"\x00" + row.tobytes() for row in grey)
    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 3, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"PLTE", plte)
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def one_bit_png() -> bytes:
    bits = chest(10) > 127
    return png_bytes(np.packbits(bits, axis=1), 0, depth=1, width=64)


def text_as_png() -> bytes:
    return b"patient list\nnot an image\n"


# ------------------------------------------------------------------ DICOM
def dicom(tmp_path, photometric: str = "MONOCHROME2", **tags) -> bytes:
    arr = (chest(11).astype(np.uint16) * 16)
    return dicom_file(tmp_path / "tmp.dcm", arr, photometric, 12, **tags).read_bytes()


def dicom_without_pixel_data(tmp_path) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom(tmp_path)))
    del ds.PixelData
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom_jpeg_lossless(tmp_path) -> bytes:
    """Declared JPEG Lossless (process 14, SV1) with an encapsulated frame of garbage."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    ds = pydicom.dcmread(io.BytesIO(dicom(tmp_path)))
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + bytes(40) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
