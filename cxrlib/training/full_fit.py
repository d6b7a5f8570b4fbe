"""Fine-tune mode of the engine: the fit of the trainable layers.

Functions of a run's :class:`cxrlib.training.context.TrainingContext` (``ctx``: its config,
data, model, status), kept here so that the engine module stays one screenful per mode. See
:mod:`cxrlib.training.engine` for the whole picture and :mod:`cxrlib.training.distribute` for
what changes with several workers.
"""
from __future__ import annotations

import math
import shutil
import warnings

import numpy as np

from cxrlib.training.callbacks import progress_callback, resume
from cxrlib.training.finetune import compile_classifier, fit_callbacks, prepare_finetune


def fit_trainable_layers(ctx, images) -> np.ndarray | None:
    """Fine-tune ``ctx.model`` (trainable layers per :func:`prepare_finetune`); returns the test
    split's probabilities on the chief (None on the other workers)."""
    from cxrlib.core.cluster import role  # noqa: PLC0415
    from cxrlib.core.tfsetup import tf  # noqa: PLC0415
    from cxrlib.models.inference import predict  # noqa: PLC0415
    from cxrlib.training.input_pipeline import input_pipeline  # noqa: PLC0415

    tcfg, model = ctx.cfg.train, ctx.model
    ctx.info.update(prepare_finetune(model, tcfg))
    compile_classifier(model, tcfg.learning_rate)
    strategy = tf().distribute.get_strategy()
    if role() is None:
        initial_epoch, best = resume(ctx, model)
    else:
        initial_epoch, best = _share_start(ctx, strategy, model)
    weight = ctx.class_weight()
    # Every remaining epoch in one dataset (epoch_order: the same order in every process).
    train_ds = input_pipeline(images, ctx.idx["train"], ctx.onehot, tcfg, training=True,
                              class_weight=weight, epochs=range(initial_epoch, tcfg.epochs))
    val_ds = input_pipeline(images, ctx.idx["val"], ctx.onehot, tcfg, training=False,
                            class_weight=weight)
    steps = math.ceil(len(ctx.idx["train"]) / tcfg.batch_size)
    replicated = strategy.num_replicas_in_sync > 1
    # Saving a model under MultiWorkerMirroredStrategy runs collectives, so every worker saves
    # when the chief does: the others into their scratch folders (deleted at the end). With
    # several replicas a cancel is one decision for all workers (fit_replicated's collective
    # stop flag): a callback raising on the chief alone would leave the others waiting.
    progress = progress_callback(True)(ctx, steps, ctx.chief, True, initial_epoch, best,
                                       cancel_check=(lambda: False) if replicated else None)
    cbs = [progress, *fit_callbacks(tcfg, steps)]
    ctx.status(message="fine-tuning")
    if initial_epoch < tcfg.epochs and tcfg.adversarial:
        if replicated:
            raise ValueError("adversarial fine-tuning trains on one device; several replicas "
                             "(GPUs, workers) are not supported with --adversarial")
        from cxrlib.data.identity import film_sources  # noqa: PLC0415

        fit_adversarial(model, images, ctx.idx["train"], ctx.idx["val"], ctx.onehot,
                        film_sources(ctx.data.manifest).to_numpy(), tcfg, callbacks=cbs,
                        initial_epoch=initial_epoch, info=ctx.info)
    elif initial_epoch < tcfg.epochs:
        if replicated:
            _fit_replicated(ctx, strategy, model, train_ds, val_ds, cbs, initial_epoch, steps)
        else:
            model.fit(train_ds, validation_data=val_ds, epochs=tcfg.epochs, verbose=0,
                      initial_epoch=initial_epoch, steps_per_epoch=steps, callbacks=cbs,
                      shuffle=False)
    progress.restore()
    ctx.lap("fit_all")
    if not ctx.chief:
        return None
    return predict(model, images[ctx.idx["test"]], batch_size=tcfg.batch_size)


