"""The training engine: one run of a :class:`~cxrlib.core.config.RunConfig`, into its run folder.

:func:`execute` is what the background process (``python -m cxrlib train``) calls. It reads the
dataset, splits it and loads the preprocessed tensors (:mod:`cxrlib.training.data`), then fits:

* ``head`` mode (``mobilenetv2`` / ``tiny``): the backbone is frozen; its pooled features are
  computed once per dataset rows + preprocessing + backbone and cached
  (:mod:`cxrlib.training.features`), then only the head is fitted on them, in seconds, by
  :func:`cxrlib.training.head_fit.fit_head` (one compiled call per epoch instead of
  ``model.fit``; same loss, optimizer, callbacks and history). The head's layers are shared
  with the full model, so the saved ``best.keras`` is the normal image -> probabilities model.
  Deterministic on CPU: the same config trained twice, in two processes, gives identical
  predictions (seeded shuffling, Keras's seeded dropout).
* ``finetune`` mode (and always for ``small_cnn``, which has no pretrained backbone): all layers
  trainable, fed by a ``tf.data`` pipeline (:mod:`cxrlib.training.input_pipeline`). With
  ``init_from_head`` the model starts from the trained weights of the matching head run
  (:func:`prerequisite`): the runner (:func:`cxrlib.runs.runner.execute_run`) trains that run
  first, as a run of its own, and passes its weights in
  (:class:`cxrlib.training.context.HeadStart`); the engine never starts a run.

Where things are:

* the loss and the optimizer: :func:`cxrlib.training.finetune.compile_classifier` (every loop
  reads the compiled ``model.loss``);
* the schedule and early stopping: :func:`cxrlib.training.finetune.fit_callbacks`;
* the loops: :func:`cxrlib.training.head_fit.fit_head` (every head) on
  :func:`cxrlib.training.head_fit.fit_head_compiled`, ``model.fit``, and
  :func:`cxrlib.training.replicated_fit.fit_replicated`; the hand-written ones are driven by
  :func:`cxrlib.models.epochs.run_epochs`;
* the best weights: :func:`cxrlib.models.epochs.best_weights`;
* what a fit may read or write of the run: :class:`cxrlib.training.context.TrainingContext`.

The fine-tune recipe (:meth:`cxrlib.core.config.TrainConfig.finetune_recipe`): which layers
train and BatchNorm in inference mode (:func:`cxrlib.training.finetune.prepare_finetune`), and
the learning-rate schedule (:func:`cxrlib.training.finetune.fit_callbacks`: plateau, as
published, or warm-up + cosine). Both modes keep the weights of the best validation loss,
optionally stop early, write throttled progress into status.json and check ``cancel_check()``
after every batch (fine-tune) or every epoch (head mode) (:mod:`cxrlib.training.callbacks`).
With ``TrainConfig.tta`` the test predictions average shifted / scaled views
(:mod:`cxrlib.models.tta`).

Devices: head mode runs on one device (its head trains in seconds on cached features). Fine-
tuning runs under :func:`cxrlib.core.tfsetup.distribution_strategy`: one device through
``model.fit``; several GPUs or several machines (``TF_CONFIG``) through
:func:`cxrlib.training.replicated_fit.fit_replicated`, the chief alone writing the run
(:mod:`cxrlib.training.distribute`). Mixed precision and XLA only on a GPU (XLA was 4.5x
slower on the 2-core CPU). The small CNN's loss is the class-weighted cross-entropy
(:func:`cxrlib.models.class_weights` as sample weights on Keras's standard loss).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from cxrlib.core.classes import task_classes
from cxrlib.core.config import HEAD_FAMILIES, RunConfig, TrainConfig
from cxrlib.core.tfsetup import TF_ENV
from cxrlib.training.callbacks import progress_callback
from cxrlib.training.context import Cancelled, HeadStart, TrainingContext
from cxrlib.training.data import DatasetChanged, load_training_data
from cxrlib.training.distribute import is_chief
from cxrlib.training.head_fit import fit_head

#: Environment the training process sets before TensorFlow is imported (see cxrlib.core.tfsetup).
TRAIN_ENV = TF_ENV

__all__ = ["Cancelled", "DatasetChanged", "HEAD_FAMILIES", "HeadStart", "TRAIN_ENV", "execute",
           "head_run_config", "prerequisite"]


def execute(run, *, cancel_check: Callable[[], bool] = lambda: False,
            start_from: HeadStart | None = None) -> None:
    """Train ``run`` and write every artifact into ``run.folder``.

    Args:
        run: a :class:`cxrlib.runs.run.Run` (``folder``, ``config``, ``fingerprint``,
            ``write_status`` and the ``write_*`` / ``save_model`` helpers).
        cancel_check: called after every batch (fine-tune), every epoch (head mode) and during
            preprocessing / feature extraction; when it returns True training stops and the
            run's state becomes ``cancelled``.
        start_from: the trained head run of :func:`prerequisite` (needed by the chief of a
            fine-tune with ``init_from_head``; :func:`cxrlib.runs.runner.execute_run` trains
            it and passes it in).

    Raises:
        Whatever failed, after writing ``state="failed"`` and the error into status.json.
    """
    ctx = TrainingContext(run, run.config, tuple(task_classes(run.config.data.task)),
                          cancel_check=cancel_check, chief=is_chief(), start_from=start_from)
    try:
        _train(ctx)
    except Cancelled:
        run.write_status(state="cancelled", message="cancelled by request", eta_s=None)
    except BaseException as exc:
        run.write_status(state="failed", error=f"{type(exc).__name__}: {exc}", eta_s=None)
        raise


def head_run_config(cfg: RunConfig) -> RunConfig:
    """The head-mode run a fine-tune with ``init_from_head`` starts from.

    Same data, preprocessing, model and split; the head trained with the head-mode defaults
    (learning rate, epochs, early stopping) and this run's seed, batch size and augmentation.
    """
    t = cfg.train
    head = TrainConfig(mode="head", seed=t.seed, batch_size=t.batch_size, augment=t.augment,
                       rotation=t.rotation, hflip=t.hflip,
                       feature_augment_copies=t.feature_augment_copies)
    return cfg.replace(train=head)


def prerequisite(cfg: RunConfig) -> RunConfig | None:
    """The run that must be finished before ``cfg`` trains (its head run), or None."""
    if cfg.model.family in HEAD_FAMILIES and cfg.train.mode != "head" and cfg.train.init_from_head:
        return head_run_config(cfg)
    return None


def _train(ctx: TrainingContext) -> None:
    from cxrlib.core.tfsetup import gpus, keras  # noqa: PLC0415

    cfg = ctx.cfg
    ctx.status(state="running", message="reading the dataset", error=None,
               epoch=0, epochs=cfg.train.epochs, step=0, steps=0, eta_s=None)
    strategy = _strategy(cfg)  # before any other TensorFlow op (multi-worker needs it)
    if not _cluster_go(ctx, strategy):
        return
    keras().utils.set_random_seed(cfg.train.seed)  # the one place seeds are set
    if gpus():
        keras().mixed_precision.set_global_policy("mixed_float16")
    ctx.lap("setup")
    ctx.data = load_training_data(cfg, ctx.run, status=ctx.status, progress=ctx.progress)
    ctx.info.update(ctx.data.info)
    ctx.lap("data")
    y = np.array([ctx.classes.index(c) for c in ctx.data.manifest["label"]])
    ctx.onehot = np.eye(len(ctx.classes), dtype=np.float32)[y]
    ctx.idx = {s: ctx.data.indices(s) for s in ("train", "val", "test")}
    ctx.info["test_used_for_validation"] = len(ctx.idx["val"]) == 0
    if not len(ctx.idx["val"]):
        ctx.idx["val"] = ctx.idx["test"]
    if not len(ctx.idx["train"]) or not len(ctx.idx["test"]):
        raise ValueError("the split left no training or no test images")
    with strategy.scope():
        from cxrlib.models import build_model  # noqa: PLC0415
        from cxrlib.training.full_fit import fit_trainable_layers  # noqa: PLC0415

        ctx.model = build_model(cfg.model, ctx.classes, cfg.preprocess.size)
        ctx.lap("build")
        if cfg.model.family in HEAD_FAMILIES and cfg.train.mode == "head":
            probs = _fit_head(ctx)
        else:
            if prerequisite(cfg) is not None:
                _start_from_head_run(ctx)
            probs = fit_trainable_layers(ctx, ctx.data.images)
    _finish(ctx, probs)


def _strategy(cfg: RunConfig):
    """One device for head mode; :func:`distribution_strategy` for fine-tuning."""
    from cxrlib.core.cluster import role  # noqa: PLC0415
    from cxrlib.core.tfsetup import distribution_strategy, tf  # noqa: PLC0415

    if cfg.model.family in HEAD_FAMILIES and cfg.train.mode == "head":
        if role() is not None:
            raise ValueError("head mode trains on one machine (seconds on cached features); "
                             "several workers are for --mode finetune")
        return tf().distribute.get_strategy()
    return distribution_strategy()


def _cluster_go(ctx: TrainingContext, strategy) -> bool:
    """In a cluster, the chief's word that there is something to train (see .distribute)."""
    from cxrlib.core.cluster import role  # noqa: PLC0415
    from cxrlib.training.distribute import handshake  # noqa: PLC0415

    if role() is None or handshake(strategy, proceed=True):
        return True
    ctx.status(state="done", message="nothing to train: the chief's run was finished")
    return False


