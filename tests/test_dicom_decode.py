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


# ------------------------------------------------------------------ palette
def _palette_dataset(red: np.ndarray, green: np.ndarray, blue: np.ndarray, idx: np.ndarray) -> Dataset:
    ds = dataset(idx, bits=8)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    for colour, lut in (("Red", red), ("Green", green), ("Blue", blue)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut.astype("<u2").tobytes())
    return ds


def test_palette_color_applies_the_palette(tmp_path):
    idx = EXPECTED  # stored indices 0..255
    inverting = (255 - np.arange(256)) * 257  # a grey palette that inverts
    path = save(_palette_dataset(inverting, inverting, inverting, idx), tmp_path / "pal.dcm")
    film = read_film(path)
    assert film.pixels.shape == (64, 64)  # a grey palette gives a grey film
    np.testing.assert_array_equal(film.pixels, 255 - idx)
    assert np.corrcoef(film.pixels.ravel(), idx.ravel())[0, 1] < -0.999  # read as stored it was +1

    ramp = np.arange(256) * 257
    path = save(_palette_dataset(ramp, ramp[::-1], np.zeros(256), idx), tmp_path / "colour.dcm")
    pixels = read_film(path).pixels
    assert pixels.shape == (64, 64, 3)
    np.testing.assert_array_equal(pixels[..., 0], idx)
    np.testing.assert_array_equal(pixels[..., 1], 255 - idx)
    assert not pixels[..., 2].any()


