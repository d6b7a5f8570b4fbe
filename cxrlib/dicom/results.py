"""A film's results as DICOM objects a PACS viewer opens (built with highdicom).

For one source film (a CR/DX/SC image as a pydicom dataset) and its explanation:

* the lung mask as a **SEG (BINARY)** at the film's own resolution;
* the heatmap as a **SEG (FRACTIONAL)** at the film's resolution (the CAM's relevance scaled to
  [0, 1], stored in 1/255 steps; it is not a probability, and the segment label says so);
* the overlay the product draws as a **Secondary Capture** (RGB), for viewers that show no SEG;
* a **Comprehensive SR** holding the class probabilities, the predicted class, the run id and
  model family, the CAM method and layer, the CAM's in-lung share, the lung mask's quality flag
  and the text :data:`RESEARCH_ONLY`.

Every object gets new series and SOP instance UIDs, sits in the source's study, copies its patient
and study modules (highdicom does this from the source), references the source's study, series and
SOP instance UIDs, and names the product and its version as manufacturer, model and software.
Concepts with no standard code use the local coding scheme :data:`SCHEME` ("99" prefix: private).
"""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PRODUCT = "CXR Explorer"
SCHEME = "99CXREXPL"
"""The local coding scheme designator of the concepts this product defines."""
RESEARCH_ONLY = "research use only, not a diagnosis"
SERIES_NUMBERS = {"lung_seg": 9001, "heatmap_seg": 9002, "overlay_sc": 9003, "report": 9004}
FILE_NAMES = {"lung_seg": "lung-mask-seg.dcm", "heatmap_seg": "heatmap-seg.dcm",
              "overlay_sc": "overlay-sc.dcm", "report": "report-sr.dcm"}


def product_version() -> str:
    """The product's version (``cxrlib.__version__``)."""
    from cxrlib import __version__  # noqa: PLC0415

    return __version__


@dataclass(frozen=True)
class FilmFindings:
    """What the Structured Report says about one film.

    Attributes:
        classes: class names in the model's order.
        probabilities: one per class.
        run_id: the run whose model scored the film.
        model_family: its model family (``ModelConfig.family``).
        cam_method: the CAM method's name; ``cam_layer`` the layer it explained.
        in_lung_share: the CAM's share inside the lung fields, None when not measured.
        lung_mask: where the lung mask came from and its flag, e.g. ``"predicted"``,
            ``"predicted (flagged: poor mask)"``, or ``"none"``.
        mask_flagged: the lung mask quality flag (None: no mask).
        heatmap: a note on the heatmap ("" when it is an explanation; e.g. that it is flat).
    """

    classes: Sequence[str]
    probabilities: Sequence[float]
    run_id: str
    model_family: str
    cam_method: str
    cam_layer: str
    in_lung_share: float | None = None
    lung_mask: str = "none"
    mask_flagged: bool | None = None
    heatmap: str = ""

    @property
    def predicted(self) -> str:
        """The class of the largest probability."""
        return str(self.classes[int(np.argmax(self.probabilities))])


@dataclass
class ResultObjects:
    """The DICOM objects of one film's results (absent ones are None)."""

    report: object
    heatmap_seg: object | None = None
    overlay_sc: object | None = None
    lung_seg: object | None = None
    names: dict[str, str] = field(default_factory=lambda: dict(FILE_NAMES))

    def items(self) -> list[tuple[str, object]]:
        """``(kind, dataset)`` of the objects present, SEGs and SC before the SR."""
        kinds = ("lung_seg", "heatmap_seg", "overlay_sc", "report")
        return [(k, getattr(self, k)) for k in kinds if getattr(self, k) is not None]

    def datasets(self) -> list:
        """The objects present, in :meth:`items` order."""
        return [ds for _, ds in self.items()]

    def write(self, folder: str | os.PathLike, *, output=None) -> list[Path]:
        """Write each object as a DICOM file (Part 10) into ``folder``, all or none, by the rules
        of ``output`` (a :class:`cxrlib.core.outputs.UserOutput`; default: no ``--overwrite``).

        Raises:
            OutputRefused: a file of that name is there without ``--overwrite`` (nothing is
                written then), or the folder is one no output may land in.
        """
        from cxrlib.core.outputs import UserOutput  # noqa: PLC0415

        folder = Path(folder)  # encode all before writing any
        return (output or UserOutput()).write_all(
            [(folder / self.names[k], to_bytes(ds)) for k, ds in self.items()])


