"""DICOM pixel data: which transfer syntaxes decode, and how a DICOM film becomes uint8 pixels.

pydicom reads the file; its pixel-data plugins decode the compressed syntaxes (docs/dicom.md):
Pillow (JPEG Baseline / Extended 8-bit, JPEG 2000), ``pylibjpeg`` + ``pylibjpeg-libjpeg`` (JPEG
Lossless Process 14 and SV1, 12-bit JPEG Extended), ``pylibjpeg-openjpeg`` (JPEG 2000, HTJ2K) and
``pyjpegls`` (JPEG-LS). Uncompressed, deflated and RLE Lossless need pydicom alone.

Rules on top of :mod:`cxrlib.data.imageio`'s:

* Only the first frame of a multi-frame file is decoded (``pixel_array(ds, index=0)``), with a
  warning in ``Film.meta.extra["decoder_warnings"]``; the pixel cap counts every frame
  (:func:`cxrlib.data.imageio.headers.check_size`). Uncompressed pixel data is held against the
  header before any decode: cut short, or fewer bytes than Rows x Columns x frames need, is
  unreadable at the scan already; bytes beyond what it needs are left out of the decode, and
  whole frames beyond the header's are a decoder warning.
* PALETTE COLOR films get their palette (``apply_color_lut``); a grey palette gives a grey film.
* Pixel Padding Value (and Pixel Padding Range Limit) marks stored values that are not film:
  they take no part in the min-max stretch and come out black (0).
* Only the stored bits are read (pydicom); a film whose values do not fit Bits Stored (they
  wrap) gets a decoder warning (:func:`bits_beyond_stored`).
* A DICOM without pixel data (an SR, a DICOMDIR) is "not an image", named by its SOP class.
* A syntax with no decoder installed says its UID and name and what to install, in one line.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

from cxrlib.data.imageio.film import ImageMeta, ImageReadError
from cxrlib.data.imageio.pixels import stretch_to_uint8, to_uint8

PIXEL_ELEMENTS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

_LIBJPEG = "pylibjpeg pylibjpeg-libjpeg"
_OPENJPEG = "pylibjpeg pylibjpeg-openjpeg"
PLUGINS = {
    "1.2.840.10008.1.2.4.50": _LIBJPEG, "1.2.840.10008.1.2.4.51": _LIBJPEG,
    "1.2.840.10008.1.2.4.57": _LIBJPEG, "1.2.840.10008.1.2.4.70": _LIBJPEG,
    "1.2.840.10008.1.2.4.80": "pyjpegls", "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.4.90": _OPENJPEG, "1.2.840.10008.1.2.4.91": _OPENJPEG,
    "1.2.840.10008.1.2.4.201": _OPENJPEG, "1.2.840.10008.1.2.4.202": _OPENJPEG,
    "1.2.840.10008.1.2.4.203": _OPENJPEG,
}
"""Transfer syntax UID -> the pip packages (pinned in requirements.txt) whose plugin decodes it."""

NATIVE_SYNTAXES = {"1.2.840.10008.1.2": ("<", False), "1.2.840.10008.1.2.1": ("<", True),
                   "1.2.840.10008.1.2.2": (">", True)}
"""The uncompressed transfer syntaxes: byte order and whether VRs are explicit."""

FASTEST_PLUGIN = {"1.2.840.10008.1.2.4.80": "pyjpegls", "1.2.840.10008.1.2.4.81": "pyjpegls"}
"""Plugins tried first where pydicom's own order (pylibjpeg first once installed) is slower:
pyjpegls decodes JPEG-LS ~4x faster (15 vs 55 ms a 512 px film here), with the same output (a
JPEG-LS decoder is exact). Pillow decodes 8-bit JPEG Baseline ~3x faster too, but its IDCT gives
other values than libjpeg's, so pydicom's order stays there. When the plugin is missing or fails
on a file, pydicom's order is tried next."""

_NAMES = {  # syntaxes newer than pydicom 3.0's UID dictionary
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}


def syntax_name(uid: str) -> str:
    """The transfer syntax's name (``"JPEG-LS Lossless Image Compression"``), or "unknown"."""
    from pydicom.uid import UID  # noqa: PLC0415

    name = UID(uid).name
    return _NAMES.get(uid, name if name != uid else "unknown transfer syntax")


