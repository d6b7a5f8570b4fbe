"""``audit_run``: every audit of one run in one call, for the Audit page and the CLI."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from cxrlib.audit.findings import Finding, finding
from cxrlib.audit.attention import (attention_audit, attention_gallery, attention_summary,
                                    gallery_films, lung_fields_of, lung_mask_counts, masks_used)
from cxrlib.data.duplicates import find_duplicate_pairs, clusters_from_pairs, split_leakage
from cxrlib.data.film_scan import scan_films
from cxrlib.audit.generalisation import generalisation_audit
from cxrlib.audit.generalisation import verdicts as generalisation_verdicts
from cxrlib.audit.masked_eval import masked_evaluation, shortcut_verdict
from cxrlib.audit.metadata_baseline import MetadataBaseline, metadata_baseline
from cxrlib.audit.per_source import external_check, per_source_metrics
from cxrlib.evaluation.core import json_number, json_records, own_test_accuracy

STEPS = ("duplicates", "metadata", "attention", "masked", "per_source", "subgroups", "loso")


@dataclass
class AuditReport:
    """Everything the Audit page shows for one run (empty DataFrames / None for skipped steps).

    Attributes:
        run_id: the audited run.
        cnn_accuracy: the run's own test accuracy.
        duplicate_pairs / duplicate_clusters: :func:`find_duplicate_pairs`, :func:`find_duplicates`.
        leakage: :func:`split_leakage` (``clusters``, ``patients``, ``summary``).
        metadata: the :class:`MetadataBaseline`.
        attention: per test film CAM in-lung share (:func:`attention_table`).
        attention_summary: per class mean / median (:func:`attention_summary`).
        gallery: films with the most CAM mass outside the lungs (:func:`attention_gallery`).
        gallery_films: those films exactly as scored: model input, mask and CAM
            (:class:`cxrlib.audit.attention.GalleryFilm`).
        lung_masks: which lung masks the attention and masked steps used
            (:func:`cxrlib.audit.attention.lung_mask_counts`: ``films``, ``dataset``,
            ``predicted``, ``flagged``); flagged films are left out of both steps' figures.
        masked: :func:`masked_evaluation` table over the films whose mask is not flagged, with
            the masks it used (``masks``).
        per_source: :func:`per_source_metrics` table.
        external: :func:`external_check` result (without its predictions and subgroups) or ``None``.
        external_subgroups: the external folder's subgroups (per-subgroup recall), or ``None``.
        generalisation: subgroups of the test split, leave-one-source-out and the source probe
            (:class:`cxrlib.audit.generalisation.Generalisation`), or ``None``.
        verdicts: the findings (:class:`cxrlib.audit.findings.Finding`: severity, code, text),
            most important first.
        timings: seconds per step.
        skipped: films left out because they could not be decoded (a corrupt file never ends
            the audit): ``rel_path``, ``reason`` and ``step`` each.
    """

    run_id: str
    cnn_accuracy: float = float("nan")
    duplicate_pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    duplicate_clusters: pd.DataFrame = field(default_factory=pd.DataFrame)
    leakage: dict = field(default_factory=dict)
    metadata: MetadataBaseline | None = None
    attention: pd.DataFrame = field(default_factory=pd.DataFrame)
    attention_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    gallery: pd.DataFrame = field(default_factory=pd.DataFrame)
    gallery_films: list = field(default_factory=list)
    lung_masks: dict = field(default_factory=dict)
    masked: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_source: pd.DataFrame = field(default_factory=pd.DataFrame)
    external: dict | None = None
    external_subgroups: Any = None
    generalisation: Any = None
    verdicts: list[Finding] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Headline numbers as plain JSON values."""
        masked = dict(zip(self.masked.get("condition", []), self.masked.get("accuracy", [])))
        share = ({r["label"]: r["mean"] for _, r in self.attention_summary.iterrows()}
                 if len(self.attention_summary) else {})
        clusters = (int(self.duplicate_clusters["cluster_id"].nunique())
                    if len(self.duplicate_clusters) else 0)
        return {"run_id": self.run_id, "cnn_accuracy": json_number(self.cnn_accuracy),
                "metadata_accuracy": json_number(self.metadata.accuracy) if self.metadata else None,
                "metadata_balanced_accuracy": json_number(self.metadata.balanced_accuracy) if self.metadata else None,
                "majority_rate": json_number(self.metadata.majority_rate) if self.metadata else None,
                "masked": json_records(self.masked) if len(self.masked) else [],
                **_generalisation_summary(self.generalisation, self.external_subgroups),
                "duplicate_clusters": clusters,
                "leakage": self.leakage.get("summary", {}),
                "cam_in_lung_share": {k: json_number(v) for k, v in share.items()},
                "lung_masks": self.lung_masks,
                "lungs_blanked_accuracy": json_number(masked.get("lungs blanked")),
                "lungs_only_accuracy": json_number(masked.get("lungs only")),
                "unmasked_accuracy": json_number(masked.get("unmasked")),
                "external": None if self.external is None else
                {k: str(v) if k == "verdict" else v for k, v in self.external.items()},
                "verdicts": [f.text for f in self.verdicts],
                "findings": [f.to_dict() for f in self.verdicts],
                "timings": self.timings, "skipped": self.skipped}


