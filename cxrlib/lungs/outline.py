"""The lung outline drawn over an image: the one drawing of a mask that every view uses.

The audit gallery, the Explain page's "lung outline" and the Preprocessing preview all draw a
mask the same way, so that one outline means one thing everywhere: the boundary of the pixels
that the figures beside it count as lung.
"""
from __future__ import annotations

import cv2
import numpy as np

OUTLINE_RGB = (0, 255, 120)  # a green no colormap of the overlays uses at its ends


def draw_lung_outline(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = OUTLINE_RGB,
                      thickness: int | None = None) -> np.ndarray:
    """The boundary of ``mask`` drawn over ``image``.

    Args:
        image: ``uint8`` grey ``(H, W)`` or RGB ``(H, W, 3)``.
        mask: ``bool (H, W)``, the same size as ``image`` (no resizing here: a caller that
            shows a mask at another size than it was computed at must say so itself).
        colour: RGB of the line.
        thickness: line width in pixels (default: about 1/250 of the longer side, at least 1).

    Returns:
        ``uint8 (H, W, 3)`` RGB; ``image`` is not changed.

    Raises:
        ValueError: mask and image differ in size.
    """
    image = np.asarray(image)
    mask = np.asarray(mask).astype(bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image[..., :3].copy()
    rgb = np.ascontiguousarray(rgb)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    width = thickness or max(1, round(max(mask.shape) / 250))
    cv2.drawContours(rgb, contours, -1, tuple(int(c) for c in colour), width, cv2.LINE_8)
    return rgb
