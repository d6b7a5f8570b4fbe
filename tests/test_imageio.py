"""cxrlib.data.imageio: decoding of films the tests write themselves, header parsing, and refusals."""
from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrlib.data.imageio import ImageReadError, decode_film, read_film, read_header


# ------------------------------------------------------------------ writers independent of cv2
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(arr: np.ndarray, colour_type: int, depth: int = 8, width: int | None = None,
              height: int | None = None) -> bytes:
    """A PNG written by hand (filter 0 rows), so cv2's channel order cannot hide a mistake."""
    h, w = arr.shape[:2]
    dtype = ">u2" if depth == 16 else np.uint8
    raw = b"".join(b"\x00" + arr[y].astype(dtype).tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", width or w, height or h, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))


def minmax_reference(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.float64)
    return np.round((v - v.min()) * 255.0 / (v.max() - v.min())).astype(np.uint8)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def dicom_file(path: Path, arr: np.ndarray, photometric: str, bits_stored: int = 12, **tags) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = "DX"
    ds.set_pixel_data(arr, photometric, bits_stored)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


RNG = np.random.default_rng(7)


# ------------------------------------------------------------------ PNG
def test_png_16bit_full_range_is_minmax_stretched(tmp_path):
    arr = RNG.integers(0, 65536, (12, 17), dtype=np.uint16)
    arr[0, 0], arr[0, 1] = 0, 65535
    film = read_film(write(tmp_path / "a.png", png_bytes(arr, 0, 16)))
    assert film.pixels.dtype == np.uint8 and film.pixels.shape == (12, 17)
    assert np.array_equal(film.pixels, minmax_reference(arr))
    assert (film.meta.bit_depth, film.meta.channels, film.meta.format) == (16, 1, "PNG")


def test_png_12bit_values_in_16bit_use_the_full_8bit_range(tmp_path):
    arr = RNG.integers(200, 4000, (9, 11), dtype=np.uint16)
    arr[1, 1], arr[2, 2] = 100, 4095
    film = read_film(write(tmp_path / "b.png", png_bytes(arr, 0, 16)))
    assert film.pixels[1, 1] == 0 and film.pixels[2, 2] == 255  # a plain >> 8 would give 15
    assert np.array_equal(film.pixels, minmax_reference(arr))


def test_flat_16bit_png_does_not_divide_by_zero(tmp_path):
    arr = np.full((5, 6), 32768, np.uint16)
    film = read_film(write(tmp_path / "flat.png", png_bytes(arr, 0, 16)))
    assert np.all(film.pixels == round(32768 * 255 / 65535))


def test_rgb_and_rgba_png_come_back_in_rgb_order_without_alpha(tmp_path):
    rgba = RNG.integers(0, 256, (7, 8, 4), dtype=np.uint8)
    film = read_film(write(tmp_path / "rgba.png", png_bytes(rgba, 6)))
    assert film.pixels.shape == (7, 8, 3) and film.meta.channels == 4
    assert np.array_equal(film.pixels, rgba[..., :3])
    rgb = rgba[..., :3]
    assert np.array_equal(read_film(write(tmp_path / "rgb.png", png_bytes(rgb, 2))).pixels, rgb)


def test_grey_alpha_png_stays_two_dimensional(tmp_path):
    ga = RNG.integers(0, 256, (6, 5, 2), dtype=np.uint8)
    film = read_film(write(tmp_path / "ga.png", png_bytes(ga, 4)))
    assert film.pixels.shape == (6, 5) and np.array_equal(film.pixels, ga[..., 0])
    assert read_header(tmp_path / "ga.png").channels == 2


# ------------------------------------------------------------------ JPEG
def test_grey_jpeg_is_2d_and_matches_cv2(tmp_path):
    grey = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
    path = tmp_path / "g.jpg"
    cv2.imwrite(str(path), grey)
    film = read_film(path)
    assert film.pixels.shape == (30, 40) and film.meta.channels == 1
    assert np.array_equal(film.pixels, cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))


