"""The one head fit on cached backbone features, and its fast loop.

:func:`fit_head` is how every head is trained: a head-mode run (:mod:`cxrlib.training.engine`)
and each fold of leave-one-source-out (:mod:`cxrlib.audit.loso`, on a :func:`fresh_head`). It
compiles the head (:func:`cxrlib.training.finetune.compile_classifier`: the loss), stacks the
augmented feature copies, runs :func:`fit_head_compiled` (the loop: one compiled call per epoch,
fused Adam, driven by :func:`cxrlib.models.epochs.run_epochs`) with the schedule
(:func:`cxrlib.training.finetune.fit_callbacks`) and keeps the best weights
(:func:`cxrlib.models.epochs.best_weights`). It reproduces what ``model.fit`` does with the
same callbacks, without Keras's per-epoch and per-step overhead.
"""
from __future__ import annotations

import math

import numpy as np

from cxrlib.models.epochs import best_weights, run_epochs
from cxrlib.training.finetune import compile_classifier, fit_callbacks
from cxrlib.training.source_balance import training_weights


def fit_head(head, features: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray,
             onehot: np.ndarray, tcfg, *, keeper=None, extra=None, sources=None):
    """Compile and fit ``head`` (features -> probabilities) on some rows; it ends holding the
    weights of its best validation loss.

    Args:
        head: the head to train (its own layers, or those it shares with a whole model).
        features: ``(copies, N, D)`` cached features; training uses every copy (the augmented
            ones too), validation the originals (``features[0]``).
        train_rows / val_rows: row indices into ``features[k]``.
        onehot: ``(N, C)`` true classes.
        tcfg: the :class:`cxrlib.core.config.TrainConfig` (rate, epochs, batch, seed, schedule,
            early stopping).
        keeper: the best-weights keeper to use (a run's progress callback, which is one), else
            a new :func:`best_weights`; it runs before the schedule's callbacks.
        extra: ``extra(head, rows, y_train)`` making an extra loss term of the fit (see
            :func:`fit_head_compiled`), ``rows`` being the dataset row of every training row
            (e.g. the source-adversarial branch, :func:`cxrlib.audit.adversarial.adversary`).
        sources: every dataset row's source; with ``tcfg.source_balance`` each (class, source)
            cell of the training rows weighs the same in the loss
            (:func:`cxrlib.training.source_balance.training_weights`).

    Returns:
        The keeper (``best``, ``best_epoch``).
    """
    compile_classifier(head, tcfg.learning_rate)
    copies = features.shape[0]
    x_train = np.concatenate([features[k][train_rows] for k in range(copies)])
    y_train = np.concatenate([onehot[train_rows]] * copies)
    keeper = keeper if keeper is not None else best_weights()
    steps = math.ceil(len(x_train) / tcfg.batch_size)
    term = extra(head, np.concatenate([train_rows] * copies), y_train) if extra else None
    fit_head_compiled(head, x_train, y_train, features[0][val_rows], onehot[val_rows],
                      epochs=tcfg.epochs, batch_size=tcfg.batch_size, seed=tcfg.seed,
                      callbacks=[keeper, *fit_callbacks(tcfg, steps)], extra=term,
                      sample_weight=training_weights(tcfg, onehot, sources, train_rows, copies))
    keeper.restore()
    return keeper


def fresh_head(template, seed: int):
    """A copy of ``template``'s architecture with fresh weights, initialised from ``seed``
    (leave-one-source-out: every fold starts from the same initial weights)."""
    from cxrlib.core.tfsetup import keras  # noqa: PLC0415

    keras().utils.set_random_seed(seed)
    return keras().models.clone_model(template)


