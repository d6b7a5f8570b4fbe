"""Training the lung segmenter: the configuration, the compiled training step (its epochs and
best weights kept by the classifier's driver and keeper, :mod:`cxrlib.models.epochs`), and the
whole recipe.

:func:`fit_segmenter` trains on arrays (any films: real or synthetic); :func:`train_lung_model`
is the recipe that made the shipped weights: pair films with masks, split by group, train on
the trainable (non-NC) training groups, keep the epoch with the best validation Dice, choose
the quality threshold on the validation groups, measure Dice on the held-out test groups, and
write the weights asset with that record.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cxrlib.lungs.augment import AugmentConfig, augment_pair
from cxrlib.models.epochs import best_weights, run_epochs

Progress = Callable[[float, float, str], None]


@dataclass(frozen=True)
class LungTrainConfig:
    """How the segmenter is trained (defaults: the shipped model).

    Attributes:
        size: working side in pixels.
        encoder, filters: the network (:func:`cxrlib.lungs.network.build_lung_unet`).
        epochs: passes over the training films; the best validation epoch is kept.
        batch_size: films per step.
        learning_rate: Adam's peak rate (one epoch of linear warm-up, then cosine decay to 1 %).
        seed: every random choice (split, decoder initialisation, augmentation, order).
        test_fraction, val_fraction: shares of the trainable groups held out
            (:func:`cxrlib.lungs.data.split_rows`).
        augment: augmentation ranges.
    """

    size: int = 256
    encoder: str = "mobilenetv2"
    filters: tuple[int, ...] = (16, 24, 32, 64, 96)
    epochs: int = 30
    batch_size: int = 8
    learning_rate: float = 1e-3
    seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.06
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def arch(self) -> dict:
        """Keyword arguments of :func:`cxrlib.lungs.network.build_lung_unet` for this network."""
        return {"size": self.size, "encoder": self.encoder, "filters": list(self.filters), "seed": self.seed}


def _freeze_encoder_batchnorm(model) -> None:
    # Batches of 8 give noisy batch statistics; the ImageNet ones serve the pretrained encoder
    # better. (A frozen BatchNormalization layer also runs in inference mode in Keras 3.)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization" and not layer.name.startswith("dec"):
            layer.trainable = False


def fit_segmenter(model, train: tuple[np.ndarray, ...], val: tuple[np.ndarray, ...] | None,
                  cfg: LungTrainConfig, progress: Progress | None = None) -> list[dict]:
    """Train ``model`` in place on ``train``; afterwards it holds the best validation epoch.

    Args:
        model: from :func:`cxrlib.lungs.network.build_lung_unet` at ``cfg.size``.
        train: ``(films, target, weight)``, each ``uint8 (N, S, S)`` (see
            :func:`cxrlib.lungs.data.load_tensors`).
        val: the same for validation, or None (then the last epoch is kept).
        cfg: epochs, batch size, learning rate, seed, augmentation.
        progress: ``progress(done, total, text)`` after every step (``done`` in epochs).

    Returns:
        One dict per epoch: ``epoch``, ``loss``, ``val_dice`` (None without ``val``), ``seconds``.
    """
    from cxrlib.lungs.network import _keras  # noqa: PLC0415

    keras = _keras()
    if cfg.encoder == "mobilenetv2":
        _freeze_encoder_batchnorm(model)
    films = train[0]
    steps = max(1, len(films) // cfg.batch_size)  # drop the ragged last batch: BN wants full ones
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, steps * (cfg.epochs - 1)), alpha=0.01,
        warmup_target=cfg.learning_rate, warmup_steps=steps)
    step, val_dice = _compiled_steps(model, keras.optimizers.Adam(schedule), cfg.size)
    rng = np.random.default_rng([cfg.seed, 1])  # augmentation and order; the split uses cfg.seed
    history = []
    keeper = best_weights(-math.inf, "val_dice", higher_is_better=True)  # no val: the last epoch

    def epoch(number: int, _callbacks) -> dict:
        start, losses = time.perf_counter(), []
        order = rng.permutation(len(films))
        for s in range(steps):
            x, t, w = _augmented_batch(train, order[s * cfg.batch_size:(s + 1) * cfg.batch_size], rng, cfg)
            losses.append(float(step(x, t, w)))
            if progress:
                progress(number + (s + 1) / steps, cfg.epochs, f"loss {np.mean(losses):.4f}")
        score = None if val is None else _val_score(val_dice, val, cfg.batch_size * 2)
        history.append({"epoch": number + 1, "loss": float(np.mean(losses)), "val_dice": score,
                        "seconds": time.perf_counter() - start})
        return {"loss": history[-1]["loss"], "val_dice": score}

    def report(number: int, logs: dict) -> None:  # after the keeper: "best" counts this epoch
        score = logs.get("val_dice")
        progress(number + 1, cfg.epochs, f"loss {logs['loss']:.4f}"
                 + (f" val Dice {score:.4f} (best {keeper.best:.4f})" if score is not None else ""))

    callbacks = [keeper] + ([keras.callbacks.LambdaCallback(on_epoch_end=report)] if progress else [])
    run_epochs(model, callbacks, epochs=cfg.epochs, steps=steps, epoch=epoch)
    keeper.restore()
    return history


def _compiled_steps(model, optimizer, size: int):
    """The training step and the validation Dice, each one ``tf.function`` for any batch size."""
    from cxrlib.core.tfsetup import tf  # noqa: PLC0415
    from cxrlib.lungs.losses import bce_dice_loss, dice_metric  # noqa: PLC0415

    tf_ = tf()
    spec = tf_.TensorSpec([None, size, size, 1], tf_.float32)

    @tf_.function(input_signature=[spec, spec, spec])
    def step(x, t, w):
        with tf_.GradientTape() as tape:
            loss = bce_dice_loss(t, model(x, training=True), w)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf_.function(input_signature=[spec, spec, spec])
    def val_dice(x, t, w):
        return dice_metric(t, model(x, training=False), w)

    return step, val_dice


def _augmented_batch(train: tuple[np.ndarray, ...], idx: np.ndarray, rng: np.random.Generator,
                     cfg: LungTrainConfig) -> tuple[np.ndarray, ...]:
    """``(x, target, weight)``, each ``float32 (B, S, S, 1)`` in [0, 1], of the films ``idx``."""
    films, target, weight = train
    batch = [augment_pair(films[i], target[i] / np.float32(255), weight[i] / np.float32(255), rng, cfg.augment)
             for i in idx]
    x, t, w = (np.stack([b[k] for b in batch])[..., None].astype(np.float32) for k in range(3))
    return x / 255.0, t, w


def _val_score(fn, val: tuple[np.ndarray, ...], batch: int) -> float:
    total, n = 0.0, len(val[0])
    for s in range(0, n, batch):
        x, t, w = (a[s:s + batch, ..., None].astype(np.float32) / 255.0 for a in val)
        total += float(fn(x, t, w)) * len(x)
    return total / max(n, 1)


def train_lung_model(data_dir: str | Path, masks_dir: str | Path | None, out_dir: str | Path,
                     cfg: LungTrainConfig = LungTrainConfig(), progress: Progress | None = None,
                     command: str = "") -> dict:
    """The whole recipe (module docstring); writes the asset to ``out_dir`` and returns its record.

    Args:
        data_dir: the films' dataset folder.
        masks_dir: their masks (cxr3-lungs or Radiography DB layout), or None for a dataset's
            own ``masks/`` folders.
        out_dir: where the asset (``lung_unet.npz`` / ``.json``) is written.
        cfg: the training configuration.
        progress: ``progress(done, total, text)``.
        command: the command line that ran this, kept in the record.

    Returns:
        The record stored in the asset's ``.json`` (rows, groups, Dice, threshold, times).

    Raises:
        ValueError: no trainable film with a mask, or no validation films.
    """
    from cxrlib.lungs.data import load_tensors, paired_rows, split_rows  # noqa: PLC0415
    from cxrlib.lungs.evaluate import choose_threshold, evaluate_rows, summarise  # noqa: PLC0415
    from cxrlib.lungs.network import build_lung_unet, save_asset  # noqa: PLC0415
    from cxrlib.lungs.segmenter import Segmenter  # noqa: PLC0415

    rows = paired_rows(data_dir, masks_dir)
    rows["split"] = split_rows(rows, seed=cfg.seed, test_fraction=cfg.test_fraction,
                               val_fraction=cfg.val_fraction)
    train_rows = rows[(rows["split"] == "train") & ~rows["nc"]]
    val_rows = rows[rows["split"] == "val"]
    if train_rows.empty or val_rows.empty:
        raise ValueError(f"{len(train_rows)} trainable and {len(val_rows)} validation films: "
                         "need both (too few masked films or groups?)")
    tensors = load_tensors(rows, cfg.size)
    pick = lambda part: tuple(a[part.index.to_numpy()] for a in tensors)  # noqa: E731
    model = build_lung_unet(**cfg.arch())
    start = time.perf_counter()
    history = fit_segmenter(model, pick(train_rows), pick(val_rows), cfg, progress)
    train_s = time.perf_counter() - start
    # Score what ships: the weights rounded to their storage type.
    out_dir = Path(out_dir)
    record = {"config": {**asdict(cfg), "filters": list(cfg.filters)}, "command": command}
    save_asset(model, out_dir, cfg.arch(), record)
    segmenter = Segmenter(*_reload(out_dir))
    per_film = evaluate_rows(rows[rows["split"] != "train"], segmenter)
    is_val = per_film["split"] == "val"
    threshold = choose_threshold(per_film.loc[is_val, "quality"].to_numpy(), per_film.loc[is_val, "dice"].to_numpy())
    per_film["flagged"] = per_film["quality"] < threshold
    record.update({
        "train_s": round(train_s, 1), "epochs_run": len(history),
        "best_epoch": int(np.argmax([h["val_dice"] for h in history])) + 1, "history": history,
        "quality_threshold": threshold, "data": {"films": str(data_dir), "masks": str(masks_dir)},
        "rows": {side: int((rows["split"] == side).sum()) for side in ("train", "val", "test")},
        "train_rows": int(len(train_rows)), "nc_rows": int(rows["nc"].sum()),
        "train_files": sorted(train_rows["rel_path"]),
        "val_files": sorted(val_rows["rel_path"]),
        "groups": {side: sorted(set(rows.loc[rows["split"] == side, "group_id"]))
                   for side in ("train", "val", "test")},
        "val": summarise(per_film[is_val]), "test": summarise(per_film[per_film["split"] == "test"]),
        "software": _versions(),
    })
    save_asset(model, out_dir, cfg.arch(), record)
    return record


def _versions() -> dict:
    import os  # noqa: PLC0415
    import platform  # noqa: PLC0415

    import keras  # noqa: PLC0415 - already imported by training

    from cxrlib.core.tfsetup import tf  # noqa: PLC0415

    return {"tensorflow": tf().__version__, "keras": keras.__version__, "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "machine": platform.machine()}


def _reload(out_dir: Path):
    from cxrlib.lungs.network import load_asset  # noqa: PLC0415

    return load_asset(out_dir)
