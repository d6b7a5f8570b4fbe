"""Every CAM method whose paper gives a closed form against a plain NumPy reference of it:
Grad-CAM++, Score-CAM and Faster Score-CAM, HiResCAM, XGrad-CAM, LayerCAM, Ablation-CAM, EigenCAM.

The reference never goes through :mod:`cxrlib.explain`: activations come from calling the
model's own layer objects in order, gradients from an eager ``tf.GradientTape`` on those
activations, and the channel weights, the weighted sum, the ReLU, the bilinear resize and the
min-max normalisation are written out here in NumPy (float64).

The tiny model has a conv layer *after* the explained one, so the gradient of the class score
varies from pixel to pixel and from channel to channel: Grad-CAM++'s pixel-wise alphas then
differ from Grad-CAM's mean gradient, and the reference can tell the two apart.

The class score differentiated is what :mod:`cxrlib.explain.base` documents for a ``Dense``
softmax output: the pre-softmax logit ``h @ kernel + bias`` (``cam.score == "dense_logit"``).
Score-CAM uses probabilities, ``p_c(x * mask_k) - p_c(0)``, as :mod:`cxrlib.explain.gradient_free`
documents; Ablation-CAM the logit of the model with a channel zeroed, run here through the same
layer objects eagerly; EigenCAM a full ``np.linalg.svd`` (the library uses a Gram matrix).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

S = 24  # input side; the explained layer is 12 x 12 (stride 2), so the maps are upsampled


def _keras():
    from cxrlib.core.tfsetup import tf

    tf()
    import keras

    return keras


def build_net():
    """``(model, front, rest, out)``: ``front`` maps images to the explained layer's activations,
    ``rest`` maps those to the output layer's input, ``out`` is the Dense softmax output layer."""
    keras = _keras()
    keras.utils.set_random_seed(7)
    conv_a = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_a")
    explained = keras.layers.Conv2D(5, 3, strides=2, padding="same", activation="relu",
                                    name="explained")
    conv_b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")
    pool = keras.layers.GlobalAveragePooling2D(name="pool")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")
    out = keras.layers.Dense(3, activation="softmax", name="scores")
    inp = keras.Input((S, S, 3))
    model = keras.Model(inp, out(hidden(pool(conv_b(explained(conv_a(inp)))))))
    # Positive biases keep every channel of the explained layer alive on most pixels.
    for layer in (conv_a, explained):
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, np.full_like(bias, 0.05)])
    # Larger weights above the explained layer: probabilities far from uniform, so that masking
    # a channel moves them (Glorot-initialised, the outputs stay within 1 % of 1/3).
    for layer, gain in ((conv_b, 4.0), (hidden, 4.0), (out, 6.0)):
        layer.set_weights([w * gain for w in layer.get_weights()])

    def front(x):
        return explained(conv_a(x))

    def rest(a):
        return hidden(pool(conv_b(a)))

    # A black image gets equal probabilities (its logits are all zero), so Score-CAM's baseline
    # p_c(0) = 1/3 and a channel that reveals evidence for class c has a positive weight.
    kernel, bias = out.get_weights()
    hidden_black = np.asarray(rest(front(np.zeros((1, S, S, 3), np.float32))))
    out.set_weights([kernel, bias - (hidden_black @ kernel + bias)[0]])
    return model, front, rest, out


@pytest.fixture(scope="module")
def net():
    return build_net()


