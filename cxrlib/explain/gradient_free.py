"""CAM methods that need no gradient: they run the model again, or read the activations alone.

Notation as in :mod:`cxrlib.explain.gradient_methods`: ``A`` the explained layer's activations
``(h, w, K)``, ``A_k`` channel k, ``c`` the explained class. All of them assume ``A >= 0``
(a channel is a mask, or switching it off means setting it to 0, or the principal direction
of non-negative data is non-negative), so they default to a non-negative layer.

Every masked or ablated batch goes through the one compiled forward pass
(:func:`cxrlib.models.inference.predict`), in fixed-size batches, so the cost is the number of
forward passes: Score-CAM one full pass per scored channel, Ablation-CAM one pass of the part
of the network above the layer per channel, EigenCAM none.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from cxrlib.explain.base import CAM, predict_probs
from cxrlib.explain.graph import NON_NEGATIVE


def _upsampled_mask(channel: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """One channel resized (bilinear) to the input and min-max scaled to [0, 1]; None if flat."""
    up = cv2.resize(np.asarray(channel, np.float32), (size[1], size[0]),
                    interpolation=cv2.INTER_LINEAR)
    lo, span = up.min(), up.max() - up.min()
    return (up - lo) / span if span > 0 else None


class ScoreCAM(CAM):
    """Score-CAM: channels weighted by how much the input they reveal raises the class probability.

    Wang et al., "Score-CAM: Score-weighted visual explanations for convolutional neural
    networks", CVPR Workshops 2020: each channel, upsampled and min-max scaled to [0, 1], masks
    the input; its weight is the increase of the class probability over a black image,
    ``w_k = p_c(x * mask_k) - p_c(0)`` (the paper's "channel-wise increase of confidence"; the
    softmax over channels that some implementations add is left out because our models output
    probabilities, not logits, and a softmax over values in [0, 1] is almost uniform). A flat
    channel weighs 0.

    Args:
        model, layer: as :class:`~cxrlib.explain.base.CAM`.
        max_channels: only the channels that :meth:`select_channels` ranks first (per image) are
            scored, the others get weight 0; ``None`` scores all (MobileNetV2's ``out_relu`` has
            1280: 40 batches of 32 forward passes, about 10 s a film on a 2-core CPU).
        batch_size: masked images per forward pass; the masked images of several films share
            batches.
    """

    name = "scorecam"
    label = "Score-CAM"
    activations = NON_NEGATIVE
    uses_gradients = False

    def __init__(self, model: Any, layer: str | None = None, *, max_channels: int | None = 128,
                 batch_size: int = 32) -> None:
        super().__init__(model, layer)
        if max_channels is not None and max_channels < 1:
            raise ValueError(f"max_channels must be at least 1 (or None for all), "
                             f"got {max_channels}")
        self.max_channels = max_channels
        self.batch_size = batch_size
        self._baselines: dict[tuple[int, ...], np.ndarray] = {}

    def baseline(self, shape: tuple[int, ...]) -> np.ndarray:
        """``p(black image)`` for images of ``shape[1:]``: computed once (a batch of one)."""
        key = tuple(shape[1:])
        if key not in self._baselines:
            self._baselines[key] = predict_probs(self.model, np.zeros((1, *key), np.float32), 1)[0]
        return self._baselines[key]

    def select_channels(self, activations: np.ndarray) -> np.ndarray:
        """Channel indices of one image's ``(h, w, K)`` activations to score, best first: the
        largest mean activation first (ties in channel order)."""
        order = np.argsort(-activations.mean(axis=(0, 1)), kind="stable")
        return order[:self.max_channels]

    def channel_weights(self, activations, gradients, inputs, targets):
        n, _, _, k = activations.shape
        size = inputs.shape[1:3]
        weights = np.zeros((n, k), np.float32)
        baseline = self.baseline(inputs.shape)
        jobs = [(i, int(c)) for i in range(n) for c in self.select_channels(activations[i])]
        for start in range(0, len(jobs), self.batch_size):
            chunk, masked = [], []
            for i, c in jobs[start:start + self.batch_size]:
                mask = _upsampled_mask(activations[i, :, :, c], size)
                if mask is not None:  # a flat channel reveals nothing: weight 0, no forward pass
                    chunk.append((i, c))
                    masked.append(inputs[i] * mask[..., None])
            if not chunk:
                continue
            probs = predict_probs(self.model, np.stack(masked), self.batch_size)
            rows, cols = np.array(chunk).T
            weights[rows, cols] = probs[np.arange(len(chunk)), targets[rows]] - baseline[targets[rows]]
        return weights


class FasterScoreCAM(ScoreCAM):
    """Faster Score-CAM: Score-CAM on the few channels whose activation maps vary most.

    Score-CAM's cost is one forward pass per channel. Faster Score-CAM
    (github.com/tabayashi0117/Score-CAM#faster-score-cam, 2020; ``max_N`` in tf-keras-vis)
    scores only the ``max_channels`` channels with the largest spatial variance: a channel that
    is nearly constant over the image masks nothing in particular. Same weights as
    :class:`ScoreCAM` on those channels, 0 on the others.

    Args:
        model, layer, batch_size: as :class:`ScoreCAM`.
        max_channels: channels scored per image (default 32: one batch of masked forward
            passes, 0.3-0.8 s a film for MobileNetV2 at 224 on a 2-core CPU, more when the CPU
            is shared; see ``bench/explain.py``).
    """

    name = "faster-scorecam"
    label = "Faster Score-CAM"

    def __init__(self, model: Any, layer: str | None = None, *, max_channels: int | None = 32,
                 batch_size: int = 32) -> None:
        super().__init__(model, layer, max_channels=max_channels, batch_size=batch_size)

    def select_channels(self, activations: np.ndarray) -> np.ndarray:
        """The channels of largest spatial variance first (ties in channel order)."""
        order = np.argsort(-activations.var(axis=(0, 1)), kind="stable")
        return order[:self.max_channels]


class AblationCAM(CAM):
    """Ablation-CAM: a channel's weight is how much the class score drops when it is switched off.

    Desai & Ramaswamy, "Ablation-CAM: Visual explanations for deep convolutional network via
    gradient-free localization", WACV 2020: ``w_k = (y_c - y_c^k) / y_c``, where ``y_c`` is the
    class score and ``y_c^k`` the score with ``A_k`` set to 0. ``y_c`` is the score the gradient
    methods differentiate (the logit, see :mod:`cxrlib.explain.base`), and the division is by
    ``|y_c|``: the paper's ``y_c`` is a confident class's positive score, and dividing by a
    negative logit would flip every weight. Only the part of the model above the layer is run
    (:meth:`cxrlib.explain.engine.Engine.tail`), so the layer must be one every path to the output
    goes through (true of MobileNetV2's ``out_relu`` and ``block_16_depthwise``).

    Args:
        model, layer: as :class:`~cxrlib.explain.base.CAM`.
        batch_size: ablated activation maps per forward pass.
    """

    name = "ablationcam"
    label = "Ablation-CAM"
    activations = NON_NEGATIVE
    uses_gradients = False

    def __init__(self, model: Any, layer: str | None = None, *, batch_size: int = 128) -> None:
        super().__init__(model, layer)
        self.batch_size = batch_size
        self._engine.tail()  # a layer that a residual path goes around is refused here

    def channel_weights(self, activations, gradients, inputs, targets):
        from cxrlib.models.inference import predict  # noqa: PLC0415

        tail, engine = self._engine.tail(), self._engine
        n, _, _, k = activations.shape
        weights = np.zeros((n, k), np.float64)
        for i in range(n):
            a = activations[i]
            target = np.full(1, targets[i])
            y = engine.scores_from_source(predict(tail, a[None], batch_size=1), target)[0]
            live = np.flatnonzero(np.abs(a).max(axis=(0, 1)) > 0)  # an all-zero channel: drop 0
            for start in range(0, len(live), self.batch_size):
                channels = live[start:start + self.batch_size]
                ablated = np.repeat(a[None], len(channels), axis=0)
                ablated[np.arange(len(channels)), :, :, channels] = 0.0
                source = predict(tail, ablated, batch_size=self.batch_size)
                y_k = engine.scores_from_source(source, np.full(len(channels), targets[i]))
                weights[i, channels] = (y - y_k) / (abs(y) if y != 0 else 1.0)
        return weights.astype(np.float32)


class EigenCAM(CAM):
    """EigenCAM: the activations projected on their first principal direction; no gradient, no class.

    Muhammad & Yeasin, "Eigen-CAM: Class activation map using principal components", IJCNN
    2020: with ``A`` reshaped to ``(h w, K)`` and ``A = U S V^T`` its SVD, the map is the
    projection on the first right-singular vector, ``M = A v_1`` (the paper's form, no
    centring), i.e. channel weights ``w = v_1``. The SVD's sign is arbitrary: it is chosen so
    that ``sum M >= 0`` (for ``A >= 0`` the first singular vector can be taken non-negative, so
    then ``M >= 0``). The map does not depend on the explained class (``class_specific`` is
    false): it shows what the layer responds to most, whatever the model predicts.
    """

    name = "eigencam"
    label = "EigenCAM"
    activations = NON_NEGATIVE
    uses_gradients = False
    class_specific = False
    supports_eigen_smooth = False  # it is a principal component already

    def channel_weights(self, activations, gradients, inputs, targets):
        n, h, w, k = activations.shape
        a = activations.reshape(n, h * w, k).astype(np.float64)
        # v_1 from the smaller Gram matrix (a LAPACK SVD of a 49 x 1280 matrix is ~50x slower):
        # A^T A = V S^2 V^T directly, or A A^T = U S^2 U^T and then v_1 = A^T u_1 / s_1.
        if h * w < k:
            _, u = np.linalg.eigh(a @ a.transpose(0, 2, 1))
            v = np.einsum("npk,np->nk", a, u[:, :, -1])  # eigh sorts eigenvalues ascending
        else:
            _, vecs = np.linalg.eigh(a.transpose(0, 2, 1) @ a)
            v = vecs[:, :, -1]
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)
        total = np.einsum("npk,nk->n", a, v)
        return (v * np.where(total < 0, -1.0, 1.0)[:, None]).astype(np.float32)
