"""Trust audit: show when a model learns the source instead of the disease.

Streamlit-free; every function returns DataFrames, dicts or arrays a page can show directly.

* :mod:`~cxrlib.audit.duplicates`: near-duplicate clusters (perceptual hashes + similarity
  check) and the patients / clusters that span a run's splits.
* :mod:`~cxrlib.audit.metadata_baseline`: a classifier on non-clinical image properties only.
* :mod:`~cxrlib.lungs.classical`: classical lung-field masks and the CAM share inside them.
* :mod:`~cxrlib.audit.attention`: per-film and per-class CAM in-lung share, and a gallery.
* :mod:`~cxrlib.audit.masked_eval`: accuracy with the lungs blanked and with only the lungs.
* :mod:`~cxrlib.audit.per_source`: accuracy per source and the external-set check.
* :func:`audit_run` ties them together; :func:`main` is the ``audit`` CLI command.
"""
from cxrlib.audit.attention import attention_gallery, attention_summary, attention_table
from cxrlib.audit.duplicates import clusters_from_pairs, find_duplicate_pairs, find_duplicates, split_leakage
from cxrlib.audit.film_scan import FilmSignatures, scan_films
from cxrlib.lungs.classical import LungSegmentation, cam_in_lung_share, lung_mask, segment_lungs
from cxrlib.audit.masked_eval import blank_lungs, keep_lungs, masked_evaluation, shortcut_verdict
from cxrlib.audit.metadata_baseline import MetadataBaseline, metadata_baseline, metadata_features
from cxrlib.audit.per_source import external_check, per_source_metrics
from cxrlib.audit.report import STEPS, AuditReport, audit_run, main

__all__ = [
    "STEPS", "AuditReport", "FilmSignatures", "LungSegmentation", "MetadataBaseline",
    "attention_gallery", "attention_summary", "attention_table", "audit_run", "blank_lungs",
    "cam_in_lung_share", "clusters_from_pairs", "external_check", "find_duplicate_pairs",
    "find_duplicates", "keep_lungs", "lung_mask", "main", "masked_evaluation",
    "metadata_baseline", "metadata_features", "per_source_metrics", "scan_films", "segment_lungs",
    "shortcut_verdict", "split_leakage",
]
