"""Benchmark of the preprocessing path against the published form, on full-resolution films.

Usage: ``.venv/bin/python bench/preprocess.py [--data DIR] [--workers N]``

DIR defaults to ``../shared/datasets/cxr3-fullres`` beside the repository (1024-4280 px
originals). Prints readable figures; the LAST line is JSON:

* ``wb_speedup``: (published-form white balance + grey + resize) time / ours, summed over the
  same decoded films, one film at a time; ``bit_exact`` says every output byte agreed.
* ``wb_only_speedup``: the white balance alone, published / ours.
* ``pipeline_img_per_s``: decode + white balance + CLAHE + resize into the tensor cache, all
  cores (thread pool, the default); ``pipeline_img_per_s_process`` the same with processes.
* ``cache_hit_img_per_s``: the same set read back from the tensor cache (every byte touched).
* ``preview_ms``: white balance + CLAHE on one decoded film of about 2000 x 2000 px, median.

A temporary ``CXR_WORKSPACE`` keeps the cache out of the project's ``models/``. Exit status 1
when the fast path is not bit-exact; a missing data folder prints ``{"skipped": ...}`` and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "cxr3-fullres"
TARGETS = {"wb_speedup": 20.0, "preview_ms": 50.0}


def _clock(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def _timed(fn, *args, repeat: int = 1):
    """Median wall seconds, median process CPU seconds (all threads) and the last result.

    CPU time is reported beside wall time because this machine is often shared: waiting for
    a core inflates wall time but not CPU time.
    """
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = fn(*args)
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    return statistics.median(walls), statistics.median(cpus), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset folder")
    parser.add_argument("--workers", type=int, default=None, help="decoders (default: all CPUs)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        reason = f"data folder {args.data} not found"
        print(f"preprocess benchmark skipped: {reason}")
        print(json.dumps({"skipped": reason}))
        return 0

    workspace = Path(tempfile.mkdtemp(prefix="cxr-bench-"))
    os.environ["CXR_WORKSPACE"] = str(workspace)
    sys.path.insert(0, str(ROOT))
    import cv2
    import numpy as np

    from cxrlib import preprocessing as pp
    from cxrlib.preprocessing import tensor_cache
    from cxrlib.core.config import PreprocessConfig
    from cxrlib.data.datasets import scan_dataset
    from cxrlib.data.imageio import read_film

    try:
        cpus = len(os.sched_getaffinity(0))
        dataset = scan_dataset(args.data)
        paths = list(dataset.manifest["path"])
        print(f"{len(paths)} films in {args.data}, {cpus} CPUs, OpenCV {cv2.__version__} "
              f"({cv2.getNumThreads()} threads), numpy {np.__version__}")

        decode_s, films = 0.0, []
        for path in paths:
            seconds, film = _clock(read_film, path)
            decode_s += seconds
            films.append(film.pixels)
        sides = [max(f.shape[:2]) for f in films]
        print(f"decode (one thread): {1000 * decode_s / len(films):.0f} ms/film, "
              f"sides {min(sides)}-{max(sides)} px")

        # Published form vs ours, film by film, same inputs, one call at a time.
        published = PreprocessConfig.published_mobilenet()
        perc = published.wb_percentile
        totals = dict.fromkeys(("ref", "ours", "ref_cpu", "ours_cpu", "wb_ref", "wb_ours",
                                "wb_ref_cpu", "wb_ours_cpu", "resize"), 0.0)
        bit_exact = True

        def add(name: str, fn, *fargs, repeat: int = 1):
            wall, cpu, result = _timed(fn, *fargs, repeat=repeat)
            totals[name] += wall
            totals.setdefault(name + "_cpu", 0.0)
            totals[name + "_cpu"] += cpu
            return result

        for film in films:
            ref = add("ref", pp.preprocess_reference, film, published)
            bit_exact &= np.array_equal(add("ours", pp.preprocess_film, film, published, repeat=3), ref)
            ref_wb = add("wb_ref", pp.white_balance_reference, film, perc)
            bit_exact &= np.array_equal(add("wb_ours", pp.white_balance, film, perc, repeat=3), ref_wb)
            add("resize", pp.resize_square, pp.to_grey(ref_wb), published.size, repeat=3)
        n = len(films)
        wb_speedup = totals["ref"] / totals["ours"]
        wb_only = totals["wb_ref"] / totals["wb_ours"]
        per_film = {k: 1000 * v / n for k, v in totals.items()}
        print(f"white balance + grey + resize 224: published {per_film['ref']:.0f} ms/film, ours "
              f"{per_film['ours']:.1f} ms/film -> x{wb_speedup:.1f} (CPU time: x"
              f"{totals['ref_cpu'] / totals['ours_cpu']:.1f}); bit-exact: {bit_exact}")
        print(f"  of which the INTER_AREA resize of the grey film, the same in both forms: "
              f"{per_film['resize']:.1f} ms/film")
        print(f"white balance alone: published {per_film['wb_ref']:.0f} ms/film, ours "
              f"{per_film['wb_ours']:.1f} ms/film -> x{wb_only:.1f} (CPU time: x"
              f"{totals['wb_ref_cpu'] / totals['wb_ours_cpu']:.1f})")

        # Decode + WB + CLAHE + resize into the tensor cache, all cores; then read it back.
        cfg = PreprocessConfig(steps=("white_balance", "clahe"))
        rates = {}
        for executor in ("process", "thread"):  # thread last: its entry is the one read back
            tensor_cache.clear_cache()
            seconds, entry = _clock(lambda: tensor_cache.load_tensors(  # noqa: B023
                dataset, cfg, workers=args.workers, executor=executor))
            assert not entry.hit and not entry.problems, entry.problems
            rates[executor] = n / seconds
            print(f"pipeline decode + WB + CLAHE + resize, {executor} pool: {rates[executor]:.1f} img/s")
        tensor_cache.clear_cache()
        seconds, _ = _clock(lambda: tensor_cache.load_tensors(dataset, cfg, workers=1))
        rates["one worker"] = n / seconds
        print(f"pipeline decode + WB + CLAHE + resize, one worker: {rates['one worker']:.1f} img/s")

        def read_back():
            hit = tensor_cache.load_tensors(dataset, cfg)
            assert hit.hit
            return int(np.asarray(hit.images).sum(dtype=np.int64))

        hit_s = statistics.median(_clock(read_back)[0] for _ in range(5))
        cache_rate = n / hit_s
        print(f"tensor cache hit, all bytes read: {cache_rate:.0f} img/s ({1000 * hit_s:.1f} ms for {n})")

        # The UI preview: one decoded ~2000 px film, WB + CLAHE at native size.
        film = min(films, key=lambda f: abs((f.shape[0] * f.shape[1]) ** 0.5 - 2000))  # ~4 MP
        pp.preprocess_preview(film, cfg)  # warm-up: CLAHE object, page cache
        wall, cpu, _ = _timed(pp.preprocess_preview, film, cfg, repeat=15)
        preview_ms, preview_cpu_ms = 1000 * wall, 1000 * cpu
        preview_ref_ms = 1000 * _clock(lambda: pp.clahe(pp.to_grey(
            pp.white_balance_reference(film, 0.05)), 2.0, 8))[0]
        print(f"preview WB + CLAHE on {film.shape}: {preview_ms:.1f} ms median, "
              f"{preview_cpu_ms:.1f} ms CPU "
              f"(published-form WB: {preview_ref_ms:.0f} ms)")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)

    result = {
        "films": n, "cpus": cpus, "bit_exact": bool(bit_exact),
        "wb_speedup": round(wb_speedup, 2),
        "wb_speedup_cpu": round(totals["ref_cpu"] / totals["ours_cpu"], 2),
        "wb_only_speedup": round(wb_only, 2),
        "published_ms_per_film": round(per_film["ref"], 1), "ours_ms_per_film": round(per_film["ours"], 2),
        "resize_ms_per_film": round(per_film["resize"], 2),
        "pipeline_img_per_s": round(rates["thread"], 2),
        "pipeline_img_per_s_process": round(rates["process"], 2),
        "pipeline_img_per_s_one_worker": round(rates["one worker"], 2),
        "cache_hit_img_per_s": round(cache_rate, 1),
        "preview_ms": round(preview_ms, 2), "preview_cpu_ms": round(preview_cpu_ms, 2),
        "preview_shape": list(film.shape),
        "targets_met": {"wb_speedup": wb_speedup >= TARGETS["wb_speedup"],
                        "preview_ms": preview_ms < TARGETS["preview_ms"]},
    }
    print(json.dumps(result))
    return 0 if bit_exact else 1


if __name__ == "__main__":
    sys.exit(main())
