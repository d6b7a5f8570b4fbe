"""The training engine: one run of a :class:`~cxrlib.core.config.RunConfig`, into its run folder.

:func:`execute` is what the background process (``python -m cxrlib train``) calls. It reads the
dataset, splits it, loads the preprocessed tensors from the tensor cache and fits the model:

* ``head`` mode (``mobilenetv2`` / ``tiny``): the backbone is frozen; its pooled features are
  computed once per dataset + preprocessing + backbone and cached (:mod:`cxrlib.training.features`), then
  only the head is fitted on them, in seconds, by :func:`cxrlib.training.head_fit.fit_head_compiled` (one compiled call
  per epoch instead of ``model.fit``; same loss, optimizer, callbacks and history). The head's
  layers are shared with the full model, so the saved ``best.keras`` is the normal
  image -> probabilities model. Deterministic on CPU: the same config trained twice, in two
  processes, gives identical predictions (seeded shuffling, Keras's seeded dropout).
* ``finetune`` mode (and always for ``small_cnn``, which has no pretrained backbone): all layers
  trainable, fed by a ``tf.data`` pipeline (shuffle, batch, random rotation + horizontal flip,
  prefetch). With ``init_from_head`` the head is first fitted on cached backbone features as
  in head mode (seconds; its history is not recorded), then all layers train from there.

Both keep the weights of the best validation loss, reduce the learning rate on plateau
(factor 0.3, patience 2), optionally stop early, write throttled progress into status.json and
check ``cancel_check()`` after every batch (fine-tune) or every epoch (head mode: an epoch takes
well under a second). See docs/INTERFACES.md "training engine".
"""
from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from cxrlib.core.classes import task_classes
from cxrlib.core.config import RunConfig
from cxrlib.core.fsutil import atomic_path, read_json, write_json_atomic
from cxrlib.training.head_fit import fit_head_compiled
from cxrlib.core.tfsetup import TF_ENV

#: Environment the training process sets before TensorFlow is imported (see cxrlib.core.tfsetup).
TRAIN_ENV = TF_ENV
STATUS_INTERVAL_S = 0.5  # at most 2 status writes a second
HEAD_FAMILIES = ("mobilenetv2", "tiny")


class Cancelled(Exception):
    """Raised inside ``fit`` when ``cancel_check()`` says stop."""


class DatasetChanged(RuntimeError):
    """The dataset on disk no longer matches the fingerprint the run was made for."""


def execute(run, *, cancel_check: Callable[[], bool] = lambda: False) -> None:
    """Train ``run`` and write every artifact into ``run.folder``.

    Args:
        run: a :class:`cxrlib.runs.run.Run` (``folder``, ``config``, ``fingerprint``,
            ``write_status`` and the ``write_*`` / ``save_model`` helpers).
        cancel_check: called after every batch (fine-tune), every epoch (head mode) and during
            preprocessing / feature extraction; when it returns True training stops and the
            run's state becomes ``cancelled``.

    Raises:
        Whatever failed, after writing ``state="failed"`` and the error into status.json.
    """
    try:
        _Training(run, cancel_check).run()
    except Cancelled:
        run.write_status(state="cancelled", message="cancelled by request", eta_s=None)
    except BaseException as exc:
        run.write_status(state="failed", error=f"{type(exc).__name__}: {exc}", eta_s=None)
        raise


