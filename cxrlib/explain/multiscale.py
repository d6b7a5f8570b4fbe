"""Finer maps from several layers: LayerCAM at two or three strides, fused.

MobileNetV2's last block is 7 x 7 at 224 px: one cell covers 32 input pixels, a rib space or
more on the film. Earlier blocks see finer grids (14 x 14 at stride 16, 28 x 28 at stride 8), and
LayerCAM (Jiang et al., "LayerCAM: Exploring hierarchical class activation maps for
localization", IEEE TIP 30, 2021) is the CAM whose maps stay class-specific on such shallow
layers, because each activation is weighted by its own positive gradient. The paper fuses the
layers' maps: a shallow layer's map has small values, so it is rescaled as
``tanh(gamma M / max M)`` with ``gamma = 2`` (the paper's). Here the deepest map is scaled by
its maximum, every map is resized to the input, and the maps are averaged (pytorch-grad-cam's
multi-layer aggregation), then normalised to [0, 1] as every heatmap is.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from cxrlib.explain.base import CAM, as_batch, check_targets, resolve_targets
from cxrlib.explain.engine import engine
from cxrlib.explain.graph import NON_NEGATIVE, conv_layer_names, find_layer, valid_layers
from cxrlib.explain.maps import resize_maps, to_heatmaps

GAMMA = 2.0
"""The LayerCAM paper's scale of shallow layers' maps before fusion."""


def fusion_layers(model: Any, deepest: str, n_scales: int = 3) -> list[str]:
    """The layers fused with ``deepest``: for each of the ``n_scales`` finest grids up to it
    (``deepest``'s own first), the last layer at that grid whose activations are non-negative.

    For MobileNetV2 at 224 px and ``out_relu``: ``["out_relu", "block_13_expand_relu",
    "block_6_expand_relu"]`` (7, 14 and 28 cells a side: strides 32, 16 and 8). Deepest first.
    """
    names = conv_layer_names(model)
    upto = names[:names.index(deepest) + 1]
    valid = set(valid_layers(model, NON_NEGATIVE))
    chosen, sides = [deepest], [tuple(find_layer(model, deepest)[1].output.shape[1:3])]
    for name in reversed(upto[:-1]):
        if len(chosen) == n_scales:
            break
        side = tuple(find_layer(model, name)[1].output.shape[1:3])
        if name in valid and None not in side and side[0] > sides[-1][0]:
            chosen.append(name)
            sides.append(side)
    return chosen


class FusedLayerCAM(CAM):
    """LayerCAM on two or three layers of different strides, fused (the module docstring).

    Args:
        model: as :class:`~cxrlib.explain.base.CAM`.
        layer: the deepest layer (``None``: the non-negative default, ``out_relu`` for
            MobileNetV2); the finer ones are chosen by :func:`fusion_layers`.
        layers: the layers to fuse, deepest first, instead of choosing them.
        n_scales: grids fused when ``layers`` is not given.
        gamma: the shallow maps' tanh scale.
    """

    name = "layercam-fused"
    label = "LayerCAM, fused over strides"
    activations = NON_NEGATIVE
    supports_eigen_smooth = False

    def __init__(self, model: Any, layer: str | None = None, *, layers: list[str] | None = None,
                 n_scales: int = 3, gamma: float = GAMMA) -> None:
        super().__init__(model, layer if layer is not None or not layers else layers[0])
        self.layers = list(layers) if layers else fusion_layers(model, self.layer, n_scales)
        for name in self.layers:
            find_layer(model, name)
        self.gamma = float(gamma)
        self._engines = [engine(model, name) for name in self.layers]

    @property
    def cells_per_side(self) -> int | None:
        """The finest fused grid's cells per side."""
        sides = [find_layer(self.model, name)[1].output.shape[1] for name in self.layers]
        return int(max(sides)) if all(sides) else None

    def explain(self, inputs: np.ndarray, target=None, *, eigen_smooth: bool = False):
        from cxrlib.explain.base import Explanation  # noqa: PLC0415

        if eigen_smooth:
            raise ValueError(f"{self.label} does not allow eigen-smoothing")
        x = as_batch(inputs)
        targets = resolve_targets(target, len(x))
        check_targets(targets, int(self.model.output_shape[-1]))
        fused, probs = np.zeros((len(x), *x.shape[1:3]), np.float32), None
        for k, eng in enumerate(self._engines):
            acts, grads, p, resolved = (np.asarray(t) for t in eng.gradient_fn(x.shape)(x, targets))
            if probs is None:
                probs, targets = p, resolved  # every layer explains the class of the first pass
            raw = np.maximum(np.einsum("nhwk,nhwk->nhw", np.maximum(grads, 0.0), acts), 0.0)
            top = raw.max(axis=(1, 2), keepdims=True)
            scaled = np.where(top > 0, raw / np.where(top > 0, top, 1.0), 0.0)
            if k > 0:  # a shallow layer: the paper's tanh rescaling
                scaled = np.tanh(self.gamma * scaled)
            fused += resize_maps(scaled.astype(np.float32), x.shape[1:3])
        heatmaps, flat = to_heatmaps(fused / len(self._engines), x.shape[1:3])
        return Explanation(heatmaps, probs.astype(np.float32), targets.astype(np.int32), flat,
                           self.name, self.layer, self.layer_valid)