def _images(n: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth random films: a few Gaussian blobs, so activations vary in space."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    out = np.zeros((n, S, S, 3), np.float32)
    for i in range(n):
        for _ in range(3):
            cy, cx, sigma = rng.uniform(3, S - 3), rng.uniform(3, S - 3), rng.uniform(2, 5)
            out[i] += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2)
                                                      / (2 * sigma ** 2))[..., None]
        out[i] += 0.1 * rng.random((S, S, 3), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def _acts_and_grads(net, x: np.ndarray, targets: np.ndarray):
    """Activations ``A`` (N, h, w, K) and ``d logit_c / dA`` by an eager GradientTape."""
    import tensorflow as tf

    model, front, rest, out = net
    acts = tf.convert_to_tensor(np.asarray(front(tf.constant(x))))
    with tf.GradientTape() as tape:
        tape.watch(acts)
        logits = tf.matmul(rest(acts), out.kernel) + out.bias
        score = tf.reduce_sum(tf.gather(logits, targets, axis=1, batch_dims=1))
    grads = tape.gradient(score, acts)
    return acts.numpy().astype(np.float64), grads.numpy().astype(np.float64)


def _to_heatmaps(acts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ReLU(sum_k w_k A_k), bilinearly resized to the input size, min-max scaled per map."""
    return _maps_to_heatmaps(np.stack([np.tensordot(a, w, axes=([2], [0]))
                                       for a, w in zip(acts, weights)]))


def _maps_to_heatmaps(raw: np.ndarray) -> np.ndarray:
    """ReLU of raw ``(N, h, w)`` maps, bilinearly resized to the input size, min-max scaled."""
    maps = []
    for m in raw:
        cam = np.maximum(m, 0.0).astype(np.float32)
        cam = cv2.resize(cam, (S, S), interpolation=cv2.INTER_LINEAR).astype(np.float64)
        span = cam.max() - cam.min()
        maps.append((cam - cam.min()) / span if span > 0 else np.zeros_like(cam))
    return np.stack(maps)


def gradcam_pp_reference(net, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Chattopadhay et al. 2018, closed form for an exponential score:
    ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)``, ``w_k = sum_ij alpha_ij ReLU(g_ij)``."""
    acts, g = _acts_and_grads(net, x, targets)
    sum_a = acts.sum(axis=(1, 2), keepdims=True)
    weights = np.zeros((len(x), acts.shape[-1]))
    for i in range(len(x)):
        for k in range(acts.shape[-1]):
            gk, total = g[i, :, :, k], sum_a[i, 0, 0, k]
            alpha = np.zeros_like(gk)
            for (r, c), gv in np.ndenumerate(gk):
                denom = 2 * gv ** 2 + total * gv ** 3
                if gv != 0 and denom != 0:
                    alpha[r, c] = gv ** 2 / denom
            weights[i, k] = (alpha * np.maximum(gk, 0)).sum()
    return _to_heatmaps(acts, weights)


def gradcam_reference(net, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    acts, g = _acts_and_grads(net, x, targets)
    return _to_heatmaps(acts, g.mean(axis=(1, 2)))


def scorecam_reference(net, x: np.ndarray, targets: np.ndarray,
                       max_channels: int | None = None, rank_by: str = "mean") -> np.ndarray:
    """Wang et al. 2020: each channel, upsampled and min-max scaled to [0, 1], masks the input;
    its weight is ``p_c(x * mask_k) - p_c(black image)``; a flat channel weighs 0. With
    ``max_channels``, only the channels of largest mean activation (``rank_by="variance"``:
    largest spatial variance, Faster Score-CAM) are scored."""
    model, front, _, _ = net
    acts = np.asarray(front(x)).astype(np.float64)
    baseline = np.asarray(model(np.zeros((1, S, S, 3), np.float32), training=False))[0]
    weights = np.zeros((len(x), acts.shape[-1]))
    for i in range(len(x)):
        rank = acts[i].mean(axis=(0, 1)) if rank_by == "mean" else acts[i].var(axis=(0, 1))
        order = np.argsort(-rank, kind="stable")
        for k in order[:max_channels]:
            up = cv2.resize(acts[i, :, :, k].astype(np.float32), (S, S),
                            interpolation=cv2.INTER_LINEAR)
            span = up.max() - up.min()
            if span <= 0:
                continue
            mask = (up - up.min()) / span
            p = np.asarray(model((x[i] * mask[..., None])[None], training=False))[0]
            weights[i, k] = p[targets[i]] - baseline[targets[i]]
    return _to_heatmaps(acts, weights)


def _predicted(net, x: np.ndarray) -> np.ndarray:
    return np.asarray(net[0](x, training=False)).argmax(axis=1).astype(np.int32)


def _assert_matches_reference(net, x: np.ndarray, heat: np.ndarray, target, reference) -> np.ndarray:
    """``heat`` equals ``reference(net, x, targets)`` (which is not empty) and is not Grad-CAM
    under another name on this model; returns the targets (the predicted class for None)."""
    targets = _predicted(net, x) if target is None else np.asarray(target, np.int32)
    expected = reference(net, x, targets)
    assert expected.max(axis=(1, 2)).min() == pytest.approx(1.0)  # the reference is not empty
    np.testing.assert_allclose(heat, expected, atol=1e-5)
    # The test can tell the method from Grad-CAM on this model: their maps differ.
    assert np.abs(expected - gradcam_reference(net, x, targets)).max() > 0.05
    return targets


@pytest.mark.parametrize("target", [None, [2, 0, 1]])
def test_gradcam_plus_plus_matches_the_numpy_reference(net, target):
    from cxrlib.explain import get_cam

    x = _images()
    cam = get_cam("gradcam++", net[0], "explained")
    assert cam.score == "dense_logit"  # the reference differentiates the logit
    heat, probs = cam(x, target=target)
    _assert_matches_reference(net, x, heat, target, gradcam_pp_reference)
    np.testing.assert_allclose(probs, np.asarray(net[0](x, training=False)), atol=1e-6)


@pytest.mark.parametrize("target", [None, [1, 2, 1]])
def test_scorecam_matches_the_numpy_reference(net, target):
    from cxrlib.explain import get_cam

    x = _images(seed=1)
    heat, _ = get_cam("scorecam", net[0], "explained")(x, target=target)
    _assert_matches_reference(net, x, heat, target, scorecam_reference)


def test_scorecam_scores_only_the_most_active_channels(net):
    from cxrlib.explain import get_cam

    x = _images(seed=2)
    targets = _predicted(net, x)
    heat, _ = get_cam("scorecam", net[0], "explained", max_channels=2)(x)
    expected = scorecam_reference(net, x, targets, max_channels=2)
    np.testing.assert_allclose(heat, expected, atol=1e-5)
    assert np.abs(expected - scorecam_reference(net, x, targets)).max() > 0.05


# --- the methods added on the same base -----------------------------------------------------

def hirescam_reference(net, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Draelos & Carin 2020: ``M[i, j] = sum_k g_k[i, j] A_k[i, j]``."""
    acts, g = _acts_and_grads(net, x, targets)
    raw = np.zeros(acts.shape[:3])
    for n, r, c, k in np.ndindex(*acts.shape):
        raw[n, r, c] += g[n, r, c, k] * acts[n, r, c, k]
    return _maps_to_heatmaps(raw)


def xgradcam_reference(net, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Fu et al. 2020: ``w_k = sum_ij A_k[i, j] g_k[i, j] / sum_ab A_k[a, b]`` (0 for a dead channel)."""
    acts, g = _acts_and_grads(net, x, targets)
    weights = np.zeros((len(x), acts.shape[-1]))
    for n in range(len(x)):
        for k in range(acts.shape[-1]):
            total = acts[n, :, :, k].sum()
            if total != 0:
                weights[n, k] = (acts[n, :, :, k] * g[n, :, :, k]).sum() / total
    return _to_heatmaps(acts, weights)


def layercam_reference(net, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Jiang et al. 2021: ``M = ReLU(sum_k ReLU(g_k) A_k)`` element-wise."""
    acts, g = _acts_and_grads(net, x, targets)
    raw = np.zeros(acts.shape[:3])
    for k in range(acts.shape[-1]):
        raw += np.maximum(g[..., k], 0.0) * acts[..., k]
    return _maps_to_heatmaps(raw)


def ablationcam_reference(net, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Desai & Ramaswamy 2020: ``w_k = (y_c - y_c^k) / |y_c|`` with ``y_c`` the class logit and
    ``y_c^k`` the logit with channel k of the explained layer set to 0 (eager layer calls)."""
    _, front, rest, out = net
    kernel, bias = (w.astype(np.float64) for w in out.get_weights())
    acts = np.asarray(front(x)).astype(np.float64)
    weights = np.zeros((len(x), acts.shape[-1]))
    for n in range(len(x)):
        def logit(a: np.ndarray) -> float:
            hidden = np.asarray(rest(a[None].astype(np.float32))).astype(np.float64)[0]
            return float(hidden @ kernel[:, targets[n]] + bias[targets[n]])

        y = logit(acts[n])
        for k in range(acts.shape[-1]):
            ablated = acts[n].copy()
            ablated[:, :, k] = 0.0
            weights[n, k] = (y - logit(ablated)) / abs(y)
    return _to_heatmaps(acts, weights)


def eigencam_reference(net, x: np.ndarray) -> np.ndarray:
    """Muhammad & Yeasin 2020: the activations ``(h w, K)`` projected on their first
    right-singular vector (no centring), its sign chosen so that the projection sums >= 0."""
    acts = np.asarray(net[1](x)).astype(np.float64)
    raw = []
    for a in acts:
        flat = a.reshape(-1, a.shape[-1])
        _, _, vt = np.linalg.svd(flat)
        projection = flat @ vt[0]
        raw.append((projection if projection.sum() >= 0 else -projection).reshape(a.shape[:2]))
    return _maps_to_heatmaps(np.stack(raw))


GRADIENT_REFERENCES = {"hirescam": hirescam_reference, "xgradcam": xgradcam_reference,
                       "layercam": layercam_reference}


@pytest.mark.parametrize("method", sorted(GRADIENT_REFERENCES))
@pytest.mark.parametrize("target", [None, [2, 0, 1]])
def test_gradient_methods_match_their_numpy_references(net, method, target):
    from cxrlib.explain import get_cam

    x = _images(seed=3)
    cam = get_cam(method, net[0], "explained")
    heat, _ = cam(x, target=target)
    _assert_matches_reference(net, x, heat, target, GRADIENT_REFERENCES[method])


def test_xgradcam_and_layercam_differ_from_hirescam_on_this_model(net):
    """Three element-wise-looking formulas that a mix-up would make equal."""
    x = _images(seed=3)
    targets = _predicted(net, x)
    hires = hirescam_reference(net, x, targets)
    assert np.abs(hires - layercam_reference(net, x, targets)).max() > 0.05
    assert np.abs(hires - xgradcam_reference(net, x, targets)).max() > 0.05


@pytest.mark.parametrize("target", [None, [1, 2, 0]])
def test_ablationcam_matches_the_numpy_reference(net, target):
    from cxrlib.explain import get_cam

    x = _images(seed=4)
    cam = get_cam("ablationcam", net[0], "explained")
    assert cam.score == "dense_logit"
    heat, _ = cam(x, target=target)
    _assert_matches_reference(net, x, heat, target, ablationcam_reference)


def test_eigencam_matches_the_numpy_reference_for_any_target(net):
    from cxrlib.explain import get_cam

    x = _images(seed=5)
    expected = eigencam_reference(net, x)
    assert expected.max(axis=(1, 2)).min() == pytest.approx(1.0)
    cam = get_cam("eigencam", net[0], "explained")
    for target in (None, [0, 1, 2]):
        np.testing.assert_allclose(cam(x, target=target)[0], expected, atol=1e-5)
    assert np.abs(expected - gradcam_reference(net, x, _predicted(net, x))).max() > 0.05


def test_faster_scorecam_is_scorecam_on_the_channels_of_largest_variance(net):
    from cxrlib.explain import get_cam

    x = _images(seed=6)
    targets = _predicted(net, x)
    heat, _ = get_cam("faster-scorecam", net[0], "explained", max_channels=2)(x)
    expected = scorecam_reference(net, x, targets, max_channels=2, rank_by="variance")
    assert expected.max(axis=(1, 2)).min() == pytest.approx(1.0)
    np.testing.assert_allclose(heat, expected, atol=1e-5)
    # Ranking by variance is not ranking by mean here, and all channels give Score-CAM itself.
    by_mean = scorecam_reference(net, x, targets, max_channels=2)
    assert np.abs(expected - by_mean).max() > 0.05
    full, _ = get_cam("faster-scorecam", net[0], "explained", max_channels=None)(x)
    np.testing.assert_allclose(full, scorecam_reference(net, x, targets), atol=1e-5)
