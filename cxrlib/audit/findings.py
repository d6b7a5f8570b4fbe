"""An audit finding: a structured record (severity, code, text), so no reader parses prose."""
from __future__ import annotations

from dataclasses import asdict, dataclass

WARNING = "warning"
"""A warning sign: the audit found something that makes the run's figures optimistic."""
NOTE = "note"
"""Information: a measurement with no alarm in it."""


@dataclass(frozen=True)
class Finding:
    """One finding of an audit step.

    Attributes:
        severity: :data:`WARNING` or :data:`NOTE`.
        code: what it is about, stable for programs: ``leakage``, ``metadata``, ``attention``,
            ``masked``, ``loso``, ``adversarial``, ``source_probe``, ``subgroups``,
            ``external``, ``note``.
        text: one plain-language sentence for people (``str(finding)`` is this text).
    """

    severity: str
    code: str
    text: str

    def __post_init__(self) -> None:
        if self.severity not in (WARNING, NOTE):
            raise ValueError(f"severity must be {WARNING!r} or {NOTE!r}, got {self.severity!r}")

    def __str__(self) -> str:
        return self.text

    @property
    def alarming(self) -> bool:
        """Whether it is a warning sign (shown as a warning, not a note)."""
        return self.severity == WARNING

    def to_dict(self) -> dict:
        """JSON values."""
        return asdict(self)


def finding(alarming: bool, code: str, text: str) -> Finding:
    """A :data:`WARNING` when ``alarming``, else a :data:`NOTE`."""
    return Finding(WARNING if alarming else NOTE, code, text)
