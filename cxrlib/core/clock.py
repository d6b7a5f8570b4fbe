"""Time stamps as the run folders and the queue store them."""
from __future__ import annotations

import datetime as _dt


def now_iso(timespec: str = "seconds") -> str:
    """The current UTC time, ISO 8601 to the second (run folders, the queue), or to the
    ``timespec`` asked (reviews: microseconds, so that reviews saved at once still sort)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec=timespec)
