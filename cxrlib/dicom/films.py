"""Films and DICOM datasets in memory: decode a retrieved instance, and wrap a film as a CR.

A dataset retrieved from a PACS is decoded by the one film reader
(:func:`cxrlib.data.imageio.decode_film`, the path uploads take), from its Part 10 bytes in
memory: nothing is written to disk.
"""
from __future__ import annotations

import numpy as np

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
"""Computed Radiography Image Storage."""


def dataset_bytes(ds) -> bytes:
    """A dataset as DICOM Part 10 bytes (its transfer syntax kept)."""
    from cxrlib.dicom.results import to_bytes  # noqa: PLC0415

    return to_bytes(ds)


def film_of_dataset(ds):
    """Decode a DICOM dataset in memory into a :class:`cxrlib.data.imageio.Film`.

    Raises:
        cxrlib.data.imageio.ImageReadError: the pixels cannot be decoded (path: the SOP
            instance UID).
    """
    from cxrlib.data.imageio import decode_film  # noqa: PLC0415

    return decode_film(dataset_bytes(ds), f"{ds.SOPInstanceUID}.dcm")


def film_to_dicom(pixels: np.ndarray, *, patient_id: str, patient_name: str = "",
                  study_uid: str | None = None, series_uid: str | None = None,
                  accession: str = "", study_date: str = "", study_time: str = "",
                  modality: str = "CR",
                  instance_number: int = 1, transfer_syntax: str | None = None):
    """A uint8 grey film as a minimal CR (or DX) dataset, e.g. to put a folder's films on a PACS.

    Args:
        pixels: ``uint8 (H, W)`` (an RGB film is averaged to grey).
        patient_id, patient_name, study_uid, series_uid, accession, study_date, study_time: the
            identity (new UIDs when None).
        modality: ``"CR"`` or ``"DX"`` (stored as CR Image Storage either way).
        transfer_syntax: compress to this syntax (pydicom's encoders: RLE Lossless, and JPEG
            2000 / JPEG-LS when their plugins are installed); None: explicit VR little endian.
    """
    from pydicom.dataset import Dataset, FileMetaDataset  # noqa: PLC0415
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: PLC0415

    grey = np.asarray(pixels)
    if grey.ndim == 3:
        grey = np.round(grey.mean(axis=2)).astype(np.uint8)
    if grey.dtype != np.uint8 or grey.ndim != 2:
        raise ValueError(f"a film must be uint8 (H, W), got {grey.dtype} {grey.shape}")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CR_STORAGE, generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient_name, patient_id, "", ""
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = study_date, study_time, accession, "1"
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, instance_number
    ds.BodyPartExamined, ds.ViewPosition, ds.PatientOrientation = "CHEST", "PA", ["L", "F"]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Manufacturer = ""
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(grey).tobytes()
    if transfer_syntax and transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax, grey)
    return ds
