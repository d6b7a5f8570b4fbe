"""Progress bars for the CLI, drawn by ``rich``: live on a terminal, only the final line in a log."""
from __future__ import annotations

import sys
from typing import Any, TextIO


class ProgressBar:
    """One labelled progress bar on stderr (or ``stream``), started at the first update.

    On a terminal ``rich`` redraws it in place; in a log file or a pipe it writes only the final
    state when closed, so a log never fills with redraws.
    """

    def __init__(self, label: str, stream: TextIO | None = None):
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import (BarColumn, Progress, TaskProgressColumn,  # noqa: PLC0415
                                   TextColumn, TimeElapsedColumn)

        self.label = label
        console = Console(file=stream or sys.stderr, width=None if stream is None else 120)
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  TaskProgressColumn(), TimeElapsedColumn(),
                                  TextColumn("{task.fields[text]}"), console=console)
        self._task = None

    def update(self, done: float, total: float | None, text: str = "") -> None:
        """Show ``done`` of ``total`` (``total`` None or 0: an indeterminate bar) and ``text``."""
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=total or None, text=text)
        self._progress.update(self._task, completed=done, total=total or None, text=text)

    def callback(self, done: int, total: int) -> None:
        """``progress(done, total)`` for library functions."""
        self.update(done, total, f"{done}/{total}")

    def close(self) -> None:
        """Stop drawing (the final state stays on screen, or is written to the log)."""
        if self._task is not None:
            self._progress.stop()
            self._task = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def duration(seconds: Any) -> str:
    """``75`` -> ``"1m15s"``; ``None`` -> ``"?"``."""
    if seconds is None:
        return "?"
    seconds = int(round(float(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def status_line(status: dict[str, Any]) -> tuple[float, float, str]:
    """(done, total, text) of a run status for a progress bar: epochs with fractional steps."""
    epochs = status.get("epochs") or 0
    epoch = status.get("epoch") or 0  # the epoch in progress, 1-based (0 before training)
    steps, step = status.get("steps") or 0, status.get("step") or 0
    done = max(epoch - 1, 0) + step / steps if steps else float(epoch)
    done = min(done, epochs) if epochs else 0.0
    parts = [status.get("state", "?")]
    if epochs:
        parts.append(f"epoch {epoch}/{epochs}")
    if steps:
        parts.append(f"step {step}/{steps}")
    for key, value in (status.get("metrics") or {}).items():
        if isinstance(value, (int, float)):
            parts.append(f"{key} {value:.4g}")
    if status.get("eta_s") is not None and status.get("state") == "running":
        parts.append(f"ETA {duration(status['eta_s'])}")
    if status.get("message"):
        parts.append(str(status["message"]))
    return done, float(epochs), " ".join(parts)
