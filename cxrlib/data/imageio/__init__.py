"""Read chest films (JPEG, PNG 8/16-bit, DICOM) into uint8 arrays, and read their headers fast.

Every reader either returns a :class:`Film` or raises :class:`ImageReadError` with a short human
reason; nothing else escapes, so a dataset scan can list bad files and go on.

Rules (the same for files and uploaded bytes):

* The format is recognised from the file's signature, not its name: PNG (``\\x89PNG``), JPEG
  (``FF D8``) and DICOM (``DICM`` at byte 128, or a ``.dcm``/``.dicom`` name). A folder walk
  reads image names and DICOMs by their preamble under any other name (:func:`is_film_file`).
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
  so that bone is bright in every film. Multi-frame files give their first frame (only it is
  decoded, with a warning in ``meta.extra["decoder_warnings"]``), and the pixel cap counts every
  frame. PALETTE COLOR gets its palette; Pixel Padding is left out of the stretch and shown black.
  Every standard transfer syntax decodes through pydicom's plugins (:mod:`.dicom`, docs/dicom.md).
"""
from cxrlib.data.imageio.decode import decode_film, decoder_warning, read_film, read_films
from cxrlib.data.imageio.pixels import stretch_to_uint8, to_uint8
from cxrlib.data.imageio.dicom import patient_fields
from cxrlib.data.imageio.film import (DEFAULT_MAX_PIXELS, DICOM_SUFFIXES, IMAGE_SUFFIXES,
                                      MIN_FILM_SIDE, Film, ImageMeta, ImageReadError,
                                      min_film_side)
from cxrlib.data.imageio.headers import check_min_side, check_size, is_film_file, read_header
from cxrlib.data.imageio.jpeg import jpeg_quality

__all__ = ["DEFAULT_MAX_PIXELS", "DICOM_SUFFIXES", "IMAGE_SUFFIXES", "MIN_FILM_SIDE", "Film",
           "ImageMeta", "ImageReadError", "check_min_side", "check_size", "decode_film",
           "decoder_warning", "is_film_file", "jpeg_quality", "min_film_side", "patient_fields",
           "read_film", "read_films", "read_header", "stretch_to_uint8", "to_uint8"]
