"""Benchmark: a film's way from a PACS study to results stored back in it, per transfer syntax.

    .venv/bin/python bench/pacs.py [--quick] [--calls 5]

Against a local Orthanc with DICOMweb (:mod:`cxrlib.dicom.local_pacs`, started and stopped
here), warm, for one film stored in each transfer syntax this machine can *encode* (explicit VR
little endian, deflated, RLE Lossless, and JPEG-LS / JPEG 2000 through pydicom's plugins; JPEG
Baseline and JPEG Lossless SV1 through dcmtk's ``dcmcjpeg`` when installed), each in a study of
its own. Per syntax, medians of ``--calls`` warm calls:

* ``retrieve_ms``: WADO-RS of the study's film into memory;
* ``decode_ms`` (and ``decode_films_per_s``): the one film reader on the retrieved dataset;
  compare with the ``explicit_le`` row, the uncompressed reading of the same pixels;
* ``predict_ms``: the one compiled forward pass on the decoded film;
* ``explain_ms``: Grad-CAM, lung fields, in-lung share and the overlay (no deletion test);
* ``results_ms``: building the lung SEG, heatmap SEG, overlay SC and SR;
* ``store_ms``: STOW-RS of those four objects;
* ``study_to_results_s``: from "study chosen" to "SR, SEG and SC stored", all of the above in
  one go (target < 3 s on this CPU).

A syntax whose film cannot be decoded here is listed with its ``error``. The model is the
published MobileNetV2 (ImageNet weights + the published head, untrained: timing does not depend
on what it learned) at 224 px when ``../shared/weights`` has the weights, else the tiny CNN. The
film is the first cxr3-fullres film of at least 2000 px when ``../shared/datasets`` has it, else
a bundled sample film. ``--quick``: 2 calls. Last line: JSON.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import ROOT, SHARED, WEIGHTS, isolated_env

FULLRES = SHARED / "datasets" / "cxr3-fullres"
TARGET_S = 3.0


class _Source:
    """What the pipeline needs of a run, for a model built here (no training)."""

    def __init__(self, model, config, classes):
        self.model, self.config, self.classes = model, config, classes
        self.id = "bench-untrained"

    def load_model(self):
        return self.model


def _film() -> tuple[str, np.ndarray]:
    import pandas as pd

    from cxrlib.data.imageio import read_film

    if (FULLRES / "manifest.csv").is_file():
        manifest = pd.read_csv(FULLRES / "manifest.csv")
        big = manifest[np.minimum(manifest.original_width, manifest.original_height) >= 2000]
        if len(big):
            return str(big.iloc[0].file), read_film(FULLRES / big.iloc[0].file).pixels
    path = sorted((ROOT / "samples" / "cxr3-sample").glob("*/*.jpg"))[0]
    return path.name, read_film(path).pixels


def _encoded(grey: np.ndarray, work: Path) -> dict[str, object]:
    """Per syntax name, the film as a dataset in that syntax (or the reason it is missing)."""
    import pydicom
    from pydicom.pixels import get_encoder
    from pydicom.uid import (DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless,
                             RLELossless)

    from cxrlib.dicom.films import film_to_dicom

    def new(ts=None):
        return film_to_dicom(grey, patient_id="BENCH", study_date="20260101", study_time="120000",
                             transfer_syntax=ts)

    out: dict[str, object] = {"explicit_le": new()}
    deflated = new()
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out["deflated"] = deflated
    for name, uid in (("rle", RLELossless), ("jpeg_ls_lossless", JPEGLSLossless),
                      ("jpeg2000_lossless", JPEG2000Lossless)):
        out[name] = new(uid) if get_encoder(uid).is_available else f"no encoder for {uid.name}"
    if shutil.which("dcmcjpeg"):
        src = work / "plain.dcm"
        new().save_as(src, enforce_file_format=True)
        for name, flag in (("jpeg_baseline", "--encode-baseline"),
                           ("jpeg_lossless_sv1", "--encode-lossless-sv1")):
            dst = work / f"{name}.dcm"
            done = subprocess.run(["dcmcjpeg", flag, str(src), str(dst)], capture_output=True)
            out[name] = pydicom.dcmread(dst) if done.returncode == 0 else "dcmcjpeg failed"
    return out


def _median_ms(fn, calls: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(calls):
        t = time.perf_counter()
        value = fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1), value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 calls per figure")
    ap.add_argument("--calls", type=int, default=5)
    args = ap.parse_args()
    calls = 2 if args.quick else args.calls
    isolated_env("pacs")
    from cxrlib.dicom.local_pacs import local_orthanc, why_no_orthanc

    if why_no_orthanc():
        print(json.dumps({"skipped": why_no_orthanc()}))
        return 0
    from cxrlib.core.classes import CLASSES
    from cxrlib.core.config import ModelConfig, PreprocessConfig, RunConfig
    from cxrlib.dicom.films import film_of_dataset
    from cxrlib.dicom.pipeline import explain_datasets, results_of
    from cxrlib.dicom.web import PacsClient
    from cxrlib.evaluation.predict import predict_films
    from cxrlib.explain.batch import BatchSettings, explain_films, lung_segmenter
    from cxrlib.explain.methods import get_cam
    from cxrlib.models.architectures import build_model

    published = WEIGHTS.exists()
    model_cfg = ModelConfig() if published else ModelConfig(family="tiny")
    size = 224 if published else 96
    config = RunConfig(model=model_cfg, preprocess=PreprocessConfig(size=size, **(
        {} if published else {"steps": ()})))
    model = build_model(model_cfg, 3, size)
    source = _Source(model, config, CLASSES)
    settings = BatchSettings(deletion_steps=0)
    cam = get_cam(settings.explain.method, model, settings.explain.layer)
    lungs = lung_segmenter()[0]
    name, grey = _film()
    work = Path(tempfile.mkdtemp(prefix="cxr-bench-pacs-"))
    rows: dict[str, dict] = {}
    with local_orthanc(work / "orthanc") as server:
        client = PacsClient(server.settings())
        for syntax, ds in _encoded(grey, work).items():
            if isinstance(ds, str):
                rows[syntax] = {"error": ds}
                continue
            client.store([ds])
            study = str(ds.StudyInstanceUID)
            try:
                film_of_dataset(client.retrieve_films(study)[0])
            except Exception as exc:  # noqa: BLE001  (a syntax this machine cannot decode)
                rows[syntax] = {"transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
                                "error": getattr(exc, "reason", str(exc))[:200]}
                continue
            # warm every step once (the first call of each traces or loads)
            explain_datasets(source, client.retrieve_films(study), settings, model=model, cam=cam,
                             lungs=lungs)
            row = {"transfer_syntax": str(ds.file_meta.TransferSyntaxUID)}
            row["retrieve_ms"], got = _median_ms(lambda: client.retrieve_films(study)[0], calls)
            row["decode_ms"], film = _median_ms(lambda: film_of_dataset(got), calls)
            row["decode_films_per_s"] = round(1000 / max(row["decode_ms"], 1e-3), 1)
            row["predict_ms"], _ = _median_ms(
                lambda: predict_films(model, [film.pixels], config.preprocess), calls)
            row["explain_ms"], item = _median_ms(
                lambda: explain_films(source, [film.pixels], [name], settings, model=model,
                                      cam=cam, lungs=lungs)[0], calls)
            row["results_ms"], objects = _median_ms(
                lambda: results_of(source, got, film.pixels, item), calls)
            row["store_ms"], _ = _median_ms(lambda: client.store(objects.datasets()), calls)

            def whole():
                found = client.retrieve_films(study)
                done = explain_datasets(source, found, settings, model=model, cam=cam, lungs=lungs)
                return client.store([d for r in done for d in r.objects.datasets()])

            ms, _ = _median_ms(whole, calls)
            row["study_to_results_s"] = round(ms / 1000, 3)
            row["objects"] = len(objects.datasets())
            rows[syntax] = row
            print(f"{syntax:>18}: " + ", ".join(f"{k} {v}" for k, v in row.items()
                                                 if k != "transfer_syntax"), file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    timed = [r["study_to_results_s"] for r in rows.values() if "study_to_results_s" in r]
    result = {"film": name, "film_hw": list(grey.shape[:2]),
              "model": "mobilenet_v2 (published head, untrained) 224 px" if published
              else "tiny CNN 96 px (no shared weights)",
              "lungs": lungs is not None, "calls": calls, "syntaxes": rows,
              "study_to_results_s_max": max(timed) if timed else None, "target_s": TARGET_S,
              "meets_target": bool(timed) and max(timed) < TARGET_S}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
