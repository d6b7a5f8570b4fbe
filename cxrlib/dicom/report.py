"""The film's findings as a DICOM Comprehensive SR, and the whole set of result objects.

:func:`structured_report` writes the probabilities, the predicted class, the run, the CAM and the
lung mask's quality as an SR that references the source film; :func:`build_results` adds the SEGs
and the Secondary Capture of :mod:`cxrlib.dicom.results`; :func:`read_report` reads an SR back.
"""
from __future__ import annotations

import numpy as np

from cxrlib.dicom.results import (PRODUCT, RESEARCH_ONLY, SCHEME, SERIES_NUMBERS, FilmFindings,
                                  ResultObjects, _finish, heatmap_seg, lung_mask_seg, overlay_sc,
                                  product_version)


def structured_report(source, findings: FilmFindings):
    """The findings as a Comprehensive SR that references the source film."""
    import highdicom as hd  # noqa: PLC0415
    from pydicom.sr.codedict import codes  # noqa: PLC0415

    def concept(code: str, meaning: str):
        return hd.sr.CodedConcept(code, SCHEME, meaning)

    rel = hd.sr.RelationshipTypeValues.CONTAINS
    unit = codes.UCUM.NoUnits
    root = hd.sr.ContainerContentItem(name=concept("CXR-RESULT", f"{PRODUCT} result"))
    items = [hd.sr.TextContentItem(name=concept("DISCLAIMER", "Intended use"),
                                   value=RESEARCH_ONLY, relationship_type=rel)]
    for name, p in zip(findings.classes, findings.probabilities):
        items.append(hd.sr.NumContentItem(
            name=concept(f"P-{name}"[:16], f"Probability of {name}"), value=float(p), unit=unit,
            relationship_type=rel))
    texts = [("PREDICTED", "Predicted class", findings.predicted),
             ("RUN-ID", "Run id", findings.run_id),
             ("MODEL-FAMILY", "Model family", findings.model_family),
             ("CAM-METHOD", "CAM method", findings.cam_method),
             ("CAM-LAYER", "CAM layer", findings.cam_layer),
             ("LUNG-MASK", "Lung mask quality", findings.lung_mask),
             ("MASK-FLAG", "Lung mask flagged", "none" if findings.mask_flagged is None
              else "yes (poor mask)" if findings.mask_flagged else "no")]
    if findings.heatmap:
        texts.append(("HEATMAP", "Heatmap", findings.heatmap))
    items += [hd.sr.TextContentItem(name=concept(code, meaning), value=str(value) or "-",
                                    relationship_type=rel) for code, meaning, value in texts]
    if findings.in_lung_share is not None and np.isfinite(findings.in_lung_share):
        items.append(hd.sr.NumContentItem(
            name=concept("CAM-IN-LUNG", "CAM in-lung share"), value=float(findings.in_lung_share),
            unit=unit, relationship_type=rel))
    items.append(hd.sr.ImageContentItem(
        name=codes.DCM.SourceImage,
        referenced_sop_class_uid=source.SOPClassUID,
        referenced_sop_instance_uid=source.SOPInstanceUID, relationship_type=rel))
    root.ContentSequence = items
    report = hd.sr.ComprehensiveSR(
        evidence=[source], content=root, series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["report"], sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=PRODUCT, is_complete=True, series_description=f"{PRODUCT} report")
    report.ManufacturerModelName, report.SoftwareVersions = PRODUCT, product_version()
    return _finish(report, source)


def read_report(ds) -> dict[str, object]:
    """The findings of an SR this module wrote, by concept meaning (numbers as floats)."""
    out: dict[str, object] = {}
    for item in ds.ContentSequence:
        meaning = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "NUM":
            out[meaning] = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "TEXT":
            out[meaning] = str(item.TextValue)
    return out


def build_results(source, findings: FilmFindings, *, heatmap: np.ndarray | None = None,
                  overlay: np.ndarray | None = None, lung_mask: np.ndarray | None = None,
                  lung_quality: float | None = None, target: str | None = None) -> ResultObjects:
    """All result objects of one film (those whose input is None are left out; the SR always).
    A film without one of the :data:`REFERENCED` UIDs raises ``ValueError`` naming it.
    A type 2 attribute of the film's patient or study that is missing (:data:`TYPE_2_IDENTITY`,
    often removed whole by anonymisers) is written empty, as type 2 allows."""
    missing = [k for k in REFERENCED if not str(source.get(k, "") or "")]
    if missing:  # type 1 in every image IOD, but a hand-made or stripped file may lack them
        raise ValueError(f"its header has no {' or '.join(missing)}: a result must reference the "
                         "film's study, series and instance")
    source = _with_type_2_identity(source)
    target = target or findings.predicted
    return ResultObjects(
        report=structured_report(source, findings),
        heatmap_seg=None if heatmap is None else heatmap_seg(
            source, heatmap, method=findings.cam_method, layer=findings.cam_layer, target=target),
        overlay_sc=None if overlay is None else overlay_sc(source, overlay),
        lung_seg=None if lung_mask is None else lung_mask_seg(
            source, lung_mask, quality=lung_quality, flagged=findings.mask_flagged))


REFERENCED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
"""The film's UIDs every result references (or whose study it joins); a film without one of them
gets no results, with one line naming what it lacks."""

TYPE_2_IDENTITY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                   "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName")
"""The type 2 attributes of the Patient and General Study modules (may be empty, must be there)
that highdicom copies from a film into every object made from it."""


def _with_type_2_identity(source):
    """``source`` when it has every :data:`TYPE_2_IDENTITY` attribute; else a copy of it (its
    elements shared, the film left as it was) with the missing ones empty."""
    missing = [k for k in TYPE_2_IDENTITY if k not in source]
    if not missing:
        return source
    from pydicom.dataset import Dataset  # noqa: PLC0415

    view = Dataset()
    view.update(source)
    if hasattr(source, "file_meta"):
        view.file_meta = source.file_meta
    for keyword in missing:
        setattr(view, keyword, "")
    return view