class _Training:
    def __init__(self, run, cancel_check):
        self.run_ = run
        self.cfg: RunConfig = run.config
        self.classes = task_classes(self.cfg.data.task)
        self.cancel_check = cancel_check
        self.t0 = time.perf_counter()
        self.info: dict = {}

    def lap(self, phase: str) -> None:
        """Record the seconds since the previous lap under ``metrics["timings"][phase]``."""
        now = time.perf_counter()
        timings = self.info.setdefault("timings", {})
        timings[phase] = round(now - getattr(self, "_lap", self.t0), 2)
        self._lap = now

    def status(self, **fields) -> None:
        self.run_.write_status(**fields)

    def run(self) -> None:
        from cxrlib.core.tfsetup import distribution_strategy, gpus, tf

        cfg = self.cfg
        self.status(state="running", message="reading the dataset", error=None,
                    epoch=0, epochs=cfg.train.epochs, step=0, steps=0, eta_s=None)
        tf()
        import keras  # noqa: PLC0415

        keras.utils.set_random_seed(cfg.train.seed)  # the one place seeds are set
        if gpus():
            keras.mixed_precision.set_global_policy("mixed_float16")
        self.lap("setup")
        manifest, images = self._load_data()
        self.lap("data")
        labels = manifest["label"].to_numpy()
        y = np.array([self.classes.index(c) for c in labels])
        self.onehot = np.eye(len(self.classes), dtype=np.float32)[y]
        self.idx = {s: np.flatnonzero(manifest["split"].to_numpy() == s)
                    for s in ("train", "val", "test")}
        self.info["test_used_for_validation"] = len(self.idx["val"]) == 0
        if not len(self.idx["val"]):
            self.idx["val"] = self.idx["test"]
        if not len(self.idx["train"]) or not len(self.idx["test"]):
            raise ValueError("the split left no training or no test images")
        with distribution_strategy().scope():
            from cxrlib.models.architectures import build_model  # noqa: PLC0415

            self.model = build_model(cfg.model, self.classes, cfg.preprocess.size)
            self.lap("build")
            head_mode = cfg.model.family in HEAD_FAMILIES
            if head_mode and (cfg.train.mode == "head" or cfg.train.init_from_head):
                probs = self._fit_head(images, record=cfg.train.mode == "head")
            if cfg.train.mode == "finetune" or not head_mode:
                probs = self._fit_full(images)
        self._finish(manifest, probs)

    # -- data ---------------------------------------------------------------------------------
    def _load_data(self):
        from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415
        from cxrlib.data.splits import split_manifest, split_table  # noqa: PLC0415
        from cxrlib.preprocessing.tensor_cache import load_tensors  # noqa: PLC0415

        cfg = self.cfg
        ds = scan_dataset(cfg.data.root, bacterial=cfg.data.bacterial).for_task(cfg.data.task)
        expected = getattr(self.run_, "fingerprint", None)
        if expected and ds.fingerprint != expected:
            raise DatasetChanged(f"dataset {cfg.data.root} changed since run {self.run_.id} was "
                                 f"made (fingerprint {ds.fingerprint} != {expected})")
        self.fingerprint = ds.fingerprint
        manifest = ds.manifest.reset_index(drop=True)
        split = split_manifest(manifest, cfg.split)
        self.info["leakage"] = self.run_.write_split(split_table(manifest, split))
        manifest = manifest.assign(split=split.to_numpy())
        self.status(message="preprocessing films (tensor cache)")
        tensors = load_tensors(ds, cfg.preprocess, progress=self._progress("preprocessing"))
        if list(tensors.rel_paths) != manifest["rel_path"].tolist():
            raise RuntimeError("tensor cache order does not match the dataset manifest")
        self.info["tensor_cache_hit"] = bool(tensors.hit)
        undecodable = {p["rel_path"] for p in tensors.problems}
        if undecodable:  # their tensor rows are zeros: keep them out of every split
            manifest.loc[manifest["rel_path"].isin(undecodable), "split"] = "excluded"
        self.info["excluded_undecodable"] = len(undecodable)
        return manifest, tensors.images

    def _progress(self, what: str):
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] >= STATUS_INTERVAL_S or done == total:
                last[0] = now
                self.status(message=f"{what} {done}/{total}")
            if self.cancel_check():
                raise Cancelled()
        return report

    # -- fitting ------------------------------------------------------------------------------
    def _compile(self, model, lr: float, steps_per_execution: int = 1):
        import keras  # noqa: PLC0415

        from cxrlib.models.architectures import class_weights, weighted_loss  # noqa: PLC0415

        if self.cfg.model.family == "small_cnn":
            labels = np.array(self.classes)[self.onehot[self.idx["train"]].argmax(1)]
            loss = weighted_loss(class_weights(labels, self.classes))
        else:  # the loss object (not the string) so the compiled head loop can call it too
            loss = keras.losses.CategoricalCrossentropy()
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss,
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                      steps_per_execution=steps_per_execution)

    def _callbacks(self, model, steps: int, record: bool, checkpoint: bool, initial_epoch=0,
                   best=math.inf, per_batch=True):
        import keras  # noqa: PLC0415

        tcfg = self.cfg.train
        progress = _progress(per_batch)(self, model, steps, record, checkpoint, initial_epoch, best)
        cbs = [progress, keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.3, patience=2,
                                                            verbose=0)]
        if tcfg.early_stopping:
            cbs.append(keras.callbacks.EarlyStopping("val_loss", patience=tcfg.early_stopping))
        return progress, cbs

    def _fit_head(self, images, record: bool) -> np.ndarray:
        from cxrlib.training.features import cached_features  # noqa: PLC0415
        from cxrlib.models.architectures import backbone_and_head  # noqa: PLC0415
        from cxrlib.core.tfsetup import tf  # noqa: PLC0415

        cfg, tcfg = self.cfg, self.cfg.train
        feature_model, head = backbone_and_head(self.model)
        feature_model.trainable = False
        self.status(message="backbone features")
        copies = tcfg.feature_augment_copies
        fs = cached_features(feature_model, images, fingerprint=self.fingerprint,
                             preprocess_cfg=cfg.preprocess, model_cfg=cfg.model, copies=copies,
                             rotation=tcfg.rotation if tcfg.augment else 0.0,
                             hflip=tcfg.hflip and tcfg.augment, seed=tcfg.seed,
                             progress=self._progress("backbone features"))
        self.info.update(feature_cache_hit=fs.hit, feature_seconds=round(fs.seconds, 2))
        self.lap("features")
        tr = self.idx["train"]
        x_train = np.concatenate([fs.features[k][tr] for k in range(copies + 1)])
        y_train = np.concatenate([self.onehot[tr]] * (copies + 1))
        steps = math.ceil(len(x_train) / tcfg.batch_size)
        val = self.idx["val"]
        self._compile(head, tcfg.learning_rate)
        progress, cbs = self._callbacks(head, steps, record, checkpoint=False, per_batch=False)
        self.status(message="training the head")
        if tf().distribute.get_strategy().num_replicas_in_sync > 1:
            # Several GPUs: Keras's fit distributes the steps (the compiled loop below is
            # written for one device); the same callbacks give the same semantics.
            tfm = tf()
            train_ds = (tfm.data.Dataset.from_tensor_slices((x_train, y_train))
                        .shuffle(len(x_train), seed=tcfg.seed, reshuffle_each_iteration=True)
                        .batch(tcfg.batch_size).prefetch(tfm.data.AUTOTUNE))
            val_ds = tfm.data.Dataset.from_tensor_slices(
                (fs.features[0][val], self.onehot[val])).batch(256)
            head.fit(train_ds, epochs=tcfg.epochs, verbose=0, validation_data=val_ds,
                     callbacks=cbs, shuffle=False)
        else:
            fit_head_compiled(head, x_train, y_train, fs.features[0][val], self.onehot[val],
                              epochs=tcfg.epochs, batch_size=tcfg.batch_size, seed=tcfg.seed,
                              callbacks=cbs)
        progress.restore_best()
        self.lap("fit_head")
        return head.predict(fs.features[0][self.idx["test"]], batch_size=256, verbose=0)

    def _fit_full(self, images) -> np.ndarray:
        from cxrlib.training.features import extract_features  # noqa: PLC0415

        tcfg = self.cfg.train
        model = self.model
        model.trainable = True
        self._compile(model, tcfg.learning_rate)
        initial_epoch, best = self._resume(model)
        train_ds = input_pipeline(images, self.idx["train"], self.onehot, tcfg, training=True)
        val_ds = input_pipeline(images, self.idx["val"], self.onehot, tcfg, training=False)
        steps = math.ceil(len(self.idx["train"]) / tcfg.batch_size)
        progress, cbs = self._callbacks(model, steps, True, True, initial_epoch, best)
        self.status(message="training all layers")
        if initial_epoch < tcfg.epochs:
            model.fit(train_ds, validation_data=val_ds, epochs=tcfg.epochs, verbose=0,
                      initial_epoch=initial_epoch, callbacks=cbs, shuffle=False)
        progress.restore_best()
        self.lap("fit_all")
        return extract_features(model, np.asarray(images[self.idx["test"]]),
                                batch_size=tcfg.batch_size)

    def _resume(self, model) -> tuple[int, float]:
        """Continue from checkpoint.json / checkpoint.weights.h5 left by a killed process."""
        folder = self.run_.folder
        state = read_json(folder / "checkpoint.json")
        if not state or not (folder / "checkpoint.weights.h5").is_file():
            return 0, math.inf
        with warnings.catch_warnings():  # the new optimizer is not built yet: its state restarts
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(folder / "checkpoint.weights.h5")
        model.optimizer.learning_rate.assign(state["lr"])
        self.info["resumed_from_epoch"] = state["epoch"]
        return int(state["epoch"]), float(state["best_val_loss"])

    # -- results ------------------------------------------------------------------------------
    def _finish(self, manifest: pd.DataFrame, probs: np.ndarray) -> None:
        self.status(message="writing results")
        self.lap("predict")
        self.run_.save_model(self.model)
        self.lap("save")
        test = manifest.iloc[self.idx["test"]]
        preds = pd.DataFrame({c: test[c].to_numpy() if c in test else ""
                              for c in ("rel_path", "path", "label", "patient_id", "group_id",
                                        "split")})
        probs = np.asarray(probs, np.float64)
        preds["pred"] = np.array(self.classes)[probs.argmax(1)]
        for i, c in enumerate(self.classes):
            preds[f"p_{c}"] = probs[:, i]
        self.run_.write_predictions(preds)
        metrics = test_metrics(self.onehot[self.idx["test"]], probs, self.classes)
        metrics.update(self.info, n_train=int(len(self.idx["train"])),
                       n_val=int(len(self.idx["val"])), seconds=round(time.perf_counter() - self.t0, 2),
                       family=self.cfg.model.family, mode=self.cfg.train.mode)
        self.run_.write_metrics(json.loads(json.dumps(metrics, default=_plain)))
        self.status(state="done", message="done", eta_s=0,
                    metrics={k: metrics[k] for k in ("accuracy", "macro_auc", "loss")})


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)


