"""One radiologist's review of one film of one run, and the answers a review may hold.

A film is identified by the run id and its ``rel_path`` in the run's dataset (the key of every
table a run writes), with the film's content digest (:mod:`cxrlib.data.fingerprint`) kept beside
them when the caller knows it, so that a review still says which pixels were judged after the
dataset moves or a file is replaced.
"""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from cxrlib.core import clock

HEATMAP_LOCATIONS: dict[str, str] = {
    "lung_findings": "on the lung findings",
    "lungs_elsewhere": "elsewhere in the lungs",
    "heart_mediastinum": "on the heart / mediastinum",
    "diffuse": "diffuse, no clear focus",
    "markers": "on markers, text or devices",
    "outside_body": "outside the body",
}
"""Where a heatmap falls: stored code -> the words a reviewer chooses from."""

OFF_TARGET = ("markers", "outside_body")
"""Heatmap locations that say the model looked at something other than the patient's lungs."""

CONFIDENCE_LEVELS = (1, 2, 3, 4, 5)
"""A reviewer's confidence in the review: 1 (unsure) to 5 (certain)."""

MAX_REVIEWER = 120
MAX_ISSUER = 2048
MAX_SUBJECT = 255  # OpenID Connect: a subject is at most 255 ASCII characters
MAX_COMMENT = 10_000

REVIEW_COLUMNS = ("review_id", "run_id", "rel_path", "film_digest", "reviewer", "label",
                  "prediction", "agrees_with_label", "agrees_with_prediction", "heatmap_location",
                  "confidence", "comment", "created", "issuer", "subject")
"""Columns of a reviews table (the store's query results and the CSV export), in this order."""


def now_iso() -> str:
    """A review's time stamp: :func:`cxrlib.core.clock.now_iso` to the microsecond (reviews saved
    at once still sort)."""
    return clock.now_iso("microseconds")


def clean_reviewer(name: Any) -> str:
    """A reviewer's name as stored: surrounding and repeated whitespace removed.

    Raises:
        ValueError: an empty name, or one over :data:`MAX_REVIEWER` characters.
    """
    text = " ".join(str(name or "").split())
    if not text:
        raise ValueError("a review needs the reviewer's name")
    if len(text) > MAX_REVIEWER:
        raise ValueError(f"a reviewer's name has at most {MAX_REVIEWER} characters")
    return text


@dataclass(frozen=True)
class Review:
    """A reviewer's verdict on one film of one run.

    Attributes:
        reviewer: who reviewed (see :func:`clean_reviewer`).
        run_id: the run whose prediction and heatmap were reviewed.
        rel_path: the film, relative to the run's dataset folder.
        agrees_with_label: the reviewer agrees with the film's label.
        agrees_with_prediction: the reviewer agrees with the model's prediction.
        heatmap_location: a key of :data:`HEATMAP_LOCATIONS`.
        confidence: 1-5 (:data:`CONFIDENCE_LEVELS`).
        comment: free text (may be empty).
        label: the label the reviewer was shown (kept so the review explains itself).
        prediction: the prediction the reviewer was shown.
        film_digest: the film's content digest, when known.
        review_id: unique id of this review; saving the same id twice stores it once (a
            double click or a rerun never makes a duplicate).
        created: when the review was made (UTC, ISO 8601).
        issuer: the login's identity provider (the ID token's ``iss``) when the reviewer
            logged in; None for a typed name.
        subject: the reviewer's stable id at that provider (the ID token's ``sub``); given
            together with ``issuer``.

    Raises:
        ValueError: for a value outside the answers above.
    """

    reviewer: str
    run_id: str
    rel_path: str
    agrees_with_label: bool
    agrees_with_prediction: bool
    heatmap_location: str
    confidence: int
    comment: str = ""
    label: str | None = None
    prediction: str | None = None
    film_digest: str | None = None
    review_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: str = field(default_factory=now_iso)
    issuer: str | None = None
    subject: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reviewer", clean_reviewer(self.reviewer))
        login = [str(v).strip() if v is not None else "" for v in (self.issuer, self.subject)]
        if any(login) and not all(login):
            raise ValueError("a logged-in reviewer needs both the login's issuer and subject")
        if len(login[0]) > MAX_ISSUER or len(login[1]) > MAX_SUBJECT:
            raise ValueError(f"a login's issuer has at most {MAX_ISSUER} characters and its "
                             f"subject at most {MAX_SUBJECT}")
        object.__setattr__(self, "issuer", login[0] or None)
        object.__setattr__(self, "subject", login[1] or None)
        for name in ("run_id", "rel_path", "review_id"):
            if not str(getattr(self, name) or "").strip():
                raise ValueError(f"a review needs a {name}")
        for name in ("agrees_with_label", "agrees_with_prediction"):
            value = getattr(self, name)
            if not isinstance(value, bool) and value not in (0, 1):
                raise ValueError(f"{name} must be True or False, got {value!r}")
            object.__setattr__(self, name, bool(value))
        if self.heatmap_location not in HEATMAP_LOCATIONS:
            raise ValueError(f"heatmap_location must be one of {list(HEATMAP_LOCATIONS)}, "
                             f"got {self.heatmap_location!r}")
        if isinstance(self.confidence, bool) or self.confidence not in CONFIDENCE_LEVELS:
            raise ValueError(f"confidence must be an integer from 1 to 5, got {self.confidence!r}")
        object.__setattr__(self, "confidence", int(self.confidence))
        comment = str(self.comment or "")
        if len(comment) > MAX_COMMENT:
            raise ValueError(f"a comment has at most {MAX_COMMENT} characters")
        object.__setattr__(self, "comment", comment)

    def as_row(self) -> dict[str, Any]:
        """The review as one row of :data:`REVIEW_COLUMNS`."""
        row = asdict(self)
        return {c: row[c] for c in REVIEW_COLUMNS}
