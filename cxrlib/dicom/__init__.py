"""DICOM for radiologists: results as objects a PACS viewer opens, and a DICOMweb client.

* :mod:`cxrlib.dicom.results`: SEG (lung mask, heatmap) and Secondary Capture (overlay);
  :mod:`cxrlib.dicom.report`: the Structured Report, and all of a film's objects
  (``build_results``), with highdicom.
* :mod:`cxrlib.dicom.web`: QIDO-RS search, WADO-RS retrieve into memory, STOW-RS store
  (dicomweb-client), with settings from the environment (:mod:`cxrlib.dicom.settings`).
* :mod:`cxrlib.dicom.pipeline`: predict and explain datasets in memory, results per film.
* :mod:`cxrlib.dicom.local_pacs`: a throw-away local Orthanc for tests and benchmarks.
* :mod:`cxrlib.dicom.films`: films from DICOM datasets in memory, and films to DICOM.
"""
