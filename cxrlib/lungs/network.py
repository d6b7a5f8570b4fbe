"""The lung segmentation network: one builder, and the weights asset it is saved to and loaded from.

Why this network (:func:`build_lung_unet`, ``encoder="mobilenetv2"``, the shipped model): a U-Net
whose encoder is ImageNet MobileNetV2 up to ``block_16`` (stride 32), with a light decoder.

* Only 386 annotated films may be used for training. An encoder pretrained on ImageNet brings
  edge and texture filters that a U-Net trained from scratch on so few films has to learn from
  them; in ../shared/NOTES.md a from-scratch U-Net at 160 px stopped at Dice 0.935.
* MobileNetV2's depthwise-separable blocks make the encoder cheap on a 2-core CPU (the issue
  asks for < 30 ms a film), and its weights are already on the build machines offline.
* The decoder takes its skips from the thin linear-bottleneck outputs (16, 24, 32, 96 channels)
  rather than the wide expansion layers, and uses few filters at high resolution: lung fields
  are large smooth regions, and the costly part of a U-Net decoder is the full-resolution
  convolutions. One 3x3 conv block per level keeps the decoder lighter than the encoder.
* Input ``(N, S, S, 1)`` grey in [0, 1]; output ``(N, S, S, 1)`` logits (the sigmoid is applied
  by the caller, so the loss can use the numerically stable logit form).

``encoder="plain"`` builds a plain U-Net (two 3x3 conv blocks per level, max-pool down, bilinear
up) with the given ``filters``: the tests' tiny network, trained in seconds on synthetic films.

The asset is two files: ``<name>.npz`` with every weight keyed by its Keras variable path (float16
by default: it halves the size and changed no mask pixel that mattered, see the model card) and
``<name>.json`` with the builder's arguments and the training record. Loading builds the network
with ``encoder_weights=None`` and fills in the asset, so inference never needs the ImageNet file.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

ASSET_DIR = Path(__file__).resolve().parent / "assets"
ASSET_NAME = "lung_unet"

# Thin MobileNetV2 outputs used as skips, finest first (strides 2, 4, 8, 16), and the bottleneck.
_MOBILENET_SKIPS = ("expanded_conv_project_BN", "block_2_add", "block_5_add", "block_12_add")
_MOBILENET_BOTTOM = "block_16_project_BN"


class LungModelError(ValueError):
    """A weights asset that is missing or does not fit the network it describes."""


def _keras():
    from cxrlib.core.tfsetup import tf  # noqa: PLC0415

    tf()  # TensorFlow's environment first, then Keras
    import keras  # noqa: PLC0415

    return keras


def build_lung_unet(size: int = 256, *, encoder: str = "mobilenetv2",
                    encoder_weights: str | None = "imagenet",
                    filters: tuple[int, ...] = (16, 24, 32, 64, 96), seed: int = 0):
    """Build the (uncompiled) lung segmentation network; the choice is argued in the module docstring.

    Args:
        size: side ``S`` of the square working size (a multiple of 32 for ``mobilenetv2``, of
            ``2 ** (len(filters) - 1)`` for ``plain``).
        encoder: ``"mobilenetv2"`` (the shipped model) or ``"plain"`` (a from-scratch U-Net).
        encoder_weights: ``"imagenet"`` (MobileNetV2 only; found offline through
            :func:`cxrlib.models.weights.resolve_imagenet_weights`) or None (random, e.g.
            before loading an asset).
        filters: decoder filters from the finest level (stride 1) to the coarsest; for
            ``plain`` also the encoder's, one level each.
        seed: seeds the initialisation of every layer that is not pretrained.

    Returns:
        A functional ``keras.Model``: ``float32 (N, S, S, 1)`` in [0, 1] -> ``(N, S, S, 1)`` logits.

    Raises:
        ValueError: an unknown encoder or a size the network cannot halve often enough.
    """
    keras = _keras()
    layers = keras.layers
    seeds = iter(range(seed * 1000, seed * 1000 + 1000))
    init = lambda: keras.initializers.HeNormal(seed=next(seeds))  # noqa: E731
    depth = 5 if encoder == "mobilenetv2" else len(filters) - 1
    if encoder not in ("mobilenetv2", "plain"):
        raise ValueError(f"unknown encoder {encoder!r}: use 'mobilenetv2' or 'plain'")
    if size % (2 ** depth) or (encoder == "mobilenetv2" and len(filters) != 5):
        raise ValueError(f"size {size} must be a multiple of {2 ** depth} (and mobilenetv2 "
                         f"takes 5 filters, got {len(filters)})")
    film = keras.Input((size, size, 1), name="film")
    if encoder == "mobilenetv2":
        skips, x = _mobilenet_encoder(keras, film, encoder_weights)
        skips = [film, *skips]  # the input itself is the stride-1 skip
    else:
        skips, x = [], film
        for level, n in enumerate(filters[:-1]):
            x = _conv_block(layers, x, n, f"enc{level}", 2, init)
            skips.append(x)
            x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
        x = _conv_block(layers, x, filters[-1], "bottom", 2, init)
    for level in range(len(skips) - 1, -1, -1):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_cat")([x, skips[level]])
        x = _conv_block(layers, x, filters[level], f"dec{level}", 1 if encoder == "mobilenetv2" else 2, init)
    logits = layers.Conv2D(1, 1, name="lung_logits", kernel_initializer=init(), dtype="float32")(x)
    return keras.Model(film, logits, name=f"lung_unet_{encoder}")


def _mobilenet_encoder(keras, film, encoder_weights):
    layers = keras.layers
    rgb = layers.Concatenate(name="grey_to_rgb")([film, film, film])
    scaled = layers.Rescaling(2.0, offset=-1.0, name="mobilenetv2_scaling")(rgb)  # [0,1] -> [-1,1]
    weights = None
    if encoder_weights == "imagenet":
        from cxrlib.models.weights import resolve_imagenet_weights  # noqa: PLC0415

        weights = str(resolve_imagenet_weights())
    backbone = keras.applications.MobileNetV2(input_tensor=scaled, include_top=False, weights=weights)
    skips = [backbone.get_layer(name).output for name in _MOBILENET_SKIPS]
    return skips, backbone.get_layer(_MOBILENET_BOTTOM).output


def _conv_block(layers, x, filters: int, name: str, repeat: int, init):
    for i in range(repeat):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=init(),
                          name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


# ----------------------------------------------------------------------------------- the asset
def save_asset(model, folder: str | Path, arch: dict[str, Any], record: dict[str, Any],
               *, name: str = ASSET_NAME, dtype: str = "float16") -> Path:
    """Write ``model``'s weights (``<name>.npz``) and its description (``<name>.json``).

    Args:
        model: a network from :func:`build_lung_unet`.
        folder: where to write (created).
        arch: the keyword arguments of :func:`build_lung_unet` that rebuild it.
        record: training facts (data rows, split groups, seed, Dice, times...) kept beside it.
        name: file stem.
        dtype: storage type of the weights (``"float16"`` or ``"float32"``).

    Returns:
        The path of the ``.json`` file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {v.path: np.asarray(v.numpy(), dtype) for v in model.weights}
    tmp = folder / f".{name}.npz.tmp"
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    tmp.replace(folder / f"{name}.npz")
    meta = {"format": 1, "arch": arch, "weights_dtype": dtype, **record}
    path = folder / f"{name}.json"
    tmp = folder / f".{name}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_asset_meta(path: str | Path | None = None) -> dict[str, Any]:
    """The ``.json`` description of a weights asset (default: the shipped one).

    Args:
        path: the ``.json``, the ``.npz`` or the folder holding ``lung_unet.json``.

    Raises:
        LungModelError: no such asset.
    """
    meta_path = _asset_paths(path)[0]
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LungModelError(f"lung model description {meta_path} cannot be read: {exc}") from None


