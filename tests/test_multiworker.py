"""Multi-worker training: two ``python -m cxrlib train --workers ...`` processes on 127.0.0.1.

Each worker gets its own workspace (as two machines would), the tiny model and the synthetic
dataset; the run is a fine-tune from its head run without augmentation or dropout, so it is
deterministic and a single-process run of the same config (same global batch) must give the
same numbers. The
chief's run registry is the only one that holds the run; the other worker's progress reaches the
chief through a collective. A SIGKILLed worker leaves the chief's run failed and resumable,
with complete files only. Every process has a timeout and is killed (its whole group) at the end.
"""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrlib.core.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, SplitConfig, TrainConfig
from cxrlib.runs.registry import create_run, run_id
from cxrlib.runs.run import Run

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 240  # a loaded 2-core CI machine: two TensorFlow start-ups and three epochs


def _config(root: Path, epochs: int, init_from_head: bool = False) -> RunConfig:
    return RunConfig(
        data=DataConfig(root=str(root)), preprocess=PreprocessConfig(steps=(), size=48),
        model=ModelConfig(family="tiny", weights="random", head_units=(32, 16),
                          head_dropout=(0.0, 0.0)),
        split=SplitConfig(test_fraction=0.25, val_fraction=0.15, seed=1),
        train=TrainConfig(mode="finetune", epochs=epochs, batch_size=8, learning_rate=3e-4,
                          augment=False, init_from_head=init_from_head, seed=3))


