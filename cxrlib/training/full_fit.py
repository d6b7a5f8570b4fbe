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
    if initial_epoch < tcfg.epochs:
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
