"""DICOM as hospitals send it (issue 24, section 1): every transfer syntax a CR/DX film arrives in,
built here on small synthetic films and checked against the uncompressed original (exact for
lossless, within a stated tolerance for lossy); palette, pixel padding, multi-frame, files without
pixel data and a syntax that cannot be decoded.

JPEG Baseline / Extended / Lossless files are written by Debian's dcmtk (``dcmcjpeg``), an encoder
independent of the decoders under test; those cases are skipped with the reason when it is absent.
RLE, JPEG-LS and JPEG 2000 are encoded by pydicom's own encoders (``Dataset.compress``).
"""
from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cxrlib.data.imageio import ImageReadError, read_film, read_header

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,  # noqa: E402
                         SecondaryCaptureImageStorage, generate_uid)

DCMCJPEG = shutil.which("dcmcjpeg")
NO_DCMTK = "dcmtk's dcmcjpeg is not installed (apt-get install dcmtk): JPEG Baseline/Extended/Lossless cases skipped"


# ------------------------------------------------------------------ synthetic films
def film12(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth 12-bit film (values 300..3800) with a little noise: lossy codecs stay close to it."""
    y, x = np.mgrid[0:h, 0:w]
    base = 2000 + 1200 * np.sin(x / 9.0) * np.cos(y / 7.0) + 400 * (y / h)
    noise = np.random.default_rng(seed).integers(-15, 16, (h, w))
    arr = np.clip(base + noise, 300, 3800).astype(np.uint16)
    arr[0, 0], arr[-1, -1] = 300, 3800  # the range is known: the stretch is exact
    return arr


def minmax(values: np.ndarray) -> np.ndarray:
    """The 8-bit min-max stretch of the module doc, computed here on its own."""
    v = values.astype(np.float64)
    return np.round((v - v.min()) * 255.0 / (v.max() - v.min())).astype(np.uint8)


def dataset(arr: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 12, **tags) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "DX"
    ds.set_pixel_data(arr, photometric, bits)
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def save(ds: Dataset, path: Path, **kw) -> Path:
    ds.save_as(path, enforce_file_format=True, **kw)
    return path


def dcmtk(option: str, src: Path, out: Path) -> Path:
    """``dcmcjpeg option src out``; lossy modes keep the stored range (+sr) so the film keeps its values."""
    extra = ["+sr", "--quality", "95"] if option in ("--encode-baseline", "--encode-extended") else []
    subprocess.run([DCMCJPEG, option, *extra, str(src), str(out)], check=True, capture_output=True)
    return out


def reason(fn, *args, **kw) -> str:
    with pytest.raises(ImageReadError) as info:
        fn(*args, **kw)
    assert "\n" not in info.value.reason
    return info.value.reason


# ------------------------------------------------------------------ uncompressed and pydicom's encoders
FILM = film12()
EXPECTED = minmax(FILM)


def _implicit(tmp_path):
    ds = dataset(FILM)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return save(ds, tmp_path / "implicit.dcm", implicit_vr=True)


def _big_endian(tmp_path):
    ds = dataset(FILM)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = FILM.astype(">u2").tobytes()  # big endian stores its words big end first
    return save(ds, tmp_path / "big.dcm", implicit_vr=False, little_endian=False)


def _deflated(tmp_path):
    ds = dataset(FILM)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    return save(ds, tmp_path / "deflated.dcm")


def _compressed(uid: str, **kw):
    def make(tmp_path):
        ds = dataset(FILM)
        ds.compress(uid, **kw)
        return save(ds, tmp_path / f"{uid}.dcm")
    return make


def _dcmtk12(option: str):
    def make(tmp_path):
        src = save(dataset(FILM), tmp_path / "src12.dcm")
        return dcmtk(option, src, tmp_path / f"{option.strip('-')}.dcm")
    return make


# name: (maker, transfer syntax, needs dcmtk, largest |decoded - expected| in grey levels, mean)
CASES = {
    "implicit VR little endian": (_implicit, "1.2.840.10008.1.2", False, 0, 0),
    "explicit VR little endian": (lambda t: save(dataset(FILM), t / "explicit.dcm"), "1.2.840.10008.1.2.1", False, 0, 0),
    "explicit VR big endian": (_big_endian, "1.2.840.10008.1.2.2", False, 0, 0),
    "deflated": (_deflated, "1.2.840.10008.1.2.1.99", False, 0, 0),
    "RLE lossless": (_compressed("1.2.840.10008.1.2.5"), "1.2.840.10008.1.2.5", False, 0, 0),
    "JPEG-LS lossless": (_compressed("1.2.840.10008.1.2.4.80"), "1.2.840.10008.1.2.4.80", False, 0, 0),
    # near-lossless: every stored value within 3 of the original, 3 * 255 / 3500 < 1 grey level
    "JPEG-LS near-lossless": (_compressed("1.2.840.10008.1.2.4.81", jls_error=3), "1.2.840.10008.1.2.4.81",
                              False, 1, 0.5),
    "JPEG 2000 lossless": (_compressed("1.2.840.10008.1.2.4.90"), "1.2.840.10008.1.2.4.90", False, 0, 0),
    "JPEG 2000 lossy (10:1)": (_compressed("1.2.840.10008.1.2.4.91", j2k_cr=[10]), "1.2.840.10008.1.2.4.91",
                               False, 4, 1.0),
    "JPEG Lossless Process 14": (_dcmtk12("--encode-lossless"), "1.2.840.10008.1.2.4.57", True, 0, 0),
    "JPEG Lossless SV1": (_dcmtk12("--encode-lossless-sv1"), "1.2.840.10008.1.2.4.70", True, 0, 0),
    "JPEG Extended 12-bit": (_dcmtk12("--encode-extended"), "1.2.840.10008.1.2.4.51", True, 2, 0.5),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_transfer_syntax_decodes_to_the_uncompressed_film(tmp_path, name):
    make, uid, needs_dcmtk, max_err, mean_err = CASES[name]
    if needs_dcmtk and not DCMCJPEG:
        pytest.skip(NO_DCMTK)
    path = make(tmp_path)
    meta = read_header(path)
    assert meta.extra["transfer_syntax"] == uid and (meta.width, meta.height) == (64, 64)
    pixels = read_film(path).pixels
    assert pixels.dtype == np.uint8 and pixels.shape == FILM.shape
    err = np.abs(pixels.astype(int) - EXPECTED)
    if max_err == 0:
        np.testing.assert_array_equal(pixels, EXPECTED)
    else:
        assert err.max() <= max_err and err.mean() <= mean_err, (err.max(), err.mean())
        assert not np.array_equal(pixels, EXPECTED) or "lossy" not in name  # it was lossy indeed


def _grey8(tmp_path) -> tuple[np.ndarray, Path]:
    arr = (FILM >> 4).astype(np.uint8)  # 18..237
    return arr, save(dataset(arr, bits=8), tmp_path / "src8.dcm")


@pytest.mark.skipif(not DCMCJPEG, reason=NO_DCMTK)
@pytest.mark.parametrize("option, uid", [("--encode-baseline", "1.2.840.10008.1.2.4.50"),
                                         ("--encode-extended", "1.2.840.10008.1.2.4.51")])
def test_8bit_jpeg_baseline_and_extended_decode_within_two_grey_levels(tmp_path, option, uid):
    arr, src = _grey8(tmp_path)
    path = dcmtk(option, src, tmp_path / "j.dcm")
    assert read_header(path).extra["transfer_syntax"] == uid
    err = np.abs(read_film(path).pixels.astype(int) - minmax(arr))
    # quality 95: one level on average; the two planted single-pixel extremes ring a little more
    assert err.mean() <= 1.0 and np.percentile(err, 99) <= 3 and err.max() <= 10, (err.max(), err.mean())


@pytest.mark.skipif(not DCMCJPEG, reason=NO_DCMTK)
def test_jpeg_baseline_ybr_full_422_comes_back_as_rgb(tmp_path):
    grey = (np.clip(film12(), 400, 3700) >> 4).astype(np.uint8)  # no single-pixel extremes
    rgb = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    src = save(dataset(rgb, "RGB", 8), tmp_path / "rgb.dcm")
    path = dcmtk("--encode-baseline", src, tmp_path / "ybr.dcm")
    assert read_header(path).photometric == "YBR_FULL_422"
    pixels = read_film(path).pixels
    assert pixels.shape == (64, 64, 3)
    err = np.abs(pixels.astype(int) - rgb)  # colour films are not stretched
    # 4:2:2 halves the chroma's horizontal resolution: a few levels on this smooth film
    assert err.mean() <= 2.0 and np.percentile(err, 99) <= 8, (np.percentile(err, 99), err.mean())
    assert np.corrcoef(pixels[..., 1].ravel(), rgb[..., 1].ravel())[0, 1] > 0.99


def test_signed_pixels_with_a_negative_rescale_and_12_bits_in_16(tmp_path):
    signed = (FILM.astype(np.int32) - 2048).astype(np.int16)
    path = save(dataset(signed, bits=12, RescaleSlope=-1, RescaleIntercept=-100), tmp_path / "s.dcm")
    modality = -1.0 * signed - 100  # slope -1: bright becomes dark
    np.testing.assert_array_equal(read_film(path).pixels, minmax(modality))
    # 12 bits in 16: the 12-bit range fills 0..255 (a >> 8 would give 1..14)
    np.testing.assert_array_equal(read_film(save(dataset(FILM), tmp_path / "u.dcm")).pixels, EXPECTED)
    ds = dataset(signed, bits=12, RescaleSlope=-1, RescaleIntercept=-100)
    ds.compress("1.2.840.10008.1.2.4.90")  # and through a lossless codec
    np.testing.assert_array_equal(read_film(save(ds, tmp_path / "sj.dcm")).pixels, minmax(modality))