def _free_ports(n: int) -> list[int]:
    """Ports the kernel hands out now (all bound at once, so they differ), released for the workers."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Cluster:
    """Two worker processes (own sessions, own workspaces) training ``cfg``."""

    def __init__(self, tmp: Path, cfg: RunConfig, workspaces: list[Path] | None = None):
        self.tmp, self.cfg = tmp, cfg
        (tmp / "cfg.json").write_text(json.dumps(cfg.to_dict()))
        self.addresses = [f"127.0.0.1:{p}" for p in _free_ports(2)]
        self.workspaces = workspaces or [tmp / f"machine-{k}" for k in range(2)]
        self.procs = [self._start(k) for k in range(2)]

    def _start(self, k: int) -> subprocess.Popen:
        env = dict(os.environ, CXR_WORKSPACE=str(self.workspaces[k]))
        env.pop("TF_CONFIG", None)
        log = open(self.tmp / f"worker-{k}.log", "wb")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen(
            [sys.executable, "-m", "cxrlib", "train", "--config", str(self.tmp / "cfg.json"),
             "--workers", ",".join(self.addresses), "--worker-index", str(k)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, k: int, timeout: float) -> int | None:
        try:
            return self.procs[k].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, k: int) -> None:
        try:
            os.killpg(self.procs[k].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.procs[k].wait(timeout=30)

    def close(self) -> None:
        for k in range(2):
            if self.procs[k].poll() is None:
                self.kill(k)

    def log(self, k: int) -> str:
        return (self.tmp / f"worker-{k}.log").read_text(errors="replace")[-3000:]

    def chief_run(self, fingerprint: str) -> Run:
        return Run(self.workspaces[0] / "models" / "runs" / run_id(self.cfg, fingerprint))


def _fingerprint(cfg: RunConfig) -> str:
    from cxrlib.data.datasets import scan_dataset

    return scan_dataset(cfg.data.root).for_task(cfg.data.task).fingerprint


@pytest.fixture(scope="module")
def two_workers(synthetic_dataset, tmp_path_factory):
    # Started from a head run, as the recipe does: the chief trains it as a process of its own,
    # then every worker loads the chief's copy.
    cluster = Cluster(tmp_path_factory.mktemp("cluster"),
                      _config(synthetic_dataset, epochs=3, init_from_head=True))
    try:
        codes = [cluster.wait(k, WAIT_S) for k in range(2)]
        assert codes == [0, 0], f"exit codes {codes}\n{cluster.log(0)}\n{cluster.log(1)}"
        yield cluster
    finally:
        cluster.close()


def test_both_workers_take_part_and_only_the_chief_writes_the_run(two_workers):
    cluster = two_workers
    fp = _fingerprint(cluster.cfg)
    run = cluster.chief_run(fp)
    status = run.status()
    assert status["state"] == "done", status
    n_train = int((run.split_table()["split"] == "train").sum())
    steps = 3 * math.ceil(n_train / cluster.cfg.train.batch_size)
    workers = status["workers"]  # gathered by a collective: the chief cannot read worker 1's disk
    assert [w["worker"] for w in workers] == [0, 1]
    assert [w["pid"] for w in workers] == [p.pid for p in cluster.procs]
    assert [w["steps"] for w in workers] == [steps, steps]
    assert [w["address"] for w in workers] == cluster.addresses
    assert run.metrics()["workers"] == workers
    # Worker 1's own progress is in its scratch folder, outside its machine's run registry...
    scratch = Run(cluster.workspaces[1] / "models" / "workers" / run.id / "worker-1")
    assert scratch.raw_status()["state"] == "done"
    registry_1 = cluster.workspaces[1] / "models" / "runs"
    assert not registry_1.exists() or not any(registry_1.iterdir())
    # ...and it kept no model or checkpoint: the chief's are the run's.
    for name in ("best.keras", "checkpoint.json", "checkpoint.weights.h5", "predictions.csv"):
        assert not (scratch.folder / name).exists(), name
    for name in ("best.keras", "checkpoint.json", "history.csv", "predictions.csv", "metrics.json"):
        assert (run.folder / name).is_file(), name


def test_two_workers_equal_one_process_on_the_same_global_batch(two_workers, workspace):
    from cxrlib.runs import runner

    cluster = two_workers
    fp = _fingerprint(cluster.cfg)
    single = create_run(cluster.cfg, fp)  # the test's own workspace: one process, one device
    runner.execute_run(single)  # trains its head run first, as the chief's runner did
    assert single.status()["state"] == "done"
    chief = cluster.chief_run(fp)
    assert chief.id == single.id
    assert chief.metrics()["init_from_head_run"] == single.metrics()["init_from_head_run"]
    cols = ["loss", "accuracy", "val_loss", "val_accuracy"]
    a, b = chief.history()[cols].to_numpy(), single.history()[cols].to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(a[0], a[-1]), "the run must actually train"
    pa, pb = chief.predictions(), single.predictions()
    pd.testing.assert_series_equal(pa["rel_path"], pb["rel_path"])
    probs = [f"p_{c}" for c in chief.classes]
    np.testing.assert_allclose(pa[probs].to_numpy(), pb[probs].to_numpy(), atol=1e-4)


def test_a_killed_worker_leaves_the_run_failed_resumable_and_it_resumes(synthetic_dataset, tmp_path):
    from cxrlib.models.io import load_model

    epochs = 25
    cluster = Cluster(tmp_path, _config(synthetic_dataset, epochs=epochs))
    try:
        run = cluster.chief_run(_fingerprint(cluster.cfg))
        deadline = time.monotonic() + WAIT_S
        while not (run.folder / "checkpoint.json").exists():
            assert time.monotonic() < deadline, cluster.log(0)
            assert cluster.procs[0].poll() is None, cluster.log(0)
            time.sleep(0.2)
        cluster.kill(1)
        code = cluster.wait(0, WAIT_S)  # the chief notices the missing heartbeats and fails
        assert code not in (0, None), f"chief exit code {code}\n{cluster.log(0)}"
    finally:
        cluster.close()
    status = run.status()
    assert status["state"] == "failed" and status["resumable"] is True, status
    assert "task:1" in status["error"], status["error"]
    assert not (run.folder / "predictions.csv").exists()
    assert not (run.folder / "metrics.json").exists()
    # Every file left is whole: the checkpoint names an epoch the history holds, the models load.
    state = json.loads((run.folder / "checkpoint.json").read_text())
    done_epochs = len(run.history())
    assert 1 <= state["epoch"] <= done_epochs < epochs
    assert list(run.history()["epoch"]) == list(range(1, done_epochs + 1))
    model = load_model(run.model_path)
    model.load_weights(run.folder / "checkpoint.weights.h5")
    assert [p.name for p in run.folder.iterdir() if p.name.startswith(".")] == []
    # The same command on both machines resumes it: worker 1 starts from the chief's checkpoint.
    again = Cluster(tmp_path, cluster.cfg, workspaces=cluster.workspaces)
    try:
        codes = [again.wait(k, WAIT_S) for k in range(2)]
        assert codes == [0, 0], f"exit codes {codes}\n{again.log(0)}\n{again.log(1)}"
    finally:
        again.close()
    assert run.status()["state"] == "done"
    assert run.metrics()["resumed_from_epoch"] == state["epoch"]
    assert list(run.history()["epoch"]) == list(range(1, epochs + 1))