# ------------------------------------------------------------------ pixel padding
def _padded_reference(values: np.ndarray, pad: np.ndarray, invert: bool = False) -> np.ndarray:
    """The stretch over the film's own pixels only; padding black."""
    v = values.astype(np.float64)
    lo, hi = v[~pad].min(), v[~pad].max()
    out = np.clip(np.round((v - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    out = 255 - out if invert else out
    out[pad] = 0
    return out


def _border(width: int = 6) -> np.ndarray:
    pad = np.ones(FILM.shape, bool)
    pad[width:-width, width:-width] = False
    return pad


def test_pixel_padding_value_is_kept_out_of_the_stretch_and_shown_black(tmp_path):
    pad = _border()
    arr = FILM.copy()
    arr[pad] = 0
    path = save(dataset(arr, PixelPaddingValue=0), tmp_path / "pad.dcm")
    pixels = read_film(path).pixels
    np.testing.assert_array_equal(pixels, _padded_reference(arr, pad))
    assert pixels[~pad].max() == 255 and pixels[~pad].min() == 0  # the film keeps the full range
    assert not pixels[pad].any()
    # without the padding tag the border takes part in the stretch (what happened before)
    assert read_film(save(dataset(arr), tmp_path / "plain.dcm")).pixels[~pad].min() > 0


def test_pixel_padding_range_limit_on_monochrome1_and_on_signed_pixels(tmp_path):
    pad = _border(4)
    arr = FILM.copy()
    arr[pad] = np.random.default_rng(3).integers(4000, 4096, int(pad.sum()))
    path = save(dataset(arr, "MONOCHROME1", PixelPaddingValue=4095, PixelPaddingRangeLimit=4000),
                tmp_path / "range.dcm")
    pixels = read_film(path).pixels
    np.testing.assert_array_equal(pixels, _padded_reference(arr, pad, invert=True))
    assert not pixels[pad].any()  # black, not white, after the MONOCHROME1 inversion

    signed = (FILM.astype(np.int32) - 2048).astype(np.int16)
    signed[pad] = -2048
    ds = dataset(signed, PixelPaddingValue=-2048, RescaleIntercept=1024)
    ds.compress("1.2.840.10008.1.2.5")
    pixels = read_film(save(ds, tmp_path / "signed.dcm")).pixels
    np.testing.assert_array_equal(pixels, _padded_reference(signed, pad))


# ------------------------------------------------------------------ multi-frame
def test_multi_frame_decodes_only_the_first_frame_with_a_warning(tmp_path, monkeypatch):
    from pydicom.pixels.decoders import RLELosslessDecoder

    frames = np.stack([FILM, FILM[::-1], FILM[:, ::-1], 4095 - FILM])
    ds = dataset(frames)
    ds.compress("1.2.840.10008.1.2.5")
    path = save(ds, tmp_path / "multi.dcm")
    decoded = []
    plugin = RLELosslessDecoder._available["pydicom"]
    monkeypatch.setitem(RLELosslessDecoder._available, "pydicom",
                        lambda src, runner: decoded.append(1) or plugin(src, runner))
    film = read_film(path)
    np.testing.assert_array_equal(film.pixels, EXPECTED)
    assert len(decoded) == 1  # one frame decoded, not four
    assert film.meta.extra["decoder_warnings"] == ["multi-frame DICOM: only the first of 4 frames is read"]

    # the pixel cap counts every frame, at the header scan and at decode
    cap = 4 * 64 * 64 - 1
    expected = "image too large: 64 x 64 x 4 frames = 0.0 MP exceeds the limit of 0.0 MP"
    assert reason(read_header, path, max_pixels=cap) == expected
    assert reason(read_film, path, max_pixels=cap) == expected
    assert read_film(path, max_pixels=cap + 1).pixels.shape == (64, 64)


# ------------------------------------------------------------------ no pixel data
def test_an_sr_and_a_dicomdir_are_not_images_named_by_their_sop_class(tmp_path):
    from pydicom.uid import ComprehensiveSRStorage, MediaStorageDirectoryStorage

    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID = ComprehensiveSRStorage
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID = generate_uid()
    sr.Modality, sr.ValueType = "SR", "CONTAINER"
    path = save(sr, tmp_path / "report.dcm")
    expected = ("not an image: a DICOM Comprehensive SR Storage (1.2.840.10008.5.1.4.1.1.88.33) "
                "without pixel data")
    assert reason(read_header, path) == expected and reason(read_film, path) == expected

    dicomdir = Dataset()
    dicomdir.file_meta = FileMetaDataset()
    dicomdir.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dicomdir.file_meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    dicomdir.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dicomdir.FileSetID, dicomdir.DirectoryRecordSequence = "CXR", []
    path = save(dicomdir, tmp_path / "DICOMDIR")
    expected = "not an image: a DICOM Media Storage Directory Storage (1.2.840.10008.1.3.10) without pixel data"
    assert reason(read_header, path) == expected and reason(read_film, path) == expected


# ------------------------------------------------------------------ undecodable syntaxes
def test_a_syntax_without_a_decoder_names_itself_and_the_fix_in_one_line(tmp_path, monkeypatch):
    from pydicom.encaps import encapsulate
    from pydicom.pixels.decoders import JPEGLSLosslessDecoder

    ds = dataset(FILM)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.65"  # hierarchical JPEG: no decoder in pydicom
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xde" + bytes(64) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    path = save(ds, tmp_path / "hierarchical.dcm")
    assert read_header(path).width == 64  # the header is fine; the pixels cannot be read
    assert reason(read_film, path) == (
        "cannot decode DICOM pixel data: transfer syntax 1.2.840.10008.1.2.4.65 (JPEG Lossless, Hierarchical "
        "(Process 28)) has no decoder in pydicom; convert the file to an uncompressed or JPEG Lossless syntax first "
        "(e.g. with dcmtk's dcmconv or gdcmconv)")

    path = _compressed("1.2.840.10008.1.2.4.80")(tmp_path)
    monkeypatch.setattr(JPEGLSLosslessDecoder, "_available", {})  # as on a machine without pyjpegls
    assert reason(read_film, path) == (
        "cannot decode DICOM pixel data: transfer syntax 1.2.840.10008.1.2.4.80 (JPEG-LS Lossless Image "
        "Compression) needs a decoder that is not installed: pip install pyjpegls (pinned in requirements.txt)")


def test_jpeg_ls_prefers_pyjpegls_and_falls_back_to_pydicoms_order(tmp_path, monkeypatch):
    from pydicom.pixels.decoders import JPEGLSLosslessDecoder

    path = _compressed("1.2.840.10008.1.2.4.80")(tmp_path)
    used = []
    for name, plugin in list(JPEGLSLosslessDecoder._available.items()):
        monkeypatch.setitem(JPEGLSLosslessDecoder._available, name,
                            lambda src, runner, name=name, plugin=plugin: used.append(name) or plugin(src, runner))
    np.testing.assert_array_equal(read_film(path).pixels, EXPECTED)
    assert used == ["pyjpegls"]
    monkeypatch.delitem(JPEGLSLosslessDecoder._available, "pyjpegls")  # as without pyjpegls
    np.testing.assert_array_equal(read_film(path).pixels, EXPECTED)
    assert used == ["pyjpegls", "pylibjpeg"]
