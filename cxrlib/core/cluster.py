"""Which worker of a multi-machine training this process is, from the standard ``TF_CONFIG``.

``TF_CONFIG`` is TensorFlow's own description of a cluster (JSON: ``{"cluster": {"worker":
["host:port", ...]}, "task": {"type": "worker", "index": K}}``, optionally with one ``"chief"``
task). It is read here without importing TensorFlow, so the CLI and the run registry can tell
the chief from the other workers before any model exists. The chief is the ``chief`` task when
there is one, else worker 0 (TensorFlow's rule): it alone writes the run registry and the
checkpoints (see :mod:`cxrlib.training.distribute`).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ENV = "TF_CONFIG"


@dataclass(frozen=True)
class Role:
    """This process's place in the cluster.

    Attributes:
        index: position among all training tasks, the chief first (TensorFlow's
            ``id_in_cluster``): 0 is the chief.
        count: number of training tasks (chief included).
        addresses: ``host:port`` of every task, in ``index`` order.
    """

    index: int
    count: int
    addresses: tuple[str, ...]

    @property
    def chief(self) -> bool:
        return self.index == 0


def tf_config_for(workers: Sequence[str], index: int) -> dict:
    """The ``TF_CONFIG`` of worker ``index`` of ``workers`` (``host:port`` each, chief first).

    Raises:
        ValueError: fewer than two workers, a malformed address, a repeated one, or an index
            outside ``range(len(workers))``.
    """
    workers = [w.strip() for w in workers if w.strip()]
    if len(workers) < 2:
        raise ValueError("--workers needs at least two host:port addresses")
    for address in workers:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"worker address {address!r} is not host:port")
    if len(set(workers)) != len(workers):
        raise ValueError("the same worker address is listed twice")
    if not 0 <= index < len(workers):
        raise ValueError(f"--worker-index must be in 0..{len(workers) - 1}, got {index}")
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": int(index)}}


def role(env: Mapping[str, str] | None = None) -> Role | None:
    """This process's :class:`Role`, or None when ``TF_CONFIG`` is unset or names one task.

    Raises:
        ValueError: a ``TF_CONFIG`` that is not valid JSON, has no task of this process, or
            uses jobs this project does not run (``ps``, ``evaluator``).
    """
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
        cluster, task = config.get("cluster") or {}, config.get("task") or {}
        kind, index = str(task.get("type", "")), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"{ENV} is not a valid cluster description: {exc}") from None
    other = set(cluster) - {"chief", "worker"}
    if other:
        raise ValueError(f"{ENV}: jobs {sorted(other)} are not supported (chief and workers only)")
    addresses = tuple(cluster.get("chief", [])) + tuple(cluster.get("worker", []))
    if len(addresses) < 2:
        return None
    if kind not in cluster or not 0 <= index < len(cluster[kind]):
        raise ValueError(f"{ENV}: task {kind!r} {index} is not in the cluster")
    offset = len(cluster.get("chief", [])) if kind == "worker" else 0
    return Role(index=offset + index, count=len(addresses), addresses=addresses)
