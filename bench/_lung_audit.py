"""The lung figures of ``bench/audit.py``: the learned masks next to the classical ones, and a
lung-cropped run beside the plain one.

* ``cam_in_lung_share_classical`` (and ``lungs_blanked_accuracy_classical``,
  ``lungs_only_accuracy_classical``): the figures with the classical threshold method the first
  audit used (``bench/lungs.py::classical_lung_mask``, the reference kept there), run as that
  audit ran it (on the model inputs), on the same test films (those whose learned mask is not
  flagged) and the same CAMs as the learned segmenter's figures, in the same run;
* ``lung_masks``: where the learned figures' masks came from, and how many were flagged;
  ``lung_area`` (and ``lung_area_classical``): the mean share of the model input inside the
  masks, the in-lung share an evenly spread CAM would get;
* ``lung_crop``: the same run configuration with the ``lung_crop`` step (default margin),
  trained and audited (attention, masked and leave-one-source-out steps): ``cnn_accuracy``,
  ``lungs_blanked_accuracy``, ``lungs_only_accuracy``, ``cam_in_lung_share``, ``lung_area``,
  and the source-bias figures ``loso_expected_accuracy`` and ``source_probe_accuracy`` (does
  the crop remove the source signal? Teixeira et al. 2021 found cropping alone does not).
"""
from __future__ import annotations

import time


def _r(v, nd=4):
    return None if v is None or v != v else round(float(v), nd)


def classical_figures(run, dataset, report) -> dict:
    """The CAM-in-lung share per class and the lungs-blanked / lungs-only accuracies with the
    classical masks, on the films the learned figures were computed on (flagged ones left out)."""
    import numpy as np  # noqa: PLC0415

    from lungs import classical_lung_mask  # noqa: PLC0415  (bench/lungs.py)

    from cxrlib.audit import attention_summary, attention_table, masked_evaluation  # noqa: PLC0415
    from cxrlib.lungs import LungSegmentation  # noqa: PLC0415
    from cxrlib.preprocessing.tensor_cache import load_tensors  # noqa: PLC0415

    tensors = load_tensors(dataset, run.config.preprocess)
    row = {p: i for i, p in enumerate(tensors.rel_paths)}
    table = report.attention
    images = np.asarray(tensors.images[[row[p] for p in table["rel_path"]]])
    masks = np.stack([classical_lung_mask(g) for g in images])
    keep = ~table["mask_flagged"].to_numpy(bool)
    segs = [LungSegmentation(m, 1.0, not k, "classical") for m, k in zip(masks, keep)]
    model, classes = run.load_model(), tuple(run.classes)
    shares = attention_summary(attention_table(model, images, table["label"], classes,
                                               rel_paths=list(table["rel_path"]), segmentations=segs))
    masked = masked_evaluation(model, images[keep], table["label"].to_numpy()[keep], classes,
                               masks=masks[keep]).set_index("condition")["accuracy"]
    return {"cam_in_lung_share_classical": {r["label"]: _r(r["mean"]) for _, r in shares.iterrows()},
            "lung_area_classical": _r(shares.set_index("label").loc["all", "lung_area"]),
            "lungs_blanked_accuracy_classical": _r(masked["lungs blanked"]),
            "lungs_only_accuracy_classical": _r(masked["lungs only"])}


def lung_crop_figures(cfg, dataset, max_films) -> dict:
    """Train ``cfg`` with the lung crop added (default margin) and audit where it looks."""
    from cxrlib.audit import audit_run  # noqa: PLC0415
    from cxrlib.runs import runner  # noqa: PLC0415

    steps = (*cfg.preprocess.steps, "lung_crop")
    from cxrlib.lungs.network import asset_digest  # noqa: PLC0415

    crop_cfg = cfg.replace(preprocess=cfg.preprocess.replace(steps=steps, lung_model=asset_digest()))
    t0 = time.perf_counter()
    run = runner.start(crop_cfg, fingerprint=dataset.fingerprint)
    status = runner.wait(run, poll_s=0.5)
    train_s = time.perf_counter() - t0
    if status.get("state") != "done":
        return {"error": f"lung-crop run {run.id} ended {status.get('state')}: {status.get('error')}"}
    t0 = time.perf_counter()
    report = audit_run(run, dataset=dataset, steps=("attention", "masked", "loso"), max_films=max_films)
    s = report.summary()
    print(report.masked.to_string(index=False))
    print(report.attention_summary.to_string(index=False))
    return {"run_id": run.id, "steps": list(crop_cfg.preprocess.steps),
            "margin": crop_cfg.preprocess.lung_crop_margin,
            "cnn_accuracy": _r(s["cnn_accuracy"]),
            "lungs_blanked_accuracy": _r(s["lungs_blanked_accuracy"]),
            "lungs_only_accuracy": _r(s["lungs_only_accuracy"]),
            "unmasked_accuracy": _r(s["unmasked_accuracy"]),
            "cam_in_lung_share": {k: _r(v) for k, v in s["cam_in_lung_share"].items()},
            "lung_area": _r(report.attention_summary.set_index("label").loc["all", "lung_area"]),
            "loso_expected_accuracy": _r(s["loso_expected_accuracy"]),
            "source_probe_accuracy": _r(s["source_probe_accuracy"]),
            "lung_masks": s["lung_masks"], "verdicts": s["verdicts"],
            "train_s": round(train_s, 1), "audit_s": round(time.perf_counter() - t0, 1)}


def lung_figures(run, cfg, dataset, report, max_films, *, crop: bool = True) -> dict:
    """Every lung figure of the benchmark's JSON line (see the module docstring)."""
    t0 = time.perf_counter()
    out = {**classical_figures(run, dataset, report), "lung_masks": report.lung_masks,
           "lung_area": _r(report.attention_summary.set_index("label").loc["all", "lung_area"])}
    out["classical_s"] = round(time.perf_counter() - t0, 1)
    if crop:
        out["lung_crop"] = lung_crop_figures(cfg, dataset, max_films)
    return out
