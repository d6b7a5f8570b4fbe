"""Time stamps as the run folders and the queue store them."""
from __future__ import annotations

import datetime as _dt


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
