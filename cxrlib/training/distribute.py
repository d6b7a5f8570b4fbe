"""What the workers of a multi-machine training share, and who writes what.

The strategy is :func:`cxrlib.core.tfsetup.distribution_strategy` (``MultiWorkerMirroredStrategy``
under a ``TF_CONFIG`` cluster, see :mod:`cxrlib.core.cluster`). Every worker runs the same
engine on its own copy of the dataset; synchronous data parallelism keeps their weights equal.
The rules:

* **The chief writes, the others compute.** The chief (worker 0) trains the run of the run
  registry: status.json, history.csv, checkpoints, best.keras, predictions and metrics. Every
  other worker trains a scratch copy under ``models/workers/<run id>/worker-<K>/`` of its own
  workspace (its status.json there is its own progress; the registry never lists it). Saving
  a model under this strategy runs collectives, so the others save whenever the chief does,
  into their scratch folders, and delete those copies at the end
  (:func:`discard_scratch_model`).
* **The chief's state is everyone's state.** What only the chief has (the weights it resumed or
  started from, the epoch and best loss of its checkpoint) is broadcast to every worker before
  training (:func:`broadcast_from_chief`), and every worker checks that all of them train the
  same run id (config and dataset fingerprint: :func:`check_same_run`).
* **No worker's progress is lost.** At every epoch end the workers' step counts, seconds and
  pids are gathered by a collective (:func:`worker_progress`), and the chief writes them into its
  status.json (``workers``) and, at the end, metrics.json, whatever file systems the machines share.
* A worker that dies makes the others' next collective fail (TensorFlow's coordination service
  notices the missing heartbeats); the chief's run is then marked failed, resumable from its last
  epoch checkpoint, and nothing half-written is left (every file is written atomically).
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

from cxrlib.core.cluster import ENV, role


def is_chief() -> bool:
    """Whether this process writes the run registry (no cluster: always)."""
    r = role()
    return r is None or r.chief


def _gather(strategy, row: np.ndarray) -> np.ndarray:
    """Every worker's ``row`` (float64), stacked in worker order (a collective: all must call)."""
    from cxrlib.core.tfsetup import tf as _tf  # noqa: PLC0415

    tf = _tf()
    value = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(np.asarray(row, np.float64)[None]))
    return np.asarray(strategy.gather(value, axis=0).numpy())


