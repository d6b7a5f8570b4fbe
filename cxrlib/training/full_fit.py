"""Fine-tune mode of the engine: the start from a head run, and the fit of the trainable layers.

Functions of the engine's ``_Training`` (``t``: its config, data, model, status and callbacks),
kept here so that the engine module stays one screenful per mode. See
:mod:`cxrlib.training.engine` for the whole picture and :mod:`cxrlib.training.distribute` for
what changes with several workers.
"""
from __future__ import annotations

import math
import shutil
import warnings

import numpy as np

from cxrlib.training.callbacks import resume
from cxrlib.training.finetune import compile_classifier, prepare_finetune


def start_from_head_run(t, head_cfg) -> None:
    """Load the trained weights of the head run ``head_cfg`` (training it first if needed).

    On one machine the head run trains in this process. In a cluster the chief trains it as a
    process of its own outside the cluster (this process's strategy spans the workers, a head
    run does not), and every worker loads its model file later, together (:func:`_share_start`).

    Raises:
        RuntimeError: the head run did not finish.
    """
    from cxrlib.core.cluster import role  # noqa: PLC0415
    from cxrlib.runs import runner  # noqa: PLC0415
    from cxrlib.training.distribute import without_cluster_env  # noqa: PLC0415

    if not t.chief:
        return
    t.status(message="training the head first (init from head)")
    if role() is None:
        head_run = runner.train_foreground(head_cfg, fingerprint=t.data.fingerprint)
    else:
        with without_cluster_env():
            head_run = runner.start(head_cfg, fingerprint=t.data.fingerprint)
        runner.wait(head_run, poll_s=1.0)
    state = head_run.status().get("state")
    if state != "done":
        raise RuntimeError(f"the head run {head_run.id} to start from ended {state}: "
                           f"{head_run.status().get('error') or ''}".strip())
    if role() is None:
        t.model.load_weights(head_run.model_path)
    else:
        t.head_model_path = head_run.model_path
    t.info["init_from_head_run"] = head_run.id
    t.lap("init_from_head")


def fit_trainable_layers(t, images) -> np.ndarray | None:
    """Fine-tune ``t.model`` (trainable layers per :func:`prepare_finetune`); returns the test
    split's probabilities on the chief (None on the other workers)."""
    from cxrlib.core.cluster import role  # noqa: PLC0415
    from cxrlib.core.tfsetup import tf  # noqa: PLC0415
    from cxrlib.models.inference import predict  # noqa: PLC0415
    from cxrlib.training.input_pipeline import input_pipeline  # noqa: PLC0415

    tcfg, model = t.cfg.train, t.model
    t.info.update(prepare_finetune(model, tcfg))
    compile_classifier(model, tcfg.learning_rate)
    strategy = tf().distribute.get_strategy()
    if role() is None:
        initial_epoch, best = resume(t, model)
    else:
        initial_epoch, best = _share_start(t, strategy, model)
    weight = t._class_weight()
    # Every remaining epoch in one dataset (epoch_order: the same order in every process).
    train_ds = input_pipeline(images, t.idx["train"], t.onehot, tcfg, training=True,
                              class_weight=weight, epochs=range(initial_epoch, tcfg.epochs))
    val_ds = input_pipeline(images, t.idx["val"], t.onehot, tcfg, training=False,
                            class_weight=weight)
    steps = math.ceil(len(t.idx["train"]) / tcfg.batch_size)
    # Saving a model under MultiWorkerMirroredStrategy runs collectives, so every worker saves
    # when the chief does: the others into their scratch folders (deleted at the end).
    progress, cbs = t._callbacks(model, steps, t.chief, True, initial_epoch, best)
    t.status(message="fine-tuning")
    if initial_epoch < tcfg.epochs:
        if strategy.num_replicas_in_sync > 1:
            _fit_replicated(t, strategy, model, train_ds, val_ds, cbs, initial_epoch, steps)
        else:
            model.fit(train_ds, validation_data=val_ds, epochs=tcfg.epochs, verbose=0,
                      initial_epoch=initial_epoch, steps_per_epoch=steps, callbacks=cbs,
                      shuffle=False)
    progress.restore_best()
    t.lap("fit_all")
    if not t.chief:
        return None
    return predict(model, images[t.idx["test"]], batch_size=tcfg.batch_size)


def _share_start(t, strategy, model) -> tuple[int, float]:
    """A cluster: check every worker trains this run, then start all of them from the chief's
    state: its epoch checkpoint when it resumes, else its head run's model (init from head),
    else the weights as built. Loading weights under the strategy runs collectives, so the
    chief's file is first copied to every worker and all of them load it together."""
    from cxrlib.core.fsutil import read_json  # noqa: PLC0415
    from cxrlib.runs.registry import run_id  # noqa: PLC0415
    from cxrlib.training.distribute import (broadcast_file, check_same_run,  # noqa: PLC0415
                                            sync_from_chief)

    check_same_run(strategy, run_id(t.cfg, t.data.fingerprint))
    folder = t.run_.folder
    state = read_json(folder / "checkpoint.json") if t.chief else None
    checkpoint = folder / "checkpoint.weights.h5" if state else None
    initial_epoch, best = 0, float("inf")
    received = broadcast_file(strategy, checkpoint, folder / "from_chief" / "checkpoint.weights.h5")
    if received is None:
        received = broadcast_file(strategy, getattr(t, "head_model_path", None),
                                  folder / "from_chief" / "head.keras")
    elif t.chief:
        initial_epoch, best = int(state["epoch"]), float(state["best_val_loss"])
        t.info["resumed_from_epoch"] = initial_epoch
    if received is not None:
        with warnings.catch_warnings():  # "skipping optimizer variables": its state restarts
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(received)
        shutil.rmtree(received.parent, ignore_errors=True)
        if state:
            model.optimizer.learning_rate.assign(state["lr"])
    # Epoch, best loss and rate to every worker (and the weights once more: cheap, and exact).
    return sync_from_chief(strategy, model, initial_epoch, best)


def _fit_replicated(t, strategy, model, train_ds, val_ds, cbs, initial_epoch: int,
                    steps: int) -> None:
    from cxrlib.core.cluster import role  # noqa: PLC0415
    from cxrlib.training.distribute import progress_callback  # noqa: PLC0415
    from cxrlib.training.replicated_fit import fit_replicated  # noqa: PLC0415

    if role() is not None:
        cbs = [*cbs, progress_callback(t, strategy)]
    # A cancel is one decision for all workers (fit_replicated's collective stop flag): a
    # callback raising on the chief alone would leave the others waiting in a collective.
    stop, t.cancel_check = t.cancel_check, (lambda: False)
    try:
        fit_replicated(model, train_ds, val_ds, strategy=strategy, epochs=t.cfg.train.epochs,
                       initial_epoch=initial_epoch, steps_per_epoch=steps, callbacks=cbs,
                       stop=stop)
    finally:
        t.cancel_check = stop