def to_bytes(ds) -> bytes:
    """A dataset as DICOM Part 10 bytes."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _equipment() -> dict:
    version = product_version()
    return {"manufacturer": PRODUCT, "manufacturer_model_name": PRODUCT,
            "software_versions": version, "device_serial_number": f"cxrlib-{version}"}


def _algorithm(name: str, parameters: dict[str, str] | None = None):
    import highdicom as hd  # noqa: PLC0415
    from pydicom.sr.codedict import codes  # noqa: PLC0415

    return hd.AlgorithmIdentificationSequence(
        name=name, family=codes.cid7162.ArtificialIntelligence, version=product_version(),
        source=PRODUCT, parameters=parameters)


def lung_mask_seg(source, mask: np.ndarray, *, quality: float | None = None,
                  flagged: bool | None = None):
    """The lung fields as a binary SEG at the source film's resolution.

    Args:
        source: the film's pydicom dataset (its pixels need not be loaded).
        mask: ``bool (Rows, Columns)``.
        quality, flagged: the mask's quality signal and flag, written into the description.

    Raises:
        ValueError: a mask whose shape is not the film's.
    """
    import highdicom as hd  # noqa: PLC0415
    from pydicom.sr.codedict import codes  # noqa: PLC0415

    _check_shape(source, mask, "lung mask")
    note = "" if quality is None else f"; mask quality {quality:.3f}" + (
        " (flagged: poor mask)" if flagged else "")
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Lung fields",
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.Lung, algorithm_type="AUTOMATIC",
        algorithm_identification=_algorithm("CXR Explorer lung segmenter"))
    return _finish(hd.seg.Segmentation(
        source_images=[source], pixel_array=np.asarray(mask, bool).astype(np.uint8),
        segmentation_type="BINARY", segment_descriptions=[segment],
        series_instance_uid=hd.UID(), series_number=SERIES_NUMBERS["lung_seg"],
        sop_instance_uid=hd.UID(), instance_number=1, omit_empty_frames=False,
        content_label="LUNGS", content_description=f"Lung fields ({RESEARCH_ONLY}){note}"[:64],
        series_description=f"{PRODUCT} lung mask", **_equipment()), source)


def heatmap_seg(source, heatmap: np.ndarray, *, method: str, layer: str, target: str):
    """The CAM heatmap as a fractional SEG at the source film's resolution.

    Args:
        source: the film's pydicom dataset.
        heatmap: ``float (Rows, Columns)`` in [0, 1]
            (:func:`cxrlib.preprocessing.geometry.heatmap_to_film`).
        method, layer, target: the CAM method, the layer it explained and the class explained.
    """
    import highdicom as hd  # noqa: PLC0415

    _check_shape(source, heatmap, "heatmap")
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=f"{method} for {target} (relevance, not a probability)"[:64],
        segmented_property_category=hd.sr.CodedConcept("CAM", SCHEME, "Class activation map"),
        segmented_property_type=hd.sr.CodedConcept("CAM-RELEVANCE", SCHEME, "Model relevance"),
        algorithm_type="AUTOMATIC",
        algorithm_identification=_algorithm(f"CXR Explorer {method}"[:64],
                                            {"layer": layer[:64], "target": target[:64]}))
    return _finish(hd.seg.Segmentation(
        source_images=[source], pixel_array=_in_255_steps(heatmap),
        segmentation_type="FRACTIONAL", fractional_type="PROBABILITY", max_fractional_value=255,
        segment_descriptions=[segment], series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["heatmap_seg"], sop_instance_uid=hd.UID(), instance_number=1,
        omit_empty_frames=False, content_label="HEATMAP",
        content_description=f"{method} heatmap ({RESEARCH_ONLY})"[:64],
        series_description=f"{PRODUCT} heatmap", **_equipment()), source)


def _in_255_steps(heatmap: np.ndarray) -> np.ndarray:
    """The heatmap in [0, 1] rounded to the 1/255 steps the SEG stores: the same stored values,
    and highdicom's check of the values (a sort) runs about twice as fast on 256 levels."""
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0.0, 1.0)
    return (np.round(heat * 255.0) / 255.0).astype(np.float32)


def overlay_sc(source, overlay: np.ndarray, *, description: str = "heatmap overlay"):
    """The overlay (uint8 RGB at the film's size) as a Secondary Capture in the source's study."""
    import highdicom as hd  # noqa: PLC0415
    from pydicom.dataset import Dataset  # noqa: PLC0415

    overlay = np.asarray(overlay)
    if overlay.dtype != np.uint8 or overlay.ndim != 3 or overlay.shape[2] != 3:
        raise ValueError(f"the overlay must be uint8 RGB (H, W, 3), got {overlay.dtype} {overlay.shape}")
    _check_shape(source, overlay[..., 0], "overlay")
    eq = _equipment()
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=overlay, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT",
        # highdicom asks for an orientation; _finish puts back the source's, or none (unknown)
        patient_orientation=_orientation(source) or ("L", "F"), series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["overlay_sc"], sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=eq["manufacturer"], manufacturer_model_name=eq["manufacturer_model_name"],
        software_versions=eq["software_versions"], series_description=f"{PRODUCT} {description}",
        transfer_syntax_uid="1.2.840.10008.1.2.1")
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = f"{description} drawn by {PRODUCT} ({RESEARCH_ONLY})"[:1024]
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    sc.BurnedInAnnotation = "NO"
    return _finish(sc, source)


def _finish(ds, source):
    """What the validator (dciodvfy) asks of every object beyond highdicom's: the local coding
    scheme declared, an image's Patient Orientation (type 2C), and the body part (a chest is
    unpaired, so no Laterality)."""
    from pydicom.dataset import Dataset  # noqa: PLC0415

    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = f"{PRODUCT} local concepts"
    scheme.CodingSchemeResponsibleOrganization = PRODUCT
    ds.CodingSchemeIdentificationSequence = [scheme]
    if ds.Modality != "SR":
        ds.PatientOrientation = list(_orientation(source) or [])
        ds.BodyPartExamined = getattr(source, "BodyPartExamined", "") or "CHEST"
        if "Laterality" in ds and not ds.Laterality:
            del ds.Laterality
    return ds


def _orientation(source) -> tuple[str, str] | None:
    """The source's Patient Orientation, or None when it has none (then left empty: unknown)."""
    value = list(getattr(source, "PatientOrientation", None) or [])
    return (str(value[0]), str(value[1])) if len(value) == 2 and all(value) else None


def _check_shape(source, array: np.ndarray, what: str) -> None:
    want = (int(source.Rows), int(source.Columns))
    if tuple(np.shape(array)[:2]) != want:
        raise ValueError(f"the {what} is {np.shape(array)[0]} x {np.shape(array)[1]}, but the film "
                         f"is {want[0]} x {want[1]}: results must be at the film's resolution")