def broadcast_from_chief(strategy, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The chief's ``arrays`` on every worker (sum of the chief's values and the others' zeros,
    which is exact). A collective: every worker calls it with arrays of the same shapes."""
    from cxrlib.core.tfsetup import tf as _tf  # noqa: PLC0415

    tf = _tf()
    flat = np.concatenate([np.ravel(a).astype(np.float64) for a in arrays]) if arrays else np.zeros(0)
    if not is_chief():
        flat = np.zeros_like(flat)
    value = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(flat) if ctx.replica_id_in_sync_group == 0 else tf.zeros_like(flat))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None).numpy()
    out, start = [], 0
    for a in arrays:
        size = int(np.size(a))
        out.append(total[start:start + size].reshape(np.shape(a)).astype(np.asarray(a).dtype))
        start += size
    return out


def handshake(strategy, proceed: bool) -> bool:
    """The first collective of a multi-worker run: the chief tells whether there is anything to
    train (False: the run was already finished, the chief returns it at once and the others
    stop instead of waiting for a chief that never joins the training)."""
    (flag,) = broadcast_from_chief(strategy, [np.array([1.0 if proceed else 0.0])])
    return bool(flag[0] > 0)


def release_workers() -> None:
    """Chief of a finished run: join the cluster only to tell the other workers to stop."""
    from cxrlib.core.tfsetup import distribution_strategy  # noqa: PLC0415

    handshake(distribution_strategy(), proceed=False)


def broadcast_file(strategy, path, dest) -> Path | None:
    """The chief's file ``path`` copied to ``dest`` on every worker (its bytes summed as int64
    words with the others' zeros: exact), or None on all when the chief has no such file.

    Loading weights into a model under ``MultiWorkerMirroredStrategy`` runs collectives, so a
    file only the chief has (its checkpoint, its head run's model) is first given to every
    worker, which then all load the same file together. A collective: all workers call it.
    """
    from cxrlib.core.fsutil import atomic_path  # noqa: PLC0415
    from cxrlib.core.tfsetup import tf as _tf  # noqa: PLC0415

    tf = _tf()
    data = Path(path).read_bytes() if is_chief() and path and Path(path).is_file() else b""
    (size,) = broadcast_from_chief(strategy, [np.array([len(data) if is_chief() else 0])])
    n = int(size[0])
    if n == 0:
        return None
    words = np.zeros(-(-n // 8) * 8, np.uint8)
    words[:len(data)] = np.frombuffer(data, np.uint8)
    words = words.view(np.int64)
    value = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(words if ctx.replica_id_in_sync_group == 0 and is_chief()
                                else np.zeros_like(words)))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None).numpy()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest, suffix=dest.suffix) as tmp:
        tmp.write_bytes(total.view(np.uint8)[:n].tobytes())
    return dest


def sync_from_chief(strategy, model, initial_epoch: int, best: float) -> tuple[int, float]:
    """Give every worker the chief's weights, learning rate, start epoch and best validation
    loss (what a resumed or head-initialised chief has and the others do not)."""
    weights = model.get_weights()
    lr = float(np.asarray(model.optimizer.learning_rate))
    state = np.array([initial_epoch, best if np.isfinite(best) else -1.0, lr])
    *weights, state = broadcast_from_chief(strategy, [*weights, state])
    model.set_weights(weights)
    model.optimizer.learning_rate.assign(float(state[2]))
    return int(state[0]), (float(state[1]) if state[1] >= 0 else float("inf"))


def check_same_run(strategy, run_id: str) -> None:
    """Raise on every worker unless all of them train ``run_id`` (same config, same data).

    Raises:
        RuntimeError: naming the workers whose run id differs from the chief's.
    """
    code = float(int(run_id[:12], 16))  # 48 bits: exact in a float64
    codes = _gather(strategy, np.array([code]))[:, 0]
    differ = [i for i, c in enumerate(codes) if c != codes[0]]
    if differ:
        raise RuntimeError(f"workers {differ} train another run than the chief (different "
                           "configuration or dataset contents): start every worker with the "
                           "same flags on the same data")


def worker_progress(strategy, steps_done: int, seconds: float) -> list[dict]:
    """Every worker's ``{worker, address, pid, steps, seconds}`` (a collective)."""
    rows = _gather(strategy, np.array([float(os.getpid()), float(steps_done), float(seconds)]))
    r = role()
    if r is not None and len(rows) > r.count:  # several GPUs a worker: one row per replica
        rows = rows[::len(rows) // r.count]
    addresses = r.addresses if r else ("local",)
    return [{"worker": i, "address": addresses[i] if i < len(addresses) else "",
             "pid": int(pid), "steps": int(steps), "seconds": round(float(s), 1)}
            for i, (pid, steps, s) in enumerate(rows)]


def worker_progress_callback(ctx, strategy):
    """Keras callback gathering :func:`worker_progress` at every epoch end; the chief puts the
    rows into status.json and ``ctx.info["workers"]`` (``ctx``: the run's
    :class:`cxrlib.training.context.TrainingContext`)."""
    from cxrlib.core.tfsetup import keras  # noqa: PLC0415

    class WorkerProgress(keras().callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0, self.steps = time.perf_counter(), 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1

        def on_epoch_end(self, epoch, logs=None):
            rows = worker_progress(strategy, self.steps, time.perf_counter() - self.t0)
            ctx.info["workers"] = rows
            if is_chief():
                ctx.status(workers=rows)

    return WorkerProgress()


def discard_scratch_model(run) -> None:
    """Delete a non-chief worker's copies of the model and checkpoint (TensorFlow needs every
    worker to save when the chief saves; only the chief's files are the run's)."""
    for name in ("best.keras", "checkpoint.weights.h5", "checkpoint.json"):
        (run.folder / name).unlink(missing_ok=True)


@contextlib.contextmanager
def without_cluster_env():
    """``TF_CONFIG`` hidden while the chief spawns a single-machine run (its head run): that
    process must not try to join this cluster."""
    saved = os.environ.pop(ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[ENV] = saved