def _fit_head(ctx: TrainingContext) -> np.ndarray:
    """Head mode: cached backbone features, then :func:`fit_head`; the test probabilities."""
    from cxrlib.models import backbone_and_head  # noqa: PLC0415
    from cxrlib.training.features import config_features  # noqa: PLC0415

    tcfg = ctx.cfg.train
    feature_model, head = backbone_and_head(ctx.model)
    feature_model.trainable = False
    ctx.status(message="backbone features")
    fs = config_features(feature_model, ctx.data.images, ctx.cfg,
                         rel_paths=ctx.data.manifest["rel_path"].tolist(),
                         fingerprint=ctx.data.fingerprint, progress=ctx.progress("backbone features"))
    ctx.info.update(feature_cache_hit=fs.hit, feature_seconds=round(fs.seconds, 2))
    ctx.lap("features")
    tr = ctx.idx["train"]
    steps = -(-len(tr) * fs.features.shape[0] // tcfg.batch_size)
    # head mode: the schedule is always "plateau" (canonical config)
    progress = progress_callback(False)(ctx, steps, record=True, checkpoint=False)
    ctx.status(message="training the head")
    sources = None
    if tcfg.source_balance:  # each (class, source) cell weighs the same (issue 23)
        from cxrlib.data.identity import film_sources  # noqa: PLC0415

        sources = film_sources(ctx.data.manifest).to_numpy()
    fit_head(head, fs.features, tr, ctx.idx["val"], ctx.onehot, tcfg, keeper=progress,
             sources=sources)
    ctx.lap("fit_head")
    return head.predict(fs.features[0][ctx.idx["test"]], batch_size=256, verbose=0)


def _start_from_head_run(ctx: TrainingContext) -> None:
    """Load the head run's weights (:class:`HeadStart`). In a cluster only the chief has the
    file: every worker loads it later, together (:func:`.full_fit._share_start`)."""
    from cxrlib.core.cluster import role  # noqa: PLC0415

    if not ctx.chief:
        return
    start = ctx.start_from
    if start is None:
        raise ValueError("this fine-tune starts from its head run (init_from_head): train it "
                         "through cxrlib.runs.runner, which trains the head run first")
    if role() is None:
        ctx.model.load_weights(start.model_path)
    else:
        ctx.head_model_path = start.model_path
    ctx.info["init_from_head_run"] = start.run_id
    ctx.lap("init_from_head")
    timings = ctx.info["timings"]
    timings["init_from_head"] = round(timings["init_from_head"] + start.seconds, 2)
    ctx.t0 -= start.seconds  # the run's seconds include getting its head run


def _finish(ctx: TrainingContext, probs: np.ndarray | None) -> None:
    from cxrlib.training.results import write_results  # noqa: PLC0415

    run, cfg, idx = ctx.run, ctx.cfg, ctx.idx
    if not ctx.chief:  # another worker: saves as the chief does (collectives), then drops it
        from cxrlib.training.distribute import discard_scratch_model  # noqa: PLC0415

        run.save_model(ctx.model)
        discard_scratch_model(run)
        ctx.status(state="done", message="done (worker: the chief wrote the run)", eta_s=0)
        return
    tta = cfg.train.tta
    if tta != "none":
        from cxrlib.models.tta import predict_tta  # noqa: PLC0415

        ctx.status(message=f"test-time augmentation ({tta})")
        probs = predict_tta(ctx.model, ctx.data.images[idx["test"]], tta, identity=probs)
    ctx.status(message="writing results")
    ctx.lap("predict")
    run.save_model(ctx.model)
    ctx.lap("save")
    test = ctx.data.manifest.iloc[idx["test"]]
    info = {**ctx.info, "n_train": int(len(idx["train"])), "n_val": int(len(idx["val"])),
            "seconds": round(time.perf_counter() - ctx.t0, 2),
            "family": cfg.model.family, "mode": cfg.train.mode}
    metrics = write_results(run, test, ctx.onehot[idx["test"]], probs, ctx.classes, info)
    ctx.status(state="done", message="done", eta_s=0,
               metrics={k: metrics[k] for k in ("accuracy", "macro_auc", "loss")})