def undecodable_reason(uid: str) -> str | None:
    """One line saying that ``uid``'s pixel data cannot be decoded here and what would fix it;
    ``None`` when a decoder is installed."""
    from pydicom.pixels import get_decoder  # noqa: PLC0415

    try:
        decoder = get_decoder(uid)
    except Exception:  # noqa: BLE001 - NotImplementedError: pydicom has no decoder for this UID
        return (f"cannot decode DICOM pixel data: transfer syntax {uid} ({syntax_name(uid)}) has no "
                "decoder in pydicom; convert the file to an uncompressed or JPEG Lossless syntax "
                "first (e.g. with dcmtk's dcmconv or gdcmconv)")
    if decoder.is_available:
        return None
    packages = PLUGINS.get(uid) or "python-gdcm"
    return (f"cannot decode DICOM pixel data: transfer syntax {uid} ({syntax_name(uid)}) needs a "
            f"decoder that is not installed: pip install {packages} (pinned in requirements.txt)")


def not_an_image_reason(ds: Any, what: str = "without pixel data") -> str:
    """The reason given for a DICOM that holds no image (``what``), naming its SOP class."""
    from pydicom.uid import UID  # noqa: PLC0415

    meta = getattr(ds, "file_meta", None)
    uid = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else "") or "")
    if not uid:
        return f"not an image: a DICOM {what} (and without a SOP class)"
    name = UID(uid).name
    named = f"{name} ({uid})" if name != uid else f"SOP class {uid}"
    return f"not an image: a DICOM {named} {what}"


def has_pixel_data(ds: Any) -> bool:
    """Whether the dataset holds a pixel data element."""
    return any(element in ds for element in PIXEL_ELEMENTS)


def padding_mask(stored: np.ndarray, ds: Any) -> np.ndarray | None:
    """Where the stored values are Pixel Padding (PS3.3 C.7.5.1.1.2): the Pixel Padding Value, or
    the range from it to the Pixel Padding Range Limit. ``None`` when there is no padding."""
    value = ds.get("PixelPaddingValue")
    if value is None or stored.ndim != 2:
        return None
    limit = ds.get("PixelPaddingRangeLimit")
    bounds = [_as_stored(v, stored, ds) for v in (value, value if limit is None else limit)]
    if None in bounds:
        return None
    lo, hi = min(bounds), max(bounds)
    mask = (stored >= lo) & (stored <= hi)
    return mask if mask.any() else None


def _as_stored(value: Any, stored: np.ndarray, ds: Any) -> int | None:
    """A padding value as a stored value (an unsigned reading of a signed film's value wraps);
    ``None`` for a value that is not one number (the padding is then ignored)."""
    if isinstance(value, bytes):  # US/SS not resolved: read it as the pixels are stored
        if len(value) not in (2, 4):
            return None
        value = int(np.frombuffer(value[:2], "<i2" if stored.dtype.kind == "i" else "<u2")[0])
    try:
        value = int(value)
    except (TypeError, ValueError):  # a multi-valued or malformed element
        return None
    bits = int(ds.get("BitsAllocated", 16) or 16)
    if stored.dtype.kind == "i" and value >= 2 ** (bits - 1):
        value -= 2 ** bits
    return value


def bits_beyond_stored(ds: Any, uid: str) -> bool:
    """Whether an uncompressed 16-bit grey film's first frame has values that do not fit its
    Bits Stored (unsigned: bits above it set; signed: outside its range). The standard reads the
    stored bits alone, so such values wrap (an overlay in the pixel data, or a header lying)."""
    order = NATIVE_SYNTAXES.get(uid, (None,))[0]
    stored_bits = int(ds.get("BitsStored", 0) or 0)
    if (order is None or int(ds.get("BitsAllocated", 0) or 0) != 16 or not 0 < stored_bits < 16
            or int(ds.get("SamplesPerPixel", 1) or 1) != 1 or "PixelData" not in ds):
        return False
    count = int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0)
    data = ds.PixelData
    if not count or len(data) < 2 * count:
        return False
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        values = np.frombuffer(data, order + "i2", count=count)
        half = 1 << (stored_bits - 1)
        return bool(((values < -half) | (values >= half)).any())
    return bool((np.frombuffer(data, order + "u2", count=count) >> stored_bits).any())


def _first_frame(ds: Any, uid: str, pixel_array: Any) -> np.ndarray:
    """Frame 0 of the pixel data, through :data:`FASTEST_PLUGIN` first where it names one."""
    if uid in FASTEST_PLUGIN:
        try:
            return pixel_array(ds, index=0, decoding_plugin=FASTEST_PLUGIN[uid])
        except Exception:  # noqa: BLE001 - not installed, or failed on this file: pydicom's order
            pass
    return pixel_array(ds, index=0)


