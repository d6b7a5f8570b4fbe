"""``train --workers host:port,... --worker-index K``: one worker of a multi-machine training.

Every machine runs the same ``train`` command (same flags, same data) with its own
``--worker-index``; worker 0 is the chief and owns the run in its run registry. The flags become
the standard ``TF_CONFIG`` of this process (a ``TF_CONFIG`` already set is taken as it is when
the flags are absent). See :mod:`cxrlib.training.distribute` for who writes what.
"""
from __future__ import annotations

import argparse
import json
import os

from cxrlib.cli.common import UsageError
from cxrlib.core import cluster


def add_worker_args(g) -> None:
    """Add ``--workers`` and ``--worker-index`` to an argument group."""
    g.add_argument("--workers", metavar="HOST:PORT,...",
                   help="train on several machines (MultiWorkerMirroredStrategy): every "
                        "worker's address, the chief first; each machine runs this command "
                        "with its own --worker-index (or set TF_CONFIG instead)")
    g.add_argument("--worker-index", type=int, metavar="K",
                   help="this machine's position in --workers (0 = the chief, which writes the run)")


def cluster_role(args: argparse.Namespace) -> cluster.Role | None:
    """Set ``TF_CONFIG`` from the flags (before TensorFlow is imported); this process's role.

    Raises:
        UsageError: inconsistent flags or an unusable ``TF_CONFIG``.
    """
    if args.workers is not None or args.worker_index is not None:
        if args.workers is None or args.worker_index is None:
            raise UsageError("--workers and --worker-index go together")
        try:
            config = cluster.tf_config_for(args.workers.split(","), args.worker_index)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        os.environ[cluster.ENV] = json.dumps(config)
    try:
        return cluster.role()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def train_worker(cfg, fingerprint: str, role: cluster.Role, *, background: bool) -> int:
    """A non-chief worker: train the run's scratch copy (:func:`cxrlib.runs.registry.worker_run`).

    Returns:
        The exit code: 0 when it ended done (or, with ``background``, was started).
    """
    from cxrlib.cli.common import EXIT_FAILED, report_failed_run  # noqa: PLC0415
    from cxrlib.cli.progress import ProgressBar, status_line  # noqa: PLC0415
    from cxrlib.runs import runner  # noqa: PLC0415
    from cxrlib.runs.registry import worker_run  # noqa: PLC0415

    from cxrlib.training.distribute import discard_scratch_model  # noqa: PLC0415

    run = worker_run(cfg, fingerprint, role.index)
    # What an earlier attempt left here proves nothing about this one (the chief's checkpoint
    # is what a resumed run starts from): always train, from the chief's state.
    discard_scratch_model(run)
    run.write_status(replace=True, state="queued", message=f"worker {role.index} of {role.count}")
    print(f"worker {role.index} of {role.count} ({role.addresses[role.index]})\n"
          f"run {run.folder.parent.name}\nfolder {run.folder}", flush=True)
    if background:
        runner.start(cfg, fingerprint=fingerprint, run=run)
        return 0
    errors: list[Exception] = []
    with ProgressBar(f"train (worker {role.index})") as bar:
        runner.train_foreground(cfg, fingerprint=fingerprint, run=run, on_error=errors.append,
                                on_status=lambda s: bar.update(*status_line(s)))
    status = run.status()
    print(f"state {status.get('state')}")
    if status.get("error"):
        return report_failed_run(run, status, errors)
    return 0 if status.get("state") == "done" else EXIT_FAILED


def release_if_finished(cfg, fingerprint: str) -> None:
    """The chief asked for a run that is already done: tell the waiting workers to stop."""
    from cxrlib.runs.registry import create_run  # noqa: PLC0415
    from cxrlib.training.distribute import release_workers  # noqa: PLC0415

    if create_run(cfg, fingerprint).raw_status().get("state") == "done":
        release_workers()
