"""How every classifier trains: which layers, its compilation, the schedule and stopping.

:func:`prepare_finetune` sets the trainable flags of a model before it is compiled for
fine-tuning (``TrainConfig.finetune_from``, ``TrainConfig.freeze_batchnorm``);
:func:`compile_classifier` compiles a model (a whole one, or a head on cached features) with
the project's optimizer, loss and metric; :func:`fit_callbacks` gives the learning-rate
callbacks of ``TrainConfig.schedule`` and early stopping. Every fit uses these (the engine's
modes, and the heads leave-one-source-out trains through :func:`cxrlib.training.head_fit.
fit_head`), so they always train alike: **the loss** is the one compiled here, and every loop
reads it from the model (``model.loss``). The recipe itself (which values) is
:meth:`cxrlib.core.config.TrainConfig.finetune_recipe`.
"""
from __future__ import annotations

import math


def prepare_finetune(model, tcfg) -> dict:
    """Make ``model``'s layers trainable as ``tcfg`` says; returns facts for metrics.json.

    * every layer trainable (published), then
    * with ``finetune_from``: the layers before that one (in the model's layer order, which is
      the topological order of the flat functional models of :mod:`cxrlib.models`) frozen;
    * with ``freeze_batchnorm``: every ``BatchNormalization`` layer frozen. A frozen Keras 3
      BatchNormalization runs in inference mode (moving mean and variance, not the batch's), so
      small, class-skewed batches cannot shift the ImageNet statistics the backbone relies on.

    Raises:
        ValueError: ``finetune_from`` names no layer of the model.
    """
    from cxrlib.core.tfsetup import keras  # noqa: PLC0415

    model.trainable = True
    layers = model.layers
    for layer in layers:  # a loaded head-mode run keeps its backbone layers' own False flags
        layer.trainable = True
    frozen_before = 0
    if tcfg.finetune_from:
        names = [layer.name for layer in layers]
        if tcfg.finetune_from not in names:
            raise ValueError(f"finetune_from={tcfg.finetune_from!r} is not a layer of the "
                             f"{model.name} model (e.g. {names[len(names) // 2]!r})")
        frozen_before = names.index(tcfg.finetune_from)
        for layer in layers[:frozen_before]:
            layer.trainable = False
    frozen_bn = 0
    if tcfg.freeze_batchnorm:
        for layer in layers:
            if isinstance(layer, keras().layers.BatchNormalization) and layer.trainable:
                layer.trainable = False
                frozen_bn += 1
    trainable = sum(int(math.prod(v.shape)) for v in model.trainable_weights)
    total = sum(int(math.prod(v.shape)) for v in model.weights)
    return {"frozen_layers": frozen_before, "frozen_batchnorm_layers": frozen_bn,
            "trainable_parameters": trainable, "parameters": total}


def compile_classifier(model, learning_rate: float) -> None:
    """Compile ``model`` with Adam at ``learning_rate``, categorical cross-entropy and accuracy.

    The loss is an object (not the string) so the compiled head loop
    (:func:`cxrlib.training.head_fit.fit_head_compiled`) can call it too. XLA on a GPU only: on
    the 2-core CPU it was 4.5x slower (../shared/NOTES.md).
    """
    from cxrlib.core.tfsetup import gpus, keras  # noqa: PLC0415

    k = keras()
    model.compile(optimizer=k.optimizers.Adam(learning_rate),
                  loss=k.losses.CategoricalCrossentropy(),
                  metrics=[k.metrics.CategoricalAccuracy(name="accuracy")],
                  jit_compile=bool(gpus()))


def fit_callbacks(tcfg, steps_per_epoch: int) -> list:
    """The learning-rate callbacks of ``tcfg.schedule``, then early stopping.

    ``"plateau"``: ReduceLROnPlateau on validation loss (factor 0.3, patience 2: published).
    ``"cosine"``: :func:`warmup_cosine` over ``tcfg.epochs`` epochs of ``steps_per_epoch``.
    With ``tcfg.early_stopping``: EarlyStopping on validation loss with that patience (the
    weights of the best epoch are kept by the caller's own callback).
    """
    from cxrlib.core.tfsetup import keras  # noqa: PLC0415

    k = keras()
    if tcfg.schedule == "cosine":
        cbs = [warmup_cosine(tcfg.learning_rate, steps_per_epoch, tcfg.warmup_epochs,
                             tcfg.epochs)]
    else:
        cbs = [k.callbacks.ReduceLROnPlateau("val_loss", factor=0.3, patience=2, verbose=0)]
    if tcfg.early_stopping:
        cbs.append(k.callbacks.EarlyStopping("val_loss", patience=tcfg.early_stopping))
    return cbs


def cosine_rate(step: int, peak: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate at 0-based ``step``: linear warm-up to ``peak`` over ``warmup_steps``
    (the first step at ``peak / warmup_steps``), then half a cosine from ``peak`` to 0 at
    ``total_steps``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * peak * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(peak: float, steps_per_epoch: int, warmup_epochs: int, epochs: int):
    """A Keras callback setting the optimizer's rate to :func:`cosine_rate` before every step.

    A callback rather than a ``LearningRateSchedule`` object: the optimizer keeps a plain rate
    (so ``best.keras`` loads in plain Keras, and a resumed run continues on the same curve from
    its epoch number alone).
    """
    def set_rate(model, step: int) -> None:
        model.optimizer.learning_rate.assign(cosine_rate(
            step, peak, warmup_epochs * steps_per_epoch, epochs * steps_per_epoch))

    return per_step(steps_per_epoch, set_rate)


def per_step(steps_per_epoch: int, set_step):
    """A Keras callback calling ``set_step(model, step)`` before every training step, ``step``
    counted from the first epoch's first batch (``epoch * steps_per_epoch + batch``), so a
    resumed run continues a schedule from its epoch number alone (the learning-rate schedule,
    the adversarial branch's warm-up)."""
    from cxrlib.core.tfsetup import keras  # noqa: PLC0415

    class PerStep(keras().callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            set_step(self.model, self.epoch * steps_per_epoch + batch)

    return PerStep()
