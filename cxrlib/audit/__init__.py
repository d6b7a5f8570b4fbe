"""Trust audit: show when a model learns the source instead of the disease.

Streamlit-free; every function returns DataFrames, dicts or arrays a page can show directly.

* near-duplicate clusters and the patients / clusters that span a run's splits come from
  :mod:`cxrlib.data.duplicates` (they feed the split's group key, a data concern).
* :mod:`~cxrlib.audit.metadata_baseline`: a classifier on non-clinical image properties only.
* :mod:`~cxrlib.audit.attention`: per-film and per-class CAM in-lung share, and a gallery, with
  the learned segmenter's lung fields (or a dataset's own masks): :mod:`cxrlib.lungs`.
* :mod:`~cxrlib.audit.masked_eval`: accuracy with the lungs blanked and with only the lungs.
* :mod:`~cxrlib.audit.per_source`: accuracy per source and the external-set check (with
  per-subgroup recall of the external folder).
* :mod:`~cxrlib.audit.generalisation`: subgroups of the test split, leave-one-source-out and
  the source probe (:mod:`cxrlib.evaluation.subgroups`, :mod:`cxrlib.audit.loso`).
* :func:`audit_run` ties them together (the ``audit`` CLI command: :mod:`cxrlib.cli.audit`).
"""
from cxrlib.audit.attention import (Attention, GalleryFilm, attention_audit, attention_gallery,
                                    attention_summary, attention_table, lung_fields_of,
                                    lung_mask_counts, masks_used)
from cxrlib.lungs import LungSegmentation, cam_in_lung_share, segment_lungs
from cxrlib.audit.masked_eval import blank_lungs, keep_lungs, masked_evaluation, shortcut_verdict
from cxrlib.audit.metadata_baseline import MetadataBaseline, metadata_baseline, metadata_features
from cxrlib.audit.per_source import external_check, per_source_metrics
from cxrlib.audit.report import STEPS, AuditReport, audit_run

__all__ = [
    "STEPS", "Attention", "AuditReport", "GalleryFilm", "LungSegmentation",
    "MetadataBaseline", "attention_audit", "attention_gallery", "attention_summary",
    "attention_table", "audit_run", "blank_lungs",
    "cam_in_lung_share", "external_check", "keep_lungs", "lung_fields_of", "lung_mask_counts",
    "masked_evaluation", "masks_used",
    "metadata_baseline", "metadata_features", "per_source_metrics", "segment_lungs",
    "shortcut_verdict",
]