def fit_adversarial(model, images, train_rows: np.ndarray, val_rows: np.ndarray,
                    onehot: np.ndarray, sources, tcfg, *, callbacks, initial_epoch: int = 0,
                    info: dict | None = None):
    """Fine-tune compiled ``model`` (trainable layers already set) with the class-conditional
    source branch on its pooled backbone features (``TrainConfig.adversarial``: the reversal
    weight; ``adversarial_warmup``: DANN's schedule), see :mod:`cxrlib.training.adversary`.

    The same pipeline, loss (``model.loss``), schedule and callbacks as a plain fine-tune
    (``callbacks`` holds the best-weights keeper); the loop is
    :func:`cxrlib.training.replicated_fit.fit_replicated` on one device with the branch as its
    extra term, driven by :func:`cxrlib.models.epochs.run_epochs`. The branch starts afresh
    on a resumed run (only the model is checkpointed) and is discarded at the end.

    Args:
        sources: every dataset row's source (:func:`cxrlib.data.identity.film_sources`, the
            rule of the per-source table and leave-one-source-out).
        info: facts for metrics.json (``adversarial_sources``), when given.

    Returns:
        The :class:`cxrlib.training.adversary.SourceAdversary` it trained (for measurements).

    Raises:
        ValueError: the training rows hold fewer than two sources, or the model has no pooled
            backbone features (:func:`cxrlib.training.adversary.backbone_joint`).
    """
    from cxrlib.core.tfsetup import tf  # noqa: PLC0415
    from cxrlib.training.adversary import SourceAdversary, backbone_joint  # noqa: PLC0415
    from cxrlib.training.input_pipeline import input_pipeline  # noqa: PLC0415
    from cxrlib.training.replicated_fit import fit_replicated  # noqa: PLC0415

    adv = SourceAdversary(backbone_joint(model), np.asarray(sources)[train_rows],
                          onehot[train_rows], tcfg.adversarial, warmup=tcfg.adversarial_warmup)
    if info is not None:
        info["adversarial_sources"] = adv.n_sources
    train_ds = input_pipeline(images, train_rows, onehot, tcfg, training=True,
                              epochs=range(initial_epoch, tcfg.epochs), positions=True)
    val_ds = input_pipeline(images, val_rows, onehot, tcfg, training=False)
    steps = math.ceil(len(train_rows) / tcfg.batch_size)
    schedule = adv.schedule(steps, tcfg.epochs)
    fit_replicated(model, train_ds, val_ds, strategy=tf().distribute.get_strategy(),
                   epochs=tcfg.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                   callbacks=[*callbacks, *([schedule] if schedule else [])], extra=adv)
    return adv


def _share_start(ctx, strategy, model) -> tuple[int, float]:
    """A cluster: check every worker trains this run, then start all of them from the chief's
    state: its epoch checkpoint when it resumes, else its head run's model (init from head),
    else the weights as built. Loading weights under the strategy runs collectives, so the
    chief's file is first copied to every worker and all of them load it together."""
    from cxrlib.core.fsutil import read_json  # noqa: PLC0415
    from cxrlib.core.config import run_id  # noqa: PLC0415
    from cxrlib.training.distribute import (broadcast_file, check_same_run,  # noqa: PLC0415
                                            sync_from_chief)

    check_same_run(strategy, run_id(ctx.cfg, ctx.data.fingerprint))
    folder = ctx.run.folder
    state = read_json(folder / "checkpoint.json") if ctx.chief else None
    checkpoint = folder / "checkpoint.weights.h5" if state else None
    initial_epoch, best = 0, float("inf")
    received = broadcast_file(strategy, checkpoint, folder / "from_chief" / "checkpoint.weights.h5")
    if received is None:
        received = broadcast_file(strategy, ctx.head_model_path,
                                  folder / "from_chief" / "head.keras")
    elif ctx.chief:
        initial_epoch, best = int(state["epoch"]), float(state["best_val_loss"])
        ctx.info["resumed_from_epoch"] = initial_epoch
    if received is not None:
        with warnings.catch_warnings():  # "skipping optimizer variables": its state restarts
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(received)
        shutil.rmtree(received.parent, ignore_errors=True)
        if state:
            model.optimizer.learning_rate.assign(state["lr"])
    # Epoch, best loss and rate to every worker (and the weights once more: cheap, and exact).
    return sync_from_chief(strategy, model, initial_epoch, best)


def _fit_replicated(ctx, strategy, model, train_ds, val_ds, cbs, initial_epoch: int,
                    steps: int) -> None:
    from cxrlib.core.cluster import role  # noqa: PLC0415
    from cxrlib.training.distribute import worker_progress_callback  # noqa: PLC0415
    from cxrlib.training.replicated_fit import fit_replicated  # noqa: PLC0415

    if role() is not None:
        cbs = [*cbs, worker_progress_callback(ctx, strategy)]
    fit_replicated(model, train_ds, val_ds, strategy=strategy, epochs=ctx.cfg.train.epochs,
                   initial_epoch=initial_epoch, steps_per_epoch=steps, callbacks=cbs,
                   stop=ctx.cancel_check)
