"""How many background jobs may run at once, and which GPU each training process gets.

``CXR_MAX_RUNS`` when set; else one slot per GPU on a GPU machine, counted with ``nvidia-smi -L``
(or ``/proc/driver/nvidia/gpus``) and never by importing TensorFlow in the app's process; else 1.
With several GPUs and several slots, each training process sees only its slot's GPU
(``CUDA_VISIBLE_DEVICES``); a single slot keeps every GPU (``MirroredStrategy``). The queue that
hands the slots out is :mod:`cxrlib.runs.queue`.
"""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

MAX_RUNS_ENV = "CXR_MAX_RUNS"
SERVER_GPUS_ENV = "CXR_SERVER_GPUS"
"""The GPUs the server shares out, passed down to a training process pinned to one of them: a
process that ends starts the next queued run, and must share out the server's GPUs, not its own."""


@functools.lru_cache(maxsize=1)
def _gpus_on_machine() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10,
                             check=False)
        found = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
        if out.returncode == 0 and found:
            return found
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return sum(1 for _ in Path("/proc/driver/nvidia/gpus").iterdir())
    except OSError:
        return 0


def gpu_devices() -> list[str]:
    """The GPUs a training process may use, as ``CUDA_VISIBLE_DEVICES`` entries (none on a CPU).

    ``CUDA_VISIBLE_DEVICES`` set for the server wins (``""`` or ``-1``: no GPU); in a training
    process pinned to one GPU, the server's list (``CXR_SERVER_GPUS``).
    """
    visible = os.environ.get(SERVER_GPUS_ENV, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    return [str(i) for i in range(_gpus_on_machine())]


def max_runs() -> int:
    """How many background jobs may run at once: ``CXR_MAX_RUNS``, else one per GPU, else 1.

    Raises:
        ValueError: ``CXR_MAX_RUNS`` is not a whole number of at least 1.
    """
    raw = os.environ.get(MAX_RUNS_ENV, "").strip()
    if not raw:
        return max(1, len(gpu_devices()))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_RUNS_ENV}={raw!r}: it must be a whole number of at least 1 "
                         "(how many training runs may run at once)")
    return value


def slot_env(slot: int, slots: int) -> dict[str, str]:
    """Environment of a training process in ``slot``: its own GPU when GPUs are shared out."""
    devices = gpu_devices()
    if slots < 2 or len(devices) < 2:
        return {}  # one slot keeps every GPU (MirroredStrategy); a CPU has nothing to pin
    return {"CUDA_VISIBLE_DEVICES": devices[slot % len(devices)],
            SERVER_GPUS_ENV: ",".join(devices)}
