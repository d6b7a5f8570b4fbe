"""Processes: whether a pid is alive (one answer for run locks and cache builders), stopping a
child, and a background process's lower CPU priority."""
from __future__ import annotations

import os


def pid_alive(pid: int | None) -> bool:
    """Whether a process ``pid`` exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def lower_priority(pid: int, niceness: int) -> bool:
    """Give process ``pid`` the scheduling niceness ``niceness`` (0-19; higher yields more).

    On Linux with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``), the CPU
    is shared between sessions' groups first, and a process's niceness weighs only inside its
    group: a training process that leads its own session would take a full group's share next
    to the server whatever its niceness (measured: two such busy processes at niceness 10 took
    2/3 of the CPU from two at 0). So when ``pid`` has an autogroup of its own (not this
    process's), the group gets the niceness too; this process's group is never changed.

    Returns False when the system refuses (the process is gone, or not ours to change)."""
    niceness = max(0, min(19, int(niceness)))
    try:
        os.setpriority(os.PRIO_PROCESS, int(pid), niceness)
    except OSError:
        return False
    try:
        with open(f"/proc/{int(pid)}/autogroup", encoding="ascii") as fh:
            group = fh.read().split()[0]
        with open("/proc/self/autogroup", encoding="ascii") as fh:
            own = fh.read().split()[0]
        if group != own:
            with open(f"/proc/{int(pid)}/autogroup", "w", encoding="ascii") as fh:
                fh.write(str(niceness))
    except (OSError, IndexError):  # no autogroups here, or not ours: the niceness still holds
        pass
    return True


def stop_process(proc, grace_s: float = 10.0) -> None:
    """Stop a child process started by the product (a local Orthanc, a test's server): SIGTERM,
    then SIGKILL if it has not ended within ``grace_s``; it is reaped either way."""
    import subprocess  # noqa: PLC0415

    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