def test_rgb_jpeg_channel_order_is_rgb(tmp_path):
    rgb = np.zeros((32, 64, 3), np.uint8)
    rgb[:, :32] = (230, 20, 20)  # red left half
    rgb[:, 32:] = (20, 20, 230)  # blue right half
    path = tmp_path / "c.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    film = read_film(path)
    assert film.pixels.shape == (32, 64, 3) and film.meta.channels == 3
    left, right = film.pixels[:, :24].mean((0, 1)), film.pixels[:, 40:].mean((0, 1))
    assert left[0] > 200 and left[2] < 50 and right[2] > 200 and right[0] < 50


@pytest.mark.parametrize("params", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]], ids=["baseline", "progressive"])
def test_jpeg_header_matches_decoded_size(tmp_path, params):
    img = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = tmp_path / "h.jpg"
    cv2.imwrite(str(path), img, params)
    meta = read_header(path)
    assert (meta.width, meta.height, meta.channels, meta.bit_depth, meta.format) == (53, 37, 3, 8, "JPEG")
    assert meta.extra["progressive"] == bool(params)


def _with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """Insert an APP1 segment after SOI, as cameras do for EXIF."""
    seg = b"Exif\x00\x00" + payload
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + jpeg[2:]


def test_jpeg_header_skips_large_segments_and_ignores_markers_inside_them(tmp_path):
    ok, enc = cv2.imencode(".jpg", RNG.integers(0, 256, (20, 24), dtype=np.uint8))
    # Two 60 kB segments put the frame header beyond the reader's first 64 KiB window.
    data = _with_app1(_with_app1(enc.tobytes(), bytes(60000)), bytes(60000) + b"\xff\xd9" * 10)
    meta = read_header(write(tmp_path / "exif.jpg", data))
    assert (meta.width, meta.height) == (24, 20)
    assert np.array_equal(read_film(tmp_path / "exif.jpg").pixels, cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE))
    # Cut inside the scan data: the EOI inside the EXIF block must not make it look complete.
    truncated = data[: len(data) - 40]
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_header(write(tmp_path / "cut.jpg", truncated))


# ------------------------------------------------------------------ DICOM
def test_dicom_monochrome2_and_monochrome1_inversion(tmp_path):
    arr = RNG.integers(100, 3001, (16, 20), dtype=np.uint16)
    arr[0, 0], arr[0, 1] = 100, 3000
    m2 = read_film(dicom_file(tmp_path / "m2.dcm", arr, "MONOCHROME2"))
    m1 = read_film(dicom_file(tmp_path / "m1.dcm", arr, "MONOCHROME1"))
    expected = minmax_reference(arr)
    assert np.array_equal(m2.pixels, expected)
    assert np.array_equal(m1.pixels, 255 - expected)
    assert m1.pixels[0, 0] == 255 and m2.pixels[0, 0] == 0
    meta = read_header(tmp_path / "m1.dcm")
    assert (meta.width, meta.height, meta.format, meta.photometric) == (20, 16, "DICOM", "MONOCHROME1")
    assert meta.bit_depth == 16 and meta.extra["bits_stored"] == 12


def test_dicom_modality_lut_then_window_are_applied(tmp_path):
    # Stored values; with intercept -1000 they are 500, 950, 1000, 1050, 2000 in modality units.
    stored = np.repeat(np.array([[1500, 1950, 2000, 2050, 3000]], np.uint16), 4, axis=0)
    path = dicom_file(tmp_path / "w.dcm", stored, "MONOCHROME2", RescaleIntercept=-1000,
                      RescaleSlope=1, WindowCenter=1000, WindowWidth=200)
    row = read_film(path).pixels[0]

    def linear_window(x, c=1000.0, w=200.0):  # DICOM PS3.3 C.11.2.1.2, output 0..1
        return float(np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1))

    expected = [round(255 * linear_window(x)) for x in (500, 950, 1000, 1050, 2000)]
    assert row.tolist() == expected  # [0, 64, 128, 192, 255]


