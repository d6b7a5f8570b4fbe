"""Benchmark of the lung segmenter against the human masks of cxr3-lungs, and of its speed.

Usage: ``.venv/bin/python bench/lungs.py [--data DIR] [--masks DIR] [--weights W] [--retrain]``

DIR defaults to ``../shared/datasets/cxr3`` and ``../shared/datasets/cxr3-lungs``; W to the shipped
asset. Scored on the films of the groups the weights were neither trained nor validated on (as
recorded in the asset), value-127 pixels left out of every Dice. Prints readable figures; the
LAST line is JSON:

* ``dice_mean`` (target >= 0.95; mean over films) and ``dice_per_class`` (each >= 0.93);
* ``reference_dice_mean`` (and per class): the classical threshold + morphology method that the
  first audit used (kept here only, as the reference), on the same films in the same run;
* ``ms_per_film``: one film per call (``segment_lungs``), warm, median, wall clock, on this CPU
  (target < 30), with ``cpu_ms_per_film`` beside it (a shared machine inflates wall time);
* ``films_per_s``: ``segment_batch`` over all the scored films, batches of 16, warm;
* ``train_s``: from the asset's record of the run that made the weights (``train_s_source``
  says so), or measured here with ``--retrain`` (retrains with the default configuration into a
  temporary folder and scores the new weights instead: about 20 minutes);
* ``flagged_share``, ``flagged_dice_mean``, ``unflagged_dice_mean``: the quality signal at the
  asset's threshold, on the scored films.

A missing data folder prints ``{"skipped": ...}`` and exits 0.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common

TARGETS = {"dice_mean": 0.95, "dice_per_class_min": 0.93, "ms_per_film": 30.0}


# --------------------------------------------------------------- the reference: classical method
def classical_lung_mask(film, work: int = 256):
    """The classical method the first audit used (threshold + morphology + convex hulls, with an
    ellipse prior as fallback), as it was in ``cxrlib/lungs/classical.py``; ``bool (H, W)``."""
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    grey = film if film.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(film[..., :3]), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    small = cv2.resize(grey, (work, work), interpolation=cv2.INTER_AREA).astype(np.float32)
    lo, hi = np.percentile(small, (1, 99))
    lungs = None
    if hi - lo >= 1:
        norm = cv2.GaussianBlur(np.clip((small - lo) * (255.0 / (hi - lo)), 0, 255), (0, 0), 2).astype(np.uint8)
        c0, c1 = int(0.1 * work), int(0.9 * work)
        threshold, _ = cv2.threshold(norm[c0:c1, c0:c1], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
        dark = cv2.morphologyEx((norm < threshold).astype(np.uint8), cv2.MORPH_OPEN, disk)
        lungs = _classical_pick(dark, work)
        if lungs is None:  # tightly cropped films: cut a frame and try once more
            f = int(0.04 * work)
            dark[:f], dark[-f:], dark[:, :f], dark[:, -f:] = 0, 0, 0, 0
            lungs = _classical_pick(cv2.morphologyEx(dark, cv2.MORPH_OPEN, disk), work)
    if lungs is None:  # the anatomical prior: two ellipses
        prior = np.zeros((h, w), np.uint8)
        for cx in (0.3, 0.7):
            cv2.ellipse(prior, (round(cx * w), round(0.48 * h)), (round(0.15 * w), round(0.3 * h)), 0, 0, 360, 1, -1)
        return prior.astype(bool)
    return cv2.resize(lungs, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5


def _classical_pick(dark, work):
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    n, labels, stats, centroids = cv2.connectedComponentsWithStats(dark, connectivity=8)
    best: dict[str, tuple[int, int]] = {}
    for k in range(1, n):
        x, y, bw, bh, area = stats[k]
        cx = centroids[k][0] / work
        if x == 0 or y == 0 or x + bw >= work or y + bh >= work or not (0.12 < cx < 0.48 or 0.52 < cx < 0.88):
            continue
        side = "left" if cx < 0.5 else "right"
        if area > best.get(side, (0, 0))[0]:
            best[side] = (area, k)
    if len(best) < 2:
        return None
    hulls, facts = np.zeros((work, work), np.float32), []
    for _, k in best.values():
        contours, _ = cv2.findContours((labels == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        one = np.zeros((work, work), np.uint8)
        cv2.fillPoly(one, [cv2.convexHull(np.concatenate(contours))], 1)
        hulls = np.maximum(hulls, one)
        ys = np.nonzero(one.any(axis=1))[0]
        facts.append((one.sum() / work ** 2, (ys[-1] - ys[0]) / work, ys.mean() / work))
    shares = [f[0] for f in facts]
    if (min(shares) < 0.03 or max(shares) > 0.35 or sum(shares) > 0.55 or min(shares) / max(shares) < 0.35
            or min(f[1] for f in facts) < 0.25 or not all(0.2 < f[2] < 0.8 for f in facts)):
        return None
    return hulls


# ------------------------------------------------------------------------------------- the bench
def _median_ms(fn, items, warm: int = 3) -> tuple[float, float]:
    for item in items[:warm]:
        fn(item)
    walls, cpus = [], []
    for item in items:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        fn(item)
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    return 1000 * statistics.median(walls), 1000 * statistics.median(cpus)


def _reference_dice(films, rows):
    """Dice of the classical method on every film, value-127 pixels left out (as for ours)."""
    import numpy as np  # noqa: PLC0415

    from cxrlib.lungs import dice, read_mask_levels  # noqa: PLC0415

    out = []
    for film, mask_path in zip(films, rows["mask_path"]):
        lung, ignore = read_mask_levels(mask_path, film.shape[:2])
        out.append(dice(classical_lung_mask(film), lung, ignore))
    return np.array(out)


def _speed(films, weights) -> tuple[float, float, float]:
    """(ms a film one per call, its CPU ms, films/s in batches of 16), all warm."""
    from cxrlib.lungs import segment_batch, segment_lungs  # noqa: PLC0415

    ms, cpu_ms = _median_ms(lambda f: segment_lungs(f, weights=weights), films[:40])
    segment_batch(films[:16], 16, weights=weights)
    start = time.perf_counter()
    segment_batch(films, 16, weights=weights)
    return ms, cpu_ms, len(films) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=_common.SHARED / "datasets" / "cxr3")
    parser.add_argument("--masks", type=Path, default=_common.SHARED / "datasets" / "cxr3-lungs")
    parser.add_argument("--weights", type=Path, default=None, help="a weights asset (default: shipped)")
    parser.add_argument("--retrain", action="store_true", help="retrain first and score the new weights")
    args = parser.parse_args(argv)
    if not (args.data.is_dir() and args.masks.is_dir()):
        reason = f"data folder {args.data} or masks folder {args.masks} not found"
        print(f"lungs benchmark skipped: {reason}")
        print(json.dumps({"skipped": reason}))
        return 0
    _common.isolated_env("lungs")

    from cxrlib.data.imageio import read_film  # noqa: PLC0415
    from cxrlib.lungs.data import paired_rows, unseen_by  # noqa: PLC0415
    from cxrlib.lungs.evaluate import evaluate_rows, summarise  # noqa: PLC0415
    from cxrlib.lungs.network import read_asset_meta  # noqa: PLC0415
    from cxrlib.lungs.segmenter import load_segmenter  # noqa: PLC0415

    weights = args.weights
    if args.retrain:
        from cxrlib.lungs.train import train_lung_model  # noqa: PLC0415

        weights = Path(tempfile.mkdtemp(prefix="cxr-bench-lungs-"))
        print(f"retraining with the default configuration into {weights} ...", flush=True)
        train_lung_model(args.data, args.masks, weights, command="bench/lungs.py --retrain")
    meta = read_asset_meta(weights)
    rows = paired_rows(args.data, args.masks)
    rows = rows[unseen_by(rows, meta)].reset_index(drop=True)
    print(f"{len(rows)} masked films in groups the weights were not trained or validated on "
          f"({rows['nc'].sum()} of them NC-licensed); weights {weights or 'shipped asset'}, "
          f"{meta['arch']['encoder']} U-Net at {meta['arch']['size']} px")

    segmenter = load_segmenter(weights)
    per_film = evaluate_rows(rows, segmenter)
    result = summarise(per_film)
    films = [read_film(p).pixels for p in rows["path"]]
    ref = _reference_dice(films, rows)
    ref_per_class = {k: round(float(ref[g.index].mean()), 4) for k, g in rows.groupby("label")}
    for label, value in result["dice_per_class"].items():
        print(f"  {label:16s} n={result['n_per_class'][label]:3d}  Dice {value:.4f}   classical {ref_per_class[label]:.4f}")
    print(f"  {'all':16s} n={result['n']:3d}  Dice {result['dice_mean']:.4f}   classical {ref.mean():.4f}")
    print("  worst films: " + ", ".join(f"{r.rel_path} {r.dice:.3f}" for r in per_film.nsmallest(3, "dice").itertuples()))
    print(f"quality flag (threshold {segmenter.threshold:.4f}, chosen on validation groups): "
          f"{result['flagged_share']:.1%} flagged, Dice flagged {result['flagged_dice_mean']} vs "
          f"unflagged {result['unflagged_dice_mean']}")

    ms, cpu_ms, films_per_s = _speed(films, weights)
    print(f"speed: {ms:.1f} ms a film, one per call, warm (CPU {cpu_ms:.1f} ms); batched "
          f"{films_per_s:.1f} films/s")
    train_source = ("measured by this run (--retrain)" if args.retrain
                    else "from the asset's record of the run that made these weights (not re-measured)")
    print(f"train_s {meta['train_s']} s, {train_source}")
    result.update({"reference_dice_mean": round(float(ref.mean()), 4), "reference_dice_per_class": ref_per_class,
                   "ms_per_film": round(ms, 1), "cpu_ms_per_film": round(cpu_ms, 1),
                   "films_per_s": round(films_per_s, 1), "train_s": meta["train_s"],
                   "train_s_source": "retrain" if args.retrain else "asset record"})
    met = {"dice_mean": result["dice_mean"] >= TARGETS["dice_mean"],
           "dice_per_class": min(result["dice_per_class"].values()) >= TARGETS["dice_per_class_min"],
           "ms_per_film": ms < TARGETS["ms_per_film"]}
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))
    print(json.dumps({**result, "targets_met": met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
