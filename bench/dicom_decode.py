"""Decode throughput per DICOM transfer syntax, next to the uncompressed reading of the same pixels.

Usage: ``.venv/bin/python bench/dicom_decode.py [--quick] [--size N] [--repeat K]``

One 12-bit film (a real chest film from ``../shared/datasets/cxr3-fullres`` when present, scaled
to N x N and to 12 bits; else a synthetic film) is written once in each syntax: pydicom's encoders
for deflated, RLE, JPEG-LS and JPEG 2000, Debian's dcmtk (``dcmcjpeg``) for the JPEG processes
(skipped when absent). Each file is then decoded K times from memory by ``decode_film`` (the
whole path: header, pydicom, plugin, LUTs, 8-bit stretch), one film at a time on one thread.
``--quick`` is N = 512, K = 5; the default is N = 2048, K = 10 (about a CXR's size).

Prints one line a syntax (films/s, ms a film, ratio to uncompressed, compression ratio, max
error in grey levels against the uncompressed film); the LAST line is JSON:
``{"size": N, "repeat": K, "films_per_s": {syntax: ...}, "vs_uncompressed": {syntax: ...},
"compression": {syntax: ...}, "max_err": {syntax: ...}, "skipped": {syntax: reason}}``.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FULLRES = ROOT.parent / "shared" / "datasets" / "cxr3-fullres"

PYDICOM_SYNTAXES = {  # name: (uid, encoder keyword arguments)
    "deflated": ("1.2.840.10008.1.2.1.99", None),
    "rle": ("1.2.840.10008.1.2.5", {}),
    "jpeg_ls_lossless": ("1.2.840.10008.1.2.4.80", {}),
    "jpeg_ls_near_lossless": ("1.2.840.10008.1.2.4.81", {"jls_error": 3}),
    "j2k_lossless": ("1.2.840.10008.1.2.4.90", {}),
    "j2k_lossy_10x": ("1.2.840.10008.1.2.4.91", {"j2k_cr": [10]}),
}
DCMTK_SYNTAXES = {  # name: dcmcjpeg options
    "jpeg_lossless_p14": ["--encode-lossless"],
    "jpeg_lossless_sv1": ["--encode-lossless-sv1"],
    "jpeg_extended_12bit": ["--encode-extended", "+sr", "--quality", "95"],
}


def source_film(size: int) -> tuple[np.ndarray, str]:
    """A 12-bit film of ``size`` x ``size`` and where it came from."""
    import cv2

    films = sorted(FULLRES.rglob("*.png"))[:1] if FULLRES.is_dir() else []
    if films:
        grey = cv2.imread(str(films[0]), cv2.IMREAD_GRAYSCALE)
        origin = f"{films[0].name} (real film)"
    else:
        from cxrlib.data.synthetic import synthetic_film

        grey, origin = synthetic_film("Normal", 256, np.random.default_rng(0)), "synthetic film"
    grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.uint16) * 16
    noise = np.random.default_rng(1).integers(0, 16, grey.shape)  # 12 bits, not 8 bits x 16
    return np.clip(grey + noise, 0, 4095).astype(np.uint16), origin


def dataset(arr: np.ndarray):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.set_pixel_data(arr, "MONOCHROME2", 12)
    return ds


def to_bytes(ds) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def encodings(arr: np.ndarray, tmp: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    files, skipped = {"uncompressed": to_bytes(dataset(arr))}, {}
    for name, (uid, kw) in PYDICOM_SYNTAXES.items():
        ds = dataset(arr)
        if kw is None:
            ds.file_meta.TransferSyntaxUID = uid
        else:
            ds.compress(uid, **kw)
        files[name] = to_bytes(ds)
    dcmcjpeg = shutil.which("dcmcjpeg")
    src = tmp / "src.dcm"
    src.write_bytes(files["uncompressed"])
    for name, options in DCMTK_SYNTAXES.items():
        if not dcmcjpeg:
            skipped[name] = "dcmtk's dcmcjpeg not installed"
            continue
        out = tmp / f"{name}.dcm"
        subprocess.run([dcmcjpeg, *options, str(src), str(out)], check=True, capture_output=True)
        files[name] = out.read_bytes()
    return files, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 px, 5 decodes a syntax")
    parser.add_argument("--size", type=int)
    parser.add_argument("--repeat", type=int)
    args = parser.parse_args(argv)
    size = args.size or (512 if args.quick else 2048)
    repeat = args.repeat or (5 if args.quick else 10)

    from cxrlib.data.imageio import decode_film

    arr, origin = source_film(size)
    with tempfile.TemporaryDirectory(prefix="cxr-dicom-bench-") as tmp:
        files, skipped = encodings(arr, Path(tmp))
    reference = decode_film(files["uncompressed"], "u.dcm").pixels.astype(int)
    result = {"size": size, "repeat": repeat, "film": origin, "films_per_s": {}, "vs_uncompressed": {},
              "compression": {}, "max_err": {}, "skipped": skipped}
    print(f"{origin}, {size} x {size} px, 12 bits; {repeat} decodes a syntax, one thread")
    for name, data in files.items():
        decode_film(data, f"{name}.dcm")  # warm: plugin import
        start = time.perf_counter()
        for _ in range(repeat):
            pixels = decode_film(data, f"{name}.dcm").pixels
        seconds = (time.perf_counter() - start) / repeat
        result["films_per_s"][name] = round(1 / seconds, 1)
        result["compression"][name] = round(len(files["uncompressed"]) / len(data), 2)
        result["max_err"][name] = int(np.abs(pixels.astype(int) - reference).max())
    base = result["films_per_s"]["uncompressed"]
    for name, rate in result["films_per_s"].items():
        result["vs_uncompressed"][name] = round(rate / base, 3)
        print(f"{name:24s} {rate:8.1f} films/s {1000 / rate:8.1f} ms  x{rate / base:6.3f} of uncompressed  "
              f"compression {result['compression'][name]:5.2f}:1  max error {result['max_err'][name]} levels")
    for name, why in skipped.items():
        print(f"{name:24s} skipped: {why}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