def test_decode_film_from_bytes_equals_read_film(tmp_path):
    arr = RNG.integers(0, 4096, (8, 9), dtype=np.uint16)
    for path in (write(tmp_path / "x.png", png_bytes(arr, 0, 16)),
                 dicom_file(tmp_path / "x.dcm", arr, "MONOCHROME1")):
        from_bytes = decode_film(path.read_bytes(), path.name)
        assert np.array_equal(from_bytes.pixels, read_film(path).pixels)


# ------------------------------------------------------------------ refusals
def _reason(fn, *args, **kw) -> str:
    with pytest.raises(ImageReadError) as info:
        fn(*args, **kw)
    assert info.value.path and info.value.reason in str(info.value)
    return info.value.reason


def test_bad_files_raise_image_read_error_with_reasons(tmp_path):
    good_png = png_bytes(RNG.integers(0, 256, (20, 20), dtype=np.uint8), 0)
    ok, good_jpg = cv2.imencode(".jpg", RNG.integers(0, 256, (20, 20), dtype=np.uint8))
    cases = {
        "empty.png": (b"", "empty file"),
        "notes.png": (b"patient list\nnot an image\n", "not an image"),
        "noise.jpg": (RNG.integers(0, 256, 500, dtype=np.uint8).tobytes(), "not an image"),
        "cut.png": (good_png[: len(good_png) // 2], "truncated PNG"),
        "cut.jpg": (good_jpg.tobytes()[:200], "truncated JPEG"),
        "badihdr.png": (b"\x89PNG\r\n\x1a\n" + bytes(40), "corrupt PNG"),
    }
    for name, (data, reason) in cases.items():
        path = write(tmp_path / name, data)
        assert reason in _reason(read_film, path), name
        assert reason in _reason(read_header, path), name
        assert reason in _reason(decode_film, data, name), name
    assert "not found" in _reason(read_film, tmp_path / "missing.png")


def test_corrupt_pixel_data_with_an_intact_header_fails_at_decode(tmp_path):
    good = png_bytes(RNG.integers(0, 256, (20, 20), dtype=np.uint8), 0)
    idat = good.index(b"IDAT")
    broken = good[: idat + 4] + bytes(60) + good[idat + 64:]
    path = write(tmp_path / "broken.png", broken)
    assert read_header(path).width == 20  # the header alone looks fine
    assert "corrupt PNG" in _reason(read_film, path)


def test_oversized_and_bomb_images_are_refused_before_decoding(tmp_path):
    small = write(tmp_path / "s.png", png_bytes(np.zeros((100, 100), np.uint8), 0))
    assert "too large" in _reason(read_film, small, max_pixels=5_000)
    assert "too large" in _reason(read_header, small, max_pixels=5_000)
    assert read_film(small, max_pixels=10_000).pixels.shape == (100, 100)
    # A header claiming 100000 x 100000 (10 gigapixels) over a few bytes of data.
    bomb = write(tmp_path / "bomb.png", png_bytes(np.zeros((1, 1), np.uint8), 0, width=100_000, height=100_000))
    start = time.perf_counter()
    assert "too large" in _reason(read_film, bomb)
    assert time.perf_counter() - start < 1.0


def test_dicom_with_an_invalid_window_is_an_image_read_error(tmp_path):
    # pydicom's apply_voi_lut raises ValueError for a zero window width; callers such as
    # predict_paths only expect ImageReadError, so it must not escape as a ValueError.
    arr = RNG.integers(0, 4096, (8, 8), dtype=np.uint16)
    path = dicom_file(tmp_path / "w.dcm", arr, "MONOCHROME2", WindowCenter=100, WindowWidth=0)
    assert "LUT" in _reason(read_film, path)


def test_a_folder_is_refused_with_a_reason_by_both_readers(tmp_path):
    assert _reason(read_film, tmp_path) == "is a folder, not a file"
    assert _reason(read_header, tmp_path) == "is a folder, not a file"
    assert _reason(read_film, tmp_path / "missing.png") == "file not found"
