"""TensorBoard scalars under run folders, so that ``tensorboard --logdir models/runs`` shows the
training and validation curves of every run and the figures a sweep scored it with.

The run registry stays the source of truth: these files are derived from history.csv and a
sweep's records, and are rewritten whole each time (one event file per writer name, replaced
atomically), so writing twice never duplicates points. The files are plain TensorFlow event
files (TFRecords of ``Event`` protos with ``simple_value`` scalars) written with TensorFlow's
own record writer: the ``tensorboard`` package is needed only to view them, not to write them.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

#: history.csv column -> TensorBoard tag.
HISTORY_TAGS = {"loss": "train/loss", "accuracy": "train/accuracy", "val_loss": "validation/loss",
                "val_accuracy": "validation/accuracy", "lr": "train/learning_rate"}


def write_scalars(folder: str | os.PathLike, series: dict[str, list[tuple[int, float]]],
                  name: str = "cxr") -> Path:
    """Write ``{tag: [(step, value), ...]}`` as the event file ``events.out.tfevents.<name>`` in
    ``folder`` (replacing it); non-finite values are left out. Returns the file."""
    from tensorflow.core.framework import summary_pb2  # noqa: PLC0415
    from tensorflow.core.util import event_pb2  # noqa: PLC0415

    from cxrlib.core.tfsetup import tf  # noqa: PLC0415

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"events.out.tfevents.{name}"
    partial = folder / f".{target.name}.partial-{os.getpid()}"
    now = time.time()
    with tf().io.TFRecordWriter(str(partial)) as writer:
        writer.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
        for tag, points in series.items():
            for step, value in points:
                if value is None or not math.isfinite(float(value)):
                    continue
                summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
                writer.write(event_pb2.Event(wall_time=now, step=int(step), summary=summary).SerializeToString())
    os.replace(partial, target)
    return target


def tensorboard_dir(run) -> Path:
    return Path(run.folder) / "tensorboard"


def write_run_scalars(run) -> Path | None:
    """The run's history.csv curves (:data:`HISTORY_TAGS`, step = epoch), or None without one."""
    hist = run.history()
    if hist.empty:
        return None
    steps = hist["epoch"].astype(int).tolist() if "epoch" in hist else list(range(1, len(hist) + 1))
    series = {tag: list(zip(steps, hist[col].astype(float).tolist()))
              for col, tag in HISTORY_TAGS.items() if col in hist}
    return write_scalars(tensorboard_dir(run), series, "history")


def write_sweep_scalars(run, sweep: str, record: dict) -> Path:
    """A sweep's figures for one of its candidates (``sweep/<field>``, step 0, and
    ``sweep/loso/<source>``), in the run's folder under the writer name ``sweep-<sweep>``."""
    series = {f"sweep/{key}": [(0, record[key])] for key in
              ("val_loss", "val_accuracy", "loso_expected_accuracy", "source_probe_accuracy", "train_s")
              if isinstance(record.get(key), (int, float))}
    for source, acc in (record.get("loso_per_source") or {}).items():
        if isinstance(acc, (int, float)):
            series[f"sweep/loso/{source}"] = [(0, acc)]
    return write_scalars(tensorboard_dir(run), series, f"sweep-{sweep}")
