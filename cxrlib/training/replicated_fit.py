"""The fine-tune loop for several replicas (GPUs of one machine, or workers of a cluster).

Keras 3.15's ``model.fit`` cannot train under several replicas with this TensorFlow: its
first-batch symbolic build calls ``strategy.reduce`` on the ``(x, y)`` tuple, and its per-step
log reduction under ``MultiWorkerMirroredStrategy`` asks for axis 0 of scalar logs; both raise.
:func:`fit_replicated` is the same training, written as a plain ``strategy.run`` loop, with
``model.fit``'s callback protocol, so the engine's callbacks (progress, checkpoints,
schedules, early stopping) work unchanged. It is also the one-device loop of adversarial
fine-tuning (``extra``: a loss term ``model.fit`` has no place for).

The loss is the model's compiled one (``model.loss``, set by
:func:`cxrlib.training.finetune.compile_classifier`), per film. The loss of a step is the sum of
the (sample-weighted) per-film losses of the whole
global batch divided by the global batch's size, each replica contributing its share: exactly
the single-process ``model.fit`` step (``sum_over_batch_size``) on that global batch, however
the batch is divided, even into an empty share for a replica at the end of an epoch.
Gradients are summed over replicas by the optimizer (Keras's ``all_reduce`` of gradients in a
replica context).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cxrlib.models.epochs import run_epochs
from cxrlib.training.context import Cancelled


def fit_replicated(model, train_ds, val_ds, *, strategy, epochs: int, steps_per_epoch: int,
                   initial_epoch: int = 0, callbacks=(),
                   stop: Callable[[], bool] = lambda: False, extra=None) -> None:
    """Train compiled ``model`` on ``train_ds`` under ``strategy``, validating on ``val_ds``.

    Args:
        model: compiled Keras model, built under ``strategy.scope()``.
        train_ds, val_ds: ``tf.data`` datasets of global batches ``(x, y)`` or ``(x, y, w)``
            (auto-sharded by ``strategy.experimental_distribute_dataset``); ``train_ds`` holds
            the batches of all epochs from ``initial_epoch`` on, one after the other.
        strategy: the ``tf.distribute`` strategy.
        epochs, initial_epoch, steps_per_epoch: as in ``model.fit`` (``steps_per_epoch``
            batches of ``train_ds`` make an epoch).
        callbacks: Keras callbacks; they get ``model.fit``'s hooks (train, epoch and batch
            begin/end) and logs ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``.
        stop: polled before every step on every worker; when any worker's returns True, all
            of them raise :class:`Cancelled` after the same step (so none is left waiting in
            a collective).
        extra: an extra loss term trained with the model (one replica only: adversarial
            fine-tuning, :func:`cxrlib.training.full_fit.fit_adversarial`): ``variables`` and
            ``forward(x, rows) -> (probabilities, term)``; ``train_ds`` then yields
            ``(x, y, w, rows)`` (``rows``: each film's position among the training films). The
            logged losses stay the classification loss alone.

    Raises:
        Cancelled: when ``stop`` asked for it.
    """
    from cxrlib.core.tfsetup import tf as _tf  # noqa: PLC0415

    tf = _tf()

    opt = model.optimizer
    variables = model.trainable_variables + (list(extra.variables) if extra is not None else [])
    with strategy.scope():
        opt.build(variables)
    train_step, val_step = _steps(tf, model, opt, variables, strategy, extra)
    batches = iter(strategy.experimental_distribute_dataset(train_ds))
    dist_val = strategy.experimental_distribute_dataset(val_ds)

    def epoch(number, cbs):
        total = np.zeros(3)
        for step in range(steps_per_epoch):
            batch = next(batches)
            cbs.on_train_batch_begin(step)
            sums = train_step(batch, tf.constant(1.0 if stop() else 0.0)).numpy()
            if sums[3] > 0:
                raise Cancelled()
            total += sums[:3]
            cbs.on_train_batch_end(step, {"loss": total[0] / total[2],
                                          "accuracy": total[1] / total[2]})
        val = np.zeros(3)
        for batch in dist_val:
            val += val_step(batch).numpy()
        return {"loss": total[0] / total[2], "accuracy": total[1] / total[2],
                "val_loss": val[0] / val[2], "val_accuracy": val[1] / val[2]}

    run_epochs(model, callbacks, epochs=epochs, steps=steps_per_epoch,
               initial_epoch=initial_epoch, epoch=epoch)


def _steps(tf, model, opt, variables, strategy, extra=None):
    """The compiled train and validation steps: per replica, then summed over replicas."""
    sum_op = tf.distribute.ReduceOp.SUM

    def unpack(batch):
        x, y = batch[0], batch[1]
        w = batch[2] if len(batch) > 2 else tf.ones(tf.shape(y)[:1], tf.float32)
        return x, y, w

    per_film_loss = model.loss.call  # the compiled loss object, unreduced: one value a film

    def film_losses(y, pred, w):
        return per_film_loss(y, tf.cast(pred, tf.float32)) * w

    def hits(y, pred):
        return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(y, -1), tf.argmax(pred, -1)), tf.float32))

    def train_replica(batch, flag):
        x, y, w = unpack(batch)
        ctx = tf.distribute.get_replica_context()
        n_local = tf.cast(tf.shape(y)[0], tf.float32)
        n_global = ctx.all_reduce(sum_op, n_local)
        with tf.GradientTape() as tape:
            if extra is None:
                pred = model(x, training=True)
            else:  # the model's probabilities and the branch's loss from one forward pass
                pred, term = extra.forward(x, batch[3])
            per_film = film_losses(y, pred, w)
            loss = tf.math.divide_no_nan(tf.reduce_sum(per_film), n_global)
            if model.losses:  # regularisers: once per global step, shared by the replicas
                loss += tf.add_n(model.losses) / ctx.num_replicas_in_sync
            total = loss if extra is None else loss + term
            scaled = opt.scale_loss(total)  # mixed precision loss scaling (identity otherwise)
        opt.apply(tape.gradient(scaled, variables), variables)
        return tf.stack([tf.reduce_sum(per_film), hits(y, pred), n_local, flag])

    def val_replica(batch):
        x, y, w = unpack(batch)
        pred = model(x, training=False)
        return tf.stack([tf.reduce_sum(film_losses(y, pred, w)), hits(y, pred),
                         tf.cast(tf.shape(y)[0], tf.float32)])

    @tf.function
    def train_step(batch, flag):
        return strategy.reduce(sum_op, strategy.run(train_replica, args=(batch, flag)), axis=None)

    @tf.function
    def val_step(batch):
        return strategy.reduce(sum_op, strategy.run(val_replica, args=(batch,)), axis=None)

    return train_step, val_step