def audit_run(run, *, dataset=None, steps: Sequence[str] = STEPS, external: str | None = None,
              cam_method: str = "gradcam", max_films: int | None = None, seed: int = 0,
              adversarial: float = 0.0, masks: str | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> AuditReport:
    """Run the audits of one finished run.

    Args:
        run: a :class:`cxrlib.runs.run.Run` (done: model, predictions and split table exist).
        dataset: the run's :class:`cxrlib.data.datasets.Dataset` (default: scanned from its config).
        steps: which of :data:`STEPS` to run.
        external: a labelled folder for the external-set check (skipped when ``None``).
        cam_method: CAM method for the attention audit.
        max_films: cap on test films for the attention and masked audits (a seeded sample);
            ``None`` for the whole test split.
        seed: seeds the sample and the metadata forest.
        adversarial: > 0 also runs leave-one-source-out with the source-adversarial head of
            that weight, to compare it with the plain head.
        masks: a folder of lung masks for the dataset's films (cxr3-lungs or Radiography DB
            layout); they, and the manifest's ``mask_path``, win over predicted masks.
        progress: ``progress(step, done, total)``.

    Returns:
        An :class:`AuditReport`.
    """
    report = AuditReport(run_id=run.id, cnn_accuracy=own_test_accuracy(run)[0])
    note = (lambda step, d, t: progress(step, d, t)) if progress else (lambda *a: None)
    if dataset is None:
        from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415

        dataset = scan_dataset(run.config.data.root, bacterial=run.config.data.bacterial)
        dataset = dataset.for_task(run.config.data.task)
    manifest = dataset.manifest.reset_index(drop=True)
    split_table = run.split_table()
    classes = tuple(run.classes)
    sig = None
    if {"duplicates", "metadata"} & set(steps):
        t = time.perf_counter()
        sig = scan_films(manifest, fingerprint=dataset.fingerprint,
                         progress=lambda d, n: note("reading films", d, n))
        report.timings["scan_films"] = time.perf_counter() - t
        films, sig = _readable(manifest, sig, report)
    if "duplicates" in steps:
        t = time.perf_counter()
        report.duplicate_pairs = find_duplicate_pairs(films, signatures=sig)
        report.duplicate_clusters = clusters_from_pairs(films, report.duplicate_pairs)
        report.leakage = split_leakage(report.duplicate_clusters, split_table)
        report.timings["duplicates"] = time.perf_counter() - t
        s = report.leakage["summary"]
        if s["leaking_clusters"] or s["leaking_patients"]:
            report.verdicts.append(finding(True, "leakage", (
                f"Leakage: {s['leaking_clusters']} near-duplicate clusters and {s['leaking_patients']} "
                f"patients have films in more than one split; test accuracy is optimistic.")))
    if "metadata" in steps:
        t = time.perf_counter()
        report.metadata = metadata_baseline(films, split_table, classes=classes, signatures=sig, seed=seed)
        report.timings["metadata"] = time.perf_counter() - t
        report.verdicts.append(report.metadata.verdict)
    if {"attention", "masked"} & set(steps):
        images, labels, rel_paths = split_images(dataset, run, split_table, max_films, seed, note,
                                                 report)
        model = run.load_model()
        t = time.perf_counter()
        segs = lung_fields_of(manifest, rel_paths, images, run.config.preprocess,
                              masks=_mask_index(masks), progress=lambda d, n: note("lung masks", d, n))
        report.lung_masks = lung_mask_counts(segs)
        trusted = np.array([not s.flagged for s in segs], bool)
        report.timings["lung_masks"] = time.perf_counter() - t
        if "attention" in steps:
            t = time.perf_counter()
            found = attention_audit(model, images, labels, classes, rel_paths=rel_paths,
                                    method=cam_method, segmentations=segs)
            report.attention = found.table
            report.attention_summary = attention_summary(report.attention)
            report.gallery = attention_gallery(report.attention)
            report.gallery_films = gallery_films(found, images, report.gallery)
            run.write_audit_attention(report.attention)  # the review queue's order, stored
            report.timings["attention"] = time.perf_counter() - t
            everything = report.attention_summary.set_index("label").loc["all"]
            overall, area = everything["mean"], everything["lung_area"]
            left_out = report.lung_masks["flagged"]
            report.verdicts.append(finding(False, "attention", (
                f"On average {overall:.0%} of the CAM mass lies inside the lungs ({1 - overall:.0%} "
                f"on borders, markers, shoulders and the rest; the lungs cover {area:.0%} of the "
                f"model input)" + (f"; {left_out} films whose lung mask is flagged as poor are "
                                   "left out" if left_out else "") + ".")))
        if "masked" in steps and trusted.any():
            t = time.perf_counter()
            report.masked = masked_evaluation(model, images[trusted], np.asarray(labels)[trusted],
                                              classes, masks=np.stack([s.mask for s in segs])[trusted])
            report.masked["masks"] = masks_used(s.source for s, ok in zip(segs, trusted) if ok)
            report.timings["masked"] = time.perf_counter() - t
            shortcut, sentence = shortcut_verdict(report.masked, len(classes))
            report.verdicts.insert(0, sentence) if shortcut else report.verdicts.append(sentence)
        elif "masked" in steps:
            report.verdicts.append(finding(False, "masked", "Masked evaluation skipped: every "
                                           "test film's lung mask is flagged as poor."))
    if "per_source" in steps:
        report.per_source = per_source_metrics(run.predictions(), manifest)
    if {"subgroups", "loso"} & set(steps):
        t = time.perf_counter()
        report.generalisation = generalisation_audit(run, dataset, steps=steps,
                                                     adversarial=adversarial, progress=note)
        report.verdicts += generalisation_verdicts(report.generalisation)
        report.timings["generalisation"] = time.perf_counter() - t
    if external:
        t = time.perf_counter()
        ext = external_check(run, external, manifest=dataset.manifest,
                             progress=lambda d, n: note("external", d, n))
        report.external = {k: v for k, v in ext.items() if k not in ("predictions", "subgroups")}
        report.external_subgroups = ext.get("subgroups")
        report.timings["external"] = time.perf_counter() - t
        report.verdicts.append(ext["verdict"])
    if report.metadata is not None and report.metadata.confounded:
        report.verdicts.insert(0, report.verdicts.pop(report.verdicts.index(report.metadata.verdict)))
    return report


def _mask_index(folder: str | None):
    from cxrlib.lungs import MaskIndex  # noqa: PLC0415

    return MaskIndex(folder) if folder else None


def _readable(manifest: pd.DataFrame, sig, report: AuditReport):
    """The manifest rows and signatures of the films that decoded; the others go to ``skipped``."""
    if not sig.skipped:
        return manifest, sig
    report.skipped += [{**s, "step": "duplicates and metadata"} for s in sig.skipped]
    bad = {s["rel_path"] for s in sig.skipped}
    keep = ~manifest["rel_path"].astype(str).isin(bad)
    return manifest[keep].reset_index(drop=True), sig.readable()


def split_images(dataset, run, split_table, max_films, seed, note, report, split="test"):
    """The preprocessed films of one ``split`` of the run (a seeded sample of ``max_films``),
    with their labels and paths; films that did not decode are left out and listed in
    ``report.skipped``."""
    from cxrlib.preprocessing.tensor_cache import load_tensors  # noqa: PLC0415

    tensors = load_tensors(dataset, run.config.preprocess, progress=lambda d, n: note("preprocessing", d, n))
    # A film that failed to decode has an all-zero row: leave it out, and say so.
    bad = {p["rel_path"]: p["reason"] for p in tensors.problems}
    row = {p: i for i, p in enumerate(tensors.rel_paths) if p not in bad}
    test = split_table[split_table["split"].astype(str) == split]  # the heatmap-trust rule: "val"
    report.skipped += [{"rel_path": p, "reason": bad[p], "step": "attention and masking"}
                       for p in test["rel_path"].astype(str) if p in bad]
    test = test[test["rel_path"].astype(str).isin(row)]
    if max_films is not None and len(test) > max_films:
        test = test.sample(max_films, random_state=seed).sort_index()
    idx = [row[p] for p in test["rel_path"].astype(str)]
    return np.asarray(tensors.images[idx]), test["label"].astype(str).tolist(), test["rel_path"].tolist()


def _generalisation_summary(gen, external_subgroups) -> dict:
    """The generalisation steps' headline numbers (``None`` where a step did not run)."""
    loso = getattr(gen, "loso", None)
    adv = getattr(gen, "loso_adversarial", None)
    probe = getattr(gen, "source_probe", None)
    sub = getattr(gen, "subgroups", None)
    return {
        "loso_expected_accuracy": json_number(loso.expected_accuracy) if loso else None,
        "loso": ({r["source"]: {"accuracy": json_number(r["held_out_accuracy"]), "n": int(r["n"])}
                  for r in loso.table.to_dict("records")} if loso else None),
        "loso_s": round(loso.seconds, 2) if loso else None,
        "adversarial_loso_expected_accuracy": json_number(adv.expected_accuracy) if adv else None,
        "source_probe_accuracy": json_number(probe["accuracy"]) if probe else None,
        "source_probe_within_class_balanced_accuracy":
            json_number(probe.get("within_class_balanced_accuracy")) if probe else None,
        "worst_subgroups": sub.worst(3) if sub is not None else None,
        "external_worst_subgroups": external_subgroups.worst(3) if external_subgroups is not None else None,
    }
