"""Occlusion sensitivity: slide a grey patch over the image and map how much the class falls.

Zeiler & Fergus, "Visualizing and understanding convolutional networks", ECCV 2014. A square
patch of side ``patch`` is set to the image's mean value at every position of a grid with step
``stride``; a position's score is ``S_c(x) - S_c(x with the patch occluded)``, ``S_c`` the class
score the CAMs differentiate (the logit where the Keras model lets it be recovered, see
:mod:`cxrlib.explain.base`: a saturated probability would not move), else ``p_c``. A pixel's value
is the mean score of the positions whose patch covers it (as captum's ``Occlusion``), so the
map has one cell per ``stride`` pixels: at 224 px with the default patch 28 and stride 14,
15 x 15 cells, finer than a 7 x 7 CAM. It needs no layer, no gradient and no Keras: any
prediction function works (an exported TFLite model's), at one forward pass per position,
batched through the one compiled forward pass.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from cxrlib.explain.base import CAM, Explanation, as_batch, check_targets, resolve_targets
from cxrlib.explain.maps import effective_resolution, to_heatmaps

INPUT_LAYER = "input"
"""The ``layer`` that a model-agnostic method reports: it explains the input itself."""


def positions(side: int, patch: int, stride: int) -> list[int]:
    """Patch offsets along one side: every ``stride``, the last one flush with the border."""
    last = side - patch
    found = list(range(0, last + 1, stride))
    return found if found[-1] == last else [*found, last]


class Occlusion(CAM):
    """Occlusion sensitivity (the module docstring).

    Args:
        model: a Keras model, or a prediction function ``(N, S, S, 3) -> (N, C)``; never modified.
        layer: ignored (the input is what is occluded); accepted so the registry can pass one.
        patch: side of the occluding square in input pixels (``None``: an eighth of the side).
        stride: step between positions (``None``: half the patch).
        batch_size: occluded images per forward pass.
    """

    name = "occlusion"
    label = "Occlusion"
    uses_gradients = False
    uses_layer = False
    supports_eigen_smooth = False

    def __init__(self, model: Any, layer: str | None = None, *, patch: int | None = None,
                 stride: int | None = None, batch_size: int = 64) -> None:
        from cxrlib.explain.road import predictor  # noqa: PLC0415

        self.model, self.layer, self.layer_valid = model, INPUT_LAYER, True
        self.patch, self.stride, self.batch_size = patch, stride, batch_size
        self._predict = predictor(model, batch_size)
        self._engine = None
        if hasattr(model, "layers"):
            from cxrlib.explain.engine import engine  # noqa: PLC0415
            from cxrlib.explain.graph import conv_layer_names, default_layer  # noqa: PLC0415

            if conv_layer_names(model):  # the tap model recovers the logit
                self._engine = engine(model, default_layer(model))
        for value, what in ((patch, "patch"), (stride, "stride")):
            if value is not None and value < 1:
                raise ValueError(f"{what} must be at least 1 pixel, got {value}")

    def _grid(self, side: int) -> tuple[int, int, list[int]]:
        patch = self.patch or max(2, round(side / 8))
        stride = self.stride or max(1, patch // 2)
        if patch > side:
            raise ValueError(f"patch {patch} is larger than the image side {side}")
        return patch, stride, positions(side, patch, stride)

    @property
    def cells_per_side(self) -> int | None:
        side = getattr(self.model, "input_shape", (None, None))[1]
        return len(self._grid(int(side))[2]) if side else None

    def resolution(self, film_side: int | None = None) -> dict[str, Any]:
        side = getattr(self.model, "input_shape", (None, None))[1]
        return effective_resolution(self.cells_per_side, side, film_side)

    def _scores(self, x: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(class scores, probs, resolved targets)`` of a batch (targets -1: the predicted class)."""
        if self._engine is None:
            probs = self._predict(x)
            check_targets(targets, probs.shape[1])
            resolved = np.where(targets < 0, probs.argmax(axis=1), targets).astype(np.int32)
            return probs[np.arange(len(x)), resolved], probs, resolved
        parts = [[np.asarray(t) for t in self._engine.score_fn(x.shape)(
            x[i:i + self.batch_size], targets[i:i + self.batch_size])]
            for i in range(0, len(x), self.batch_size)]
        return tuple(np.concatenate(p) for p in zip(*parts))

    def explain(self, inputs: np.ndarray, target=None, *, eigen_smooth: bool = False) -> Explanation:
        if eigen_smooth:
            raise ValueError(f"{self.label} does not allow eigen-smoothing")
        x = as_batch(inputs)
        targets = resolve_targets(target, len(x))
        if hasattr(self.model, "output_shape"):
            check_targets(targets, int(self.model.output_shape[-1]))
        scores, probs, targets = self._scores(x, targets)
        h, w = x.shape[1:3]
        patch, _, rows = self._grid(h)
        cols = self._grid(w)[2] if w != h else rows
        boxes = [(r, c) for r in rows for c in cols]
        raw = np.zeros((len(x), h, w), np.float64)
        for i, img in enumerate(x):
            fill = img.mean(axis=(0, 1))
            total, count = np.zeros((h, w)), np.zeros((h, w))
            for start in range(0, len(boxes), self.batch_size):
                chunk = boxes[start:start + self.batch_size]
                occluded = np.repeat(img[None], len(chunk), axis=0)
                for j, (r, c) in enumerate(chunk):
                    occluded[j, r:r + patch, c:c + patch] = fill
                drops = scores[i] - self._scores(occluded, np.full(len(chunk), targets[i]))[0]
                for (r, c), drop in zip(chunk, drops):
                    total[r:r + patch, c:c + patch] += drop
                    count[r:r + patch, c:c + patch] += 1
            raw[i] = total / np.maximum(count, 1)
        heatmaps, flat = to_heatmaps(raw, (h, w))
        return Explanation(heatmaps, probs.astype(np.float32), targets, flat, self.name,
                           self.layer, self.layer_valid)