def test_metrics(onehot: np.ndarray, probs: np.ndarray, classes) -> dict:
    """Headline test metrics: accuracy, cross-entropy, recall per class, macro one-vs-rest AUC.

    (The full evaluation, with CIs and calibration, is :mod:`cxrlib.evaluation.metrics`.)
    """
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415

    y = onehot.argmax(1)
    pred = probs.argmax(1)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    recall = {c: (float((pred[y == i] == i).mean()) if (y == i).any() else None)
              for i, c in enumerate(classes)}
    try:
        auc = (roc_auc_score(y == 0, probs[:, 0]) if len(classes) == 2
               else roc_auc_score(onehot, probs, average="macro"))
        auc = float(auc)
    except ValueError:  # a class absent from the test split
        auc = None
    return {"accuracy": float((pred == y).mean()), "loss": float(-np.log(p_true).mean()),
            "recall": recall, "macro_auc": auc, "n_test": int(len(y)), "classes": list(classes)}


def input_pipeline(images: np.ndarray, idx: np.ndarray, onehot: np.ndarray, tcfg, *,
                   training: bool):
    """``tf.data`` pipeline of grey uint8 films -> (float32 (B, S, S, 3) in [0, 1], one-hot).

    Training: shuffled each epoch (seeded), batched, then random rotation (``tcfg.rotation`` of a
    full turn, reflected borders) and horizontal flip when ``tcfg.augment``, on the whole batch;
    always prefetched.
    """
    from cxrlib.core.tfsetup import tf as _tf

    tf = _tf()
    import keras  # noqa: PLC0415

    ds = tf.data.Dataset.from_tensor_slices((np.asarray(images[idx]), onehot[idx]))
    if training:
        ds = ds.shuffle(len(idx), seed=tcfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(tcfg.batch_size)
    layers = []
    if training and tcfg.augment:
        if tcfg.rotation > 0:
            layers.append(keras.layers.RandomRotation(tcfg.rotation, fill_mode="reflect",
                                                      seed=tcfg.seed))
        if tcfg.hflip:
            layers.append(keras.layers.RandomFlip("horizontal", seed=tcfg.seed + 1))

    @tf.autograph.experimental.do_not_convert  # plain tensor code: nothing to convert
    def to_input(x, y):
        x = tf.cast(x, tf.float32)[..., None] / 255.0
        for layer in layers:
            x = layer(x, training=True)
        return tf.repeat(x, 3, axis=-1), y

    return ds.map(to_input, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


_PROGRESS_CLASSES: dict = {}


def _progress(per_batch: bool):
    """The progress callback class; with ``per_batch`` it also reports and checks every batch."""
    if not _PROGRESS_CLASSES:
        epoch_level = _make_progress_class()

        class BatchProgress(epoch_level):
            per_batch = True

            def on_train_batch_end(self, batch, logs=None):
                self.done_steps += 1
                if self.t.cancel_check():
                    raise Cancelled()
                now = time.perf_counter()
                if now - self.last_write >= STATUS_INTERVAL_S:
                    self.last_write = now
                    self._write(batch + 1, logs)

        _PROGRESS_CLASSES.update({False: epoch_level, True: BatchProgress})
    return _PROGRESS_CLASSES[per_batch]


def _make_progress_class():
    import keras  # noqa: PLC0415

    class Progress(keras.callbacks.Callback):
        """Status writes (throttled), cancel checks, history rows and best-weights keeping.

        This epoch-level class checks ``cancel_check`` once an epoch (head mode: epochs of
        well under a second); the per-batch subclass from :func:`_progress` every batch.
        """

        per_batch = False

        def __init__(self, training, model, steps, record, checkpoint, initial_epoch, best):
            super().__init__()
            self.t, self.net, self.steps = training, model, steps
            self.record, self.checkpoint = record, checkpoint
            self.best, self.best_weights, self.best_epoch = best, None, None
            self.epochs = training.cfg.train.epochs
            self.initial_epoch = initial_epoch
            self.rows = (training.run_.history().head(initial_epoch).to_dict("records")
                         if record and initial_epoch else [])
            self.last_write, self.epoch = 0.0, initial_epoch
            self.fit_start, self.done_steps = time.perf_counter(), 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            if self.t.cancel_check():
                raise Cancelled()

        def _write(self, step, logs, **extra):
            total = (self.epochs - self.initial_epoch) * self.steps
            rate = (time.perf_counter() - self.fit_start) / max(1, self.done_steps)
            self.t.status(epoch=self.epoch + 1, epochs=self.epochs, step=step, steps=self.steps,
                          eta_s=round(rate * max(0, total - self.done_steps), 1),
                          metrics={k: float(v) for k, v in (logs or {}).items()}, **extra)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if not self.per_batch:
                self.done_steps += self.steps
            lr = float(keras.ops.convert_to_numpy(self.net.optimizer.learning_rate))
            val_loss = float(logs.get("val_loss", math.inf))
            if val_loss < self.best:
                self.best, self.best_epoch = val_loss, epoch + 1
                self.best_weights = self.net.get_weights()
                if self.checkpoint:
                    self.t.run_.save_model(self.t.model)
            if self.record:
                self.rows.append({"epoch": epoch + 1, **{k: float(logs.get(k, np.nan)) for k in
                                  ("loss", "accuracy", "val_loss", "val_accuracy")}, "lr": lr})
                self.t.run_.write_history(pd.DataFrame(self.rows))
            if self.checkpoint:
                folder = self.t.run_.folder
                with atomic_path(folder / "checkpoint.weights.h5", suffix=".weights.h5") as tmp:
                    self.net.save_weights(tmp)
                write_json_atomic(folder / "checkpoint.json",
                                  {"epoch": epoch + 1, "lr": lr, "best_val_loss": self.best})
            now = time.perf_counter()
            if now - self.last_write >= STATUS_INTERVAL_S or epoch + 1 == self.epochs:
                self.last_write = now
                self._write(self.steps, logs)

        def restore_best(self):
            if self.best_weights is not None:
                self.net.set_weights(self.best_weights)
            elif self.checkpoint and self.t.run_.model_path.exists():  # resumed, no new best
                with warnings.catch_warnings():  # "skipping optimizer variables": intended
                    warnings.simplefilter("ignore", UserWarning)
                    self.net.load_weights(self.t.run_.model_path)
            if self.best_epoch is not None:
                self.t.info["best_epoch"] = self.best_epoch

    return Progress
