"""Benchmark: warm Grad-CAM + overlay at the film's native resolution, compiled vs eager; and
the time per film of every registered CAM method.

    .venv/bin/python bench/explain.py [--calls 20] [--eager-calls 10] [--method-calls 3]

MobileNetV2 (ImageNet weights + the published head, untrained: timing does not depend on what the
head learned) from ``cxrlib.models.architectures.build_model``, on the first film of at least 2000 px in
``../shared/datasets/cxr3-fullres``. ``cam_ms``: median of a warm ``get_cam("gradcam")`` call plus
``overlay`` on the native film. ``eager_ms``: the same with a plain eager ``tf.GradientTape``
Grad-CAM written keras-io style (its own ``keras.Model(inputs, [layer.output, logits input])``),
same run. ``max_abs_diff``: largest difference between the two heatmaps. ``methods``: per
registered method, its default layer, the median of ``--method-calls`` warm calls on the film
(``ms_per_film``, the heatmap only) and whether the map was flat; ``scorecam_ms`` and
``faster_scorecam_ms`` repeat the two Score-CAM figures (target: Faster Score-CAM < 2 s a film
on a 2-core CPU). Last line: JSON.
Exits 0 with ``{"skipped": ...}`` when ``../shared`` is absent.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from _common import SHARED, WEIGHTS, isolated_env

FULLRES = SHARED / "datasets" / "cxr3-fullres"



def _film(min_side: int = 2000):
    import pandas as pd

    from cxrlib.data.imageio import read_film

    manifest = pd.read_csv(FULLRES / "manifest.csv")
    big = manifest[np.minimum(manifest.original_width, manifest.original_height) >= min_side]
    row = big.iloc[0]
    return row.file, read_film(FULLRES / row.file).pixels


def _eager_gradcam(model, layer: str, x: np.ndarray) -> np.ndarray:
    """keras-io's make_gradcam_heatmap, eager, differentiating the same logit as cxrlib (the
    output Dense layer's input times its kernel plus bias; the model's activation is not touched)."""
    import cv2
    import keras
    import tensorflow as tf

    head = model.layers[-1]
    grad_model = keras.Model(model.input, [model.get_layer(layer).output, head.input])
    with tf.GradientTape() as tape:
        acts, features = grad_model(x, training=False)
        logits = tf.matmul(features, head.kernel) + head.bias
        pred = tf.argmax(logits[0])
        score = logits[:, pred]
    grads = tape.gradient(score, acts)
    pooled = tf.reduce_mean(grads, axis=(0, 1, 2))
    cam = tf.maximum(tf.squeeze(acts[0] @ pooled[..., tf.newaxis]), 0.0).numpy()
    cam = cv2.resize(cam, x.shape[2:0:-1], interpolation=cv2.INTER_LINEAR)
    span = cam.max() - cam.min()
    return (cam - cam.min()) / span if span > 0 else np.zeros_like(cam)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--eager-calls", type=int, default=10)
    parser.add_argument("--method-calls", type=int, default=3)
    args = parser.parse_args()
    if not (FULLRES / "manifest.csv").exists() or not WEIGHTS.exists():
        print(json.dumps({"skipped": f"{FULLRES} or the shared weights not found"}))
        return 0
    isolated_env("explain", workspace=False)
    from cxrlib import explain
    from cxrlib.core.config import ModelConfig, PreprocessConfig
    from cxrlib.models.architectures import build_model
    from cxrlib.preprocessing.pipeline import preprocess_film, to_model_input

    name, film = _film()
    model = build_model(ModelConfig(), 3, 224)
    x = to_model_input(preprocess_film(film, PreprocessConfig())[None])
    cam = explain.get_cam("gradcam", model)

    def compiled() -> np.ndarray:
        heat, _ = cam(x)
        explain.overlay(film, heat[0], alpha=0.4, colormap="jet")
        return heat[0]

    def eager() -> np.ndarray:
        heat = _eager_gradcam(model, cam.layer, x)
        explain.overlay(film, heat, alpha=0.4, colormap="jet")
        return heat

    t0 = time.perf_counter()
    heat_compiled = compiled()
    first_ms = (time.perf_counter() - t0) * 1e3
    heat_eager = eager()

    def median_ms(fn, n: int) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        return float(np.median(times))

    overlay_ms = median_ms(lambda: explain.overlay(film, heat_compiled), args.calls)
    cam_ms = median_ms(compiled, args.calls)
    eager_ms = median_ms(eager, args.eager_calls)
    methods = {}
    for method_name in explain.CAM_METHODS:
        method = explain.get_cam(method_name, model)
        flat = bool(method.explain(x).flat[0])  # the first call also traces
        methods[method_name] = {"layer": method.layer, "flat": flat, "ms_per_film": round(
            median_ms(lambda: method(x), args.method_calls), 1)}
    result = {
        "film": name, "film_hw": list(film.shape[:2]), "layer": cam.layer, "score": cam.score,
        "first_call_ms": round(first_ms, 1), "cam_ms": round(cam_ms, 1),
        "overlay_ms": round(overlay_ms, 1), "eager_ms": round(eager_ms, 1),
        "speedup": round(eager_ms / cam_ms, 2),
        "max_abs_diff": float(np.abs(heat_compiled - heat_eager).max()),
        "scorecam_ms": methods["scorecam"]["ms_per_film"],
        "faster_scorecam_ms": methods["faster-scorecam"]["ms_per_film"], "methods": methods,
        "calls": args.calls, "eager_calls": args.eager_calls, "method_calls": args.method_calls,
        "targets": {"cam_ms": "< 60", "speedup": ">= 5", "faster_scorecam_ms": "< 2000"},
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
