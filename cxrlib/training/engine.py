"""The training engine: one run of a :class:`~cxrlib.core.config.RunConfig`, into its run folder.

:func:`execute` is what the background process (``python -m cxrlib train``) calls. It reads the
dataset, splits it and loads the preprocessed tensors (:mod:`cxrlib.training.data`), then fits:

* ``head`` mode (``mobilenetv2`` / ``tiny``): the backbone is frozen; its pooled features are
  computed once per dataset rows + preprocessing + backbone and cached
  (:mod:`cxrlib.training.features`), then only the head is fitted on them, in seconds, by
  :func:`cxrlib.training.head_fit.fit_head_compiled` (one compiled call per epoch instead of
  ``model.fit``; same loss, optimizer, callbacks and history). The head's layers are shared
  with the full model, so the saved ``best.keras`` is the normal image -> probabilities model.
  Deterministic on CPU: the same config trained twice, in two processes, gives identical
  predictions (seeded shuffling, Keras's seeded dropout).
* ``finetune`` mode (and always for ``small_cnn``, which has no pretrained backbone): all layers
  trainable, fed by a ``tf.data`` pipeline (:mod:`cxrlib.training.input_pipeline`). With
  ``init_from_head`` the model starts from the trained weights of the matching head run
  (:func:`head_run_config`; trained first, as a run of its own, when it does not exist yet).

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

import math
import time
from collections.abc import Callable

import numpy as np

from cxrlib.core.classes import task_classes
from cxrlib.core.config import HEAD_FAMILIES, RunConfig, TrainConfig
from cxrlib.core.tfsetup import TF_ENV
from cxrlib.training.callbacks import STATUS_INTERVAL_S, Cancelled, progress_callback
from cxrlib.training.data import DatasetChanged, load_training_data
from cxrlib.training.distribute import is_chief
from cxrlib.training.finetune import compile_classifier, fit_callbacks
from cxrlib.training.head_fit import fit_head_compiled

#: Environment the training process sets before TensorFlow is imported (see cxrlib.core.tfsetup).
TRAIN_ENV = TF_ENV

__all__ = ["Cancelled", "DatasetChanged", "HEAD_FAMILIES", "TRAIN_ENV", "execute", "head_run_config"]


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


class _Training:
    def __init__(self, run, cancel_check):
        self.run_ = run
        self.cfg: RunConfig = run.config
        self.classes = task_classes(self.cfg.data.task)
        self.cancel_check = cancel_check
        self.t0 = time.perf_counter()
        self.info: dict = {}
        self.chief = is_chief()  # only the chief writes the run's files (see .distribute)

    def lap(self, phase: str) -> None:
        """Record the seconds since the previous lap under ``metrics["timings"][phase]``."""
        now = time.perf_counter()
        timings = self.info.setdefault("timings", {})
        timings[phase] = round(now - getattr(self, "_lap", self.t0), 2)
        self._lap = now

    def status(self, **fields) -> None:
        self.run_.write_status(**fields)

    def run(self) -> None:
        from cxrlib.core.tfsetup import gpus, keras

        cfg = self.cfg
        self.status(state="running", message="reading the dataset", error=None,
                    epoch=0, epochs=cfg.train.epochs, step=0, steps=0, eta_s=None)
        strategy = self._strategy()  # before any other TensorFlow op (multi-worker needs it)
        if not self._cluster_go(strategy):
            return
        keras().utils.set_random_seed(cfg.train.seed)  # the one place seeds are set
        if gpus():
            keras().mixed_precision.set_global_policy("mixed_float16")
        self.lap("setup")
        self.data = load_training_data(cfg, self.run_, status=self.status, progress=self._progress)
        self.info.update(self.data.info)
        self.lap("data")
        y = np.array([self.classes.index(c) for c in self.data.manifest["label"]])
        self.onehot = np.eye(len(self.classes), dtype=np.float32)[y]
        self.idx = {s: self.data.indices(s) for s in ("train", "val", "test")}
        self.info["test_used_for_validation"] = len(self.idx["val"]) == 0
        if not len(self.idx["val"]):
            self.idx["val"] = self.idx["test"]
        if not len(self.idx["train"]) or not len(self.idx["test"]):
            raise ValueError("the split left no training or no test images")
        with strategy.scope():
            from cxrlib.models import build_model  # noqa: PLC0415

            self.model = build_model(cfg.model, self.classes, cfg.preprocess.size)
            self.lap("build")
            head_mode = cfg.model.family in HEAD_FAMILIES
            if head_mode and cfg.train.mode == "head":
                probs = self._fit_head(self.data.images)
            else:
                if head_mode and cfg.train.init_from_head:
                    self._start_from_head_run()
                probs = self._fit_full(self.data.images)
        self._finish(probs)

    def _strategy(self):
        """One device for head mode; :func:`distribution_strategy` for fine-tuning."""
        from cxrlib.core.cluster import role  # noqa: PLC0415
        from cxrlib.core.tfsetup import distribution_strategy, tf  # noqa: PLC0415

        if self.cfg.model.family in HEAD_FAMILIES and self.cfg.train.mode == "head":
            if role() is not None:
                raise ValueError("head mode trains on one machine (seconds on cached features); "
                                 "several workers are for --mode finetune")
            return tf().distribute.get_strategy()
        return distribution_strategy()

    def _cluster_go(self, strategy) -> bool:
        """In a cluster, the chief's word that there is something to train (see .distribute)."""
        from cxrlib.core.cluster import role  # noqa: PLC0415
        from cxrlib.training.distribute import handshake  # noqa: PLC0415

        if role() is None or handshake(strategy, proceed=True):
            return True
        self.status(state="done", message="nothing to train: the chief's run was finished")
        return False

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
    def _class_weight(self) -> np.ndarray | None:
        """The small CNN's class weights (published rule) from the training films, else None."""
        if self.cfg.model.family != "small_cnn":
            return None
        from cxrlib.models import class_weights  # noqa: PLC0415

        labels = np.array(self.classes)[self.onehot[self.idx["train"]].argmax(1)]
        weights = class_weights(labels, self.classes)
        self.info["class_weights"] = dict(zip(self.classes, map(float, weights)))
        return weights

    def _callbacks(self, model, steps: int, record: bool, checkpoint: bool, initial_epoch=0,
                   best=math.inf, per_batch=True):
        # head mode: the schedule is always "plateau" (canonical config)
        progress = progress_callback(per_batch)(self, model, steps, record, checkpoint,
                                                initial_epoch, best)
        return progress, [progress, *fit_callbacks(self.cfg.train, steps)]

    def _fit_head(self, images) -> np.ndarray:
        from cxrlib.models import backbone_and_head  # noqa: PLC0415
        from cxrlib.training.features import config_features  # noqa: PLC0415

        tcfg = self.cfg.train
        feature_model, head = backbone_and_head(self.model)
        feature_model.trainable = False
        self.status(message="backbone features")
        copies = tcfg.feature_augment_copies
        fs = config_features(feature_model, images, self.cfg,
                             rel_paths=self.data.manifest["rel_path"].tolist(),
                             fingerprint=self.data.fingerprint,
                             progress=self._progress("backbone features"))
        self.info.update(feature_cache_hit=fs.hit, feature_seconds=round(fs.seconds, 2))
        self.lap("features")
        tr, val = self.idx["train"], self.idx["val"]
        x_train = np.concatenate([fs.features[k][tr] for k in range(copies + 1)])
        y_train = np.concatenate([self.onehot[tr]] * (copies + 1))
        steps = math.ceil(len(x_train) / tcfg.batch_size)
        weights = self._source_weights(tr, copies + 1)  # issue 23 hook: source balancing
        compile_classifier(head, tcfg.learning_rate)
        progress, cbs = self._callbacks(head, steps, True, checkpoint=False, per_batch=False)
        self.status(message="training the head")
        fit_head_compiled(head, x_train, y_train, fs.features[0][val], self.onehot[val],
                          epochs=tcfg.epochs, batch_size=tcfg.batch_size, seed=tcfg.seed,
                          callbacks=cbs, sample_weight=weights)
        progress.restore_best()
        self.lap("fit_head")
        return head.predict(fs.features[0][self.idx["test"]], batch_size=256, verbose=0)

    def _source_weights(self, rows: np.ndarray, copies: int) -> np.ndarray | None:
        """Issue 23 hook: the (class, source) cell weights of the training rows, or None."""
        if not self.cfg.train.source_balance:
            return None
        from cxrlib.data.identity import film_sources  # noqa: PLC0415
        from cxrlib.training.source_balance import training_weights  # noqa: PLC0415

        sources = film_sources(self.data.manifest).to_numpy()
        return training_weights(self.cfg.train, self.onehot, sources, rows, copies)

    def _start_from_head_run(self) -> None:
        from cxrlib.training.full_fit import start_from_head_run  # noqa: PLC0415

        start_from_head_run(self, head_run_config(self.cfg))

    def _fit_full(self, images) -> np.ndarray | None:
        from cxrlib.training.full_fit import fit_trainable_layers  # noqa: PLC0415

        return fit_trainable_layers(self, images)

    # -- results ------------------------------------------------------------------------------
    def _finish(self, probs: np.ndarray | None) -> None:
        from cxrlib.training.results import write_results  # noqa: PLC0415

        if not self.chief:  # another worker: saves as the chief does (collectives), then drops it
            from cxrlib.training.distribute import discard_scratch_model  # noqa: PLC0415

            self.run_.save_model(self.model)
            discard_scratch_model(self.run_)
            self.status(state="done", message="done (worker: the chief wrote the run)", eta_s=0)
            return
        tta = self.cfg.train.tta
        if tta != "none":
            from cxrlib.models.tta import predict_tta  # noqa: PLC0415

            self.status(message=f"test-time augmentation ({tta})")
            probs = predict_tta(self.model, self.data.images[self.idx["test"]], tta, identity=probs)
        self.status(message="writing results")
        self.lap("predict")
        self.run_.save_model(self.model)
        self.lap("save")
        test = self.data.manifest.iloc[self.idx["test"]]
        info = {**self.info, "n_train": int(len(self.idx["train"])), "n_val": int(len(self.idx["val"])),
                "seconds": round(time.perf_counter() - self.t0, 2),
                "family": self.cfg.model.family, "mode": self.cfg.train.mode}
        metrics = write_results(self.run_, test, self.onehot[self.idx["test"]], probs, self.classes, info)
        self.status(state="done", message="done", eta_s=0,
                    metrics={k: metrics[k] for k in ("accuracy", "macro_auc", "loss")})
