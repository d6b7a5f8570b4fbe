"""PNG bytes of a film, an overlay or a viewer layer, with optional ``tEXt`` chunks (an overlay's
method, layer, class, score and run travel with the file)."""
from __future__ import annotations

import cv2
import numpy as np


def _png_text_chunk(key: str, value: str) -> bytes:
    import struct  # noqa: PLC0415
    import zlib  # noqa: PLC0415

    data = key.encode("latin-1", "replace")[:79] + b"\0" + value.encode("latin-1", "replace")
    return (struct.pack(">I", len(data)) + b"tEXt" + data
            + struct.pack(">I", zlib.crc32(b"tEXt" + data) & 0xFFFFFFFF))


def to_png(image: np.ndarray, compression: int = 3, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes of a uint8 RGB ``(H, W, 3)``, RGBA ``(H, W, 4)`` or grey ``(H, W)`` image (e.g.
    for a download button).

    ``text``: PNG ``tEXt`` chunks (keyword -> Latin-1 text), written right after the header,
    e.g. the method, layer, class, probability and run of an overlay.

    Raises:
        ValueError: for a non-uint8 image or one OpenCV cannot encode.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"to_png needs uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 4:  # RGB2BGR would drop the alpha channel
        bgr = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    else:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise ValueError(f"could not encode an image of shape {image.shape} as PNG")
    data = buf.tobytes()
    if not text:
        return data
    end_of_header = 8 + 25  # signature, then IHDR: length, type, 13 bytes, CRC
    chunks = b"".join(_png_text_chunk(k, str(v)) for k, v in text.items())
    return data[:end_of_header] + chunks + data[end_of_header:]
