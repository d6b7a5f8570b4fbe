"""Who is reviewing: the logged-in user when the server has a login, else a typed name.

With an ``[auth]`` section in ``.streamlit/secrets.toml`` the app logs users in through Streamlit's
``st.login`` (OpenID Connect). A review's author is then the logged-in user, stored with the ID
token's issuer (``iss``) and subject (``sub``); nobody can type another name. ``CXR_REVIEWERS``
(optional: e-mail addresses or subjects, separated by commas or spaces) says who may write
reviews; everyone else who logs in may read them. Without a login configured, the laptop
behaviour stays: the reviewer types a name once per session.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st

from cxrlib import reviews as rv
from cxrlib.reviews.records import MAX_REVIEWER

REVIEWERS_ENV = "CXR_REVIEWERS"


@dataclass(frozen=True)
class Reviewer:
    """A logged-in user as the review store records them.

    Attributes:
        name: stored as the review's ``reviewer`` (the e-mail address, else the name, else the
            subject: the e-mail is what tells two people of one name apart).
        issuer: the identity provider (``iss``).
        subject: the user's stable id at that provider (``sub``).
        may_write: on ``CXR_REVIEWERS`` (or no list is set).
    """

    name: str
    issuer: str
    subject: str
    may_write: bool


def login_configured() -> bool:
    """Whether the server's secrets configure a login (an ``[auth]`` section)."""
    try:
        return bool(st.secrets.load_if_toml_exists() and "auth" in st.secrets)
    except Exception:  # noqa: BLE001 - unreadable secrets: no login, never a broken page
        return False


def allowed_reviewers(raw: str | None = None) -> frozenset[str] | None:
    """The allow-list of ``CXR_REVIEWERS`` (lower-cased), or None when it is unset or empty."""
    raw = os.environ.get(REVIEWERS_ENV, "") if raw is None else raw
    entries = frozenset(e.strip().casefold() for e in raw.replace(",", " ").split() if e.strip())
    return entries or None


def may_write(allowed: frozenset[str] | None, *, email: str | None, subject: str) -> bool:
    """Whether a user may write reviews: no list, or their e-mail or subject is on it."""
    if allowed is None:
        return True
    return any(v and v.strip().casefold() in allowed for v in (email, subject))


def reviewer_from_claims(claims: dict, allowed: frozenset[str] | None) -> Reviewer | None:
    """The :class:`Reviewer` of an ID token's claims, or None when they name no user."""
    issuer, subject = str(claims.get("iss") or ""), str(claims.get("sub") or "")
    if not claims.get("is_logged_in") or not issuer or not subject:
        return None
    email = claims.get("email")
    name = rv.clean_reviewer(str(email or claims.get("name") or subject)[:MAX_REVIEWER])
    return Reviewer(name=name, issuer=issuer, subject=subject,
                    may_write=may_write(allowed, email=email, subject=subject))


def logged_in_reviewer() -> Reviewer | None:
    """The logged-in user (``st.user``), or None before they log in."""
    try:
        claims = st.user.to_dict()
    except Exception:  # noqa: BLE001 - no user information in this context
        return None
    return reviewer_from_claims(claims, allowed_reviewers())