def decode_dicom(data: bytes, where: str, meta: ImageMeta) -> np.ndarray:
    """The first frame of a DICOM file's pixel data as uint8, following the module's rules.

    Raises:
        ImageReadError: no pixel data, no decoder for the syntax, corrupt pixel data or LUTs.
    """
    import pydicom  # noqa: PLC0415
    from pydicom.pixels import (apply_color_lut, apply_modality_lut, apply_voi_lut,  # noqa: PLC0415
                                pixel_array)


    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types on bad input
        raise ImageReadError(where, f"corrupt DICOM ({type(exc).__name__})") from None
    if not has_pixel_data(ds):
        raise ImageReadError(where, not_an_image_reason(ds))
    uid = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    reason = undecodable_reason(uid) if uid else None
    if reason:
        raise ImageReadError(where, reason)
    frames = int(meta.extra.get("frames", 1) or 1)  # the header's reading
    if "pixel_data_needed" in meta.extra:  # uncompressed, longer than the header needs (headers.py)
        needed = meta.extra.pop("pixel_data_needed")  # pydicom would warn on stderr, naming no file
        ds.PixelData = ds.PixelData[:needed + needed % 2]
    try:
        stored = _first_frame(ds, uid, pixel_array)
    except Exception as exc:  # corrupt or truncated pixel data: the decoder's words, on one line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[-1] if lines else type(exc).__name__
        named = f"{syntax_name(uid)}, {uid}" if uid else "no transfer syntax"
        raise ImageReadError(where, f"corrupt DICOM pixel data ({named}): {detail}") from None
    if frames > 1:
        meta.extra.setdefault("decoder_warnings", []).append(
            f"multi-frame DICOM: only the first of {frames} frames is read")
    if bits_beyond_stored(ds, uid):
        meta.extra.setdefault("decoder_warnings", []).append(
            f"pixel values use bits above Bits Stored ({int(ds.BitsStored)}): only the stored bits are "
            "read, so the film may look scrambled (an overlay in the pixel data, or a header that "
            "says too few bits)")
    if meta.extra.get("pixel_data_frames", frames) > frames:  # the header's reading (headers.py)
        meta.extra.setdefault("decoder_warnings", []).append(
            f"its pixel data holds {meta.extra['pixel_data_frames']} frames of {meta.width} x "
            f"{meta.height} px, its header says {frames}: only the first is read (the header's Rows, "
            "Columns or Number of Frames may be wrong)")
    mask = padding_mask(stored, ds)
    photometric = str(ds.get("PhotometricInterpretation", "") or "")
    if photometric == "PALETTE COLOR":
        try:
            values = apply_color_lut(stored, ds)
        except Exception as exc:  # missing / malformed palette elements
            raise ImageReadError(where, f"corrupt DICOM (bad palette: {type(exc).__name__})") from None
        if values.ndim == 3 and (values == values[..., :1]).all():
            values = values[..., 0]  # a grey palette: one channel
        grey = to_uint8(values) if mask is None else stretch_to_uint8(values, ~mask)
    elif stored.ndim == 3:  # colour (pydicom converts YBR to RGB)
        return to_uint8(stored)
    else:
        try:
            values = apply_voi_lut(apply_modality_lut(stored, ds), ds)
        except Exception as exc:  # malformed LUT / window elements: pydicom raises many types
            raise ImageReadError(where, f"corrupt DICOM (bad modality or VOI LUT: {type(exc).__name__})") from None
        values = np.asarray(values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ImageReadError(where, "corrupt DICOM (pixel values are not finite after the LUTs)")
        grey = stretch_to_uint8(values, None if mask is None else ~mask)
        if photometric == "MONOCHROME1":
            grey = 255 - grey
    if mask is not None:
        grey[mask] = 0
    return grey


PATIENT_TAGS = {"PatientName": "patient name", "PatientID": "patient id (DICOM)",
                "PatientBirthDate": "birth date"}
"""The DICOM elements that identify a patient, read only on request (:func:`patient_fields`).
Nothing else in cxrlib reads them: scans, run folders, exports and logs never hold them."""


def patient_fields(path: str) -> dict[str, str]:
    """A DICOM film's patient name, id and birth date, for a display the user asked for.

    Returns:
        ``{label: value}`` for the elements present (empty for a non-DICOM or unreadable file).
    """
    import pydicom  # noqa: PLC0415

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=list(PATIENT_TAGS))
    except Exception:  # noqa: BLE001 - not a DICOM, or unreadable: nothing to show
        return {}
    return {label: str(ds.get(tag)) for tag, label in PATIENT_TAGS.items() if str(ds.get(tag) or "")}