def load_asset(path: str | Path | None = None):
    """Rebuild the network described by an asset and load its weights (no ImageNet file needed).

    Returns:
        ``(model, meta)``.

    Raises:
        LungModelError: the files are missing, or the weights do not match the network.
    """
    meta_path, npz_path = _asset_paths(path)
    meta = read_asset_meta(meta_path)
    model = build_lung_unet(**{**meta["arch"], "encoder_weights": None})
    try:
        with np.load(npz_path) as stored:
            arrays = {k: stored[k] for k in stored.files}
    except OSError as exc:
        raise LungModelError(f"lung model weights {npz_path} cannot be read: {exc}") from None
    names = [v.path for v in model.weights]
    misfits = sorted(set(names) ^ set(arrays)) or [
        v.path for v in model.weights if tuple(v.shape) != arrays[v.path].shape]
    if misfits:
        raise LungModelError(f"{npz_path} does not fit the network in {meta_path.name} "
                             f"(e.g. {misfits[:3]})")
    model.set_weights([arrays[n].astype(np.float32) for n in names])
    return model, meta


def asset_digest(path: str | Path | None = None) -> str:
    """``<name>:<16 hex>``: the sha256 of a weights asset's ``.npz`` (default: the shipped one).

    Whatever the network decides (the lung-crop step's box above all) is a function of these
    bytes, so caches and run ids that depend on its masks carry this digest.

    Raises:
        LungModelError: no such asset.
    """
    npz = _asset_paths(path)[1]
    stat = npz.stat()
    return _digest(str(npz.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _digest(npz: str, size: int, mtime_ns: int) -> str:
    with open(npz, "rb") as fh:
        return f"{Path(npz).stem}:{hashlib.sha256(fh.read()).hexdigest()[:16]}"


def _asset_paths(path: str | Path | None) -> tuple[Path, Path]:
    path = Path(path) if path is not None else ASSET_DIR / f"{ASSET_NAME}.json"
    if path.is_dir():
        path = path / f"{ASSET_NAME}.json"
    meta_path, npz_path = path.with_suffix(".json"), path.with_suffix(".npz")
    for p in (meta_path, npz_path):
        if not p.is_file():
            raise LungModelError(f"lung model file {p} not found")
    return meta_path, npz_path