def fit_head_compiled(head, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                      y_val: np.ndarray, *, epochs: int, batch_size: int, seed: int,
                      callbacks, extra=None, sample_weight: np.ndarray | None = None) -> None:
    """Fit a compiled head on in-memory features with one compiled call per epoch.

    What ``head.fit(shuffled batches, validation_data=(x_val, y_val), callbacks=callbacks)``
    does, without Keras's per-epoch and per-step overhead (iterator set-up, callback hooks,
    a separate ``evaluate``), which made ~0.4 s of a head epoch whose arithmetic takes a
    fraction of that on this CPU (measured: see bench/train.py ``warm_s``):

    * every epoch the training rows are reshuffled with ``np.random.default_rng(seed)`` (one
      permutation per epoch, so the order is the same in every process) and cut into batches of
      ``batch_size`` (the last one smaller), each a step of ``head.optimizer`` on ``head.loss``
      (the compiled loss object: batch mean, class weights if it has them), with dropout active
      (``training=True``; Keras's seeded dropout generators);
    * after the epoch's steps, the validation loss and accuracy with ``training=False``;
    * ``loss`` / ``accuracy`` are the sample-weighted means over the epoch's batches, as Keras's
      trackers report them; ``val_loss`` / ``val_accuracy`` the means over the validation rows;
    * ``callbacks`` (Keras callbacks: progress, ReduceLROnPlateau, EarlyStopping) get
      ``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end(epoch, logs)`` with those four
      logs, and ``on_train_end``, exactly as from ``fit``; ``head.stop_training`` ends the loop.

    All of one epoch (the steps and the validation) is a single ``tf.function`` call (a graph
    while loop over the steps), traced once. Not for several replicas
    (:mod:`cxrlib.training.replicated_fit`).

    ``extra`` (optional, training only) adds a term to each step's loss: an object with
    ``variables`` (trained too) and ``forward(x_batch, rows) -> (probabilities, loss term)``,
    ``rows`` being the batch's rows of ``x_train`` (the source-adversarial branch,
    :class:`cxrlib.training.adversary.SourceAdversary`). The logged losses stay the
    classification loss alone, so model selection on ``val_loss`` is unchanged.

    ``sample_weight`` (optional, ``(len(x_train),)``): each training row's weight in the loss
    (source balancing, :mod:`cxrlib.training.source_balance`); validation stays unweighted.
    """
    from cxrlib.core.tfsetup import tf as _tf

    tf = _tf()
    opt, loss_fn = head.optimizer, head.loss
    variables = head.trainable_variables + (list(extra.variables) if extra is not None else [])
    opt.build(variables)  # the optimizer's slots must exist before tracing
    apply = _fused_adam(opt, variables) or (lambda grads: opt.apply(grads, variables))
    x = tf.constant(np.asarray(x_train, np.float32))
    y = tf.constant(np.asarray(y_train, np.float32))
    xv = tf.constant(np.asarray(x_val, np.float32))
    yv = tf.constant(np.asarray(y_val, np.float32))
    # issue 23 hook: per-row loss weights (source balancing); ones change nothing
    sw = tf.constant(np.ones(len(x_train), np.float32) if sample_weight is None
                     else np.asarray(sample_weight, np.float32))
    weighted = sample_weight is not None
    n, bs = len(x_train), int(batch_size)
    steps = math.ceil(n / bs)

    def hits(y_true, y_pred):
        return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(y_true, -1), tf.argmax(y_pred, -1)),
                                     tf.float32))

    @tf.function
    def epoch_fn(perm):
        loss_sum = tf.constant(0.0)
        correct = tf.constant(0.0)
        for i in tf.range(steps):
            rows = perm[i * bs:tf.minimum((i + 1) * bs, n)]
            xb, yb = tf.gather(x, rows), tf.gather(y, rows)
            with tf.GradientTape() as tape:
                if extra is None:
                    pred = head(xb, training=True)
                    loss = loss_fn(yb, pred, sample_weight=tf.gather(sw, rows)) if weighted else loss_fn(yb, pred)
                    total = loss
                else:
                    pred, term = extra.forward(xb, rows)
                    loss = loss_fn(yb, pred, sample_weight=tf.gather(sw, rows)) if weighted else loss_fn(yb, pred)
                    total = loss + term
                scaled = opt.scale_loss(total)  # loss scaling under mixed precision, else same
            apply(tape.gradient(scaled, variables))
            size = tf.cast(tf.shape(rows)[0], tf.float32)
            loss_sum += tf.cast(loss, tf.float32) * size
            correct += hits(yb, pred)
        pred_val = head(xv, training=False)
        return (loss_sum / n, correct / n, tf.cast(loss_fn(yv, pred_val), tf.float32),
                hits(yv, pred_val) / tf.cast(tf.shape(xv)[0], tf.float32))

    rng = np.random.default_rng(seed)

    def epoch(number, cbs):
        perm = tf.constant(rng.permutation(n).astype(np.int32))
        values = [float(v) for v in epoch_fn(perm)]
        return dict(zip(("loss", "accuracy", "val_loss", "val_accuracy"), values))

    run_epochs(head, callbacks, epochs=epochs, steps=steps, epoch=epoch)


def _fused_adam(opt, variables):
    """``apply(grads)`` doing ``opt``'s Adam step with TensorFlow's fused kernel, or None.

    Keras's Adam is a dozen small ops per variable; ``ResourceApplyAdam`` is the same update
    (``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``var -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``, ``t`` = step number; equal
    to Keras's to float rounding, ~1e-7 relative a step) in one kernel per variable: measured
    ~1.5x faster per head epoch on this CPU. The learning rate is read from ``opt`` at every
    step (ReduceLROnPlateau assigns it) and ``opt.iterations`` counts the steps. The moments
    live in variables of this function (``opt``'s own are unused). Only for a plain float32
    Adam (no AMSGrad, clipping, weight decay, EMA, gradient accumulation or loss scaling);
    otherwise None and the caller uses ``opt.apply``.
    """
    from cxrlib.core.tfsetup import tf as _tf

    tf = _tf()
    import keras  # noqa: PLC0415

    plain = (type(opt) is keras.optimizers.Adam and not opt.amsgrad
             and opt.clipnorm is None and opt.clipvalue is None and opt.global_clipnorm is None
             and not opt.weight_decay and not opt.use_ema
             and not getattr(opt, "gradient_accumulation_steps", None)
             and all(v.dtype == "float32" for v in variables))
    if not plain:
        return None
    handles = [v.value.handle if hasattr(v, "value") else v.handle for v in variables]
    moments = [(tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False),
                tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False)) for v in variables]
    beta_1, beta_2 = float(opt.beta_1), float(opt.beta_2)
    consts = {"beta1": tf.constant(beta_1), "beta2": tf.constant(beta_2),
              "epsilon": tf.constant(float(opt.epsilon))}

    def apply(grads):
        step = tf.cast(opt.iterations + 1, tf.float32)
        lr = tf.cast(opt.learning_rate, tf.float32)
        b1p, b2p = tf.pow(consts["beta1"], step), tf.pow(consts["beta2"], step)
        for handle, (m, v), grad in zip(handles, moments, grads):
            tf.raw_ops.ResourceApplyAdam(var=handle, m=m.handle, v=v.handle, beta1_power=b1p,
                                         beta2_power=b2p, lr=lr, grad=grad, **consts)
        opt.iterations.assign_add(1)

    return apply
