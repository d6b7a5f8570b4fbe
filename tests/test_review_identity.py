"""Reviewers' identity on a shared server (issue 22, section 4): with a login configured the
reviewer is the logged-in user, stored with the provider's issuer and subject; ``CXR_REVIEWERS``
says who may write; an existing review database gains the two columns and loses nothing."""
from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
from app_fixtures import (APP, TIMEOUT, app, app_workspace, shown_texts, texts,  # noqa: F401
                          trained_run)
from streamlit.testing.v1 import AppTest
from test_app_review import _answer, _button, workspace_copy  # noqa: F401 (fixture)

from app_services import identity
from cxrlib.reviews import Review, ReviewStore
from cxrlib.reviews.store import MIGRATIONS, SCHEMA_VERSION

AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "cxr", "client_secret": "secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
ISSUER = "https://login.hospital.example"


def test_an_existing_database_gains_issuer_and_subject_and_loses_nothing(tmp_path):
    path = tmp_path / "reviews.sqlite"
    old = {"review_id": "r1", "run_id": "run1", "rel_path": "COVID/a b.png", "film_digest": "d1",
           "reviewer": "Dr Old", "label": "COVID-19", "prediction": "Normal",
           "agrees_with_label": 1, "agrees_with_prediction": 0, "heatmap_location": "markers",
           "confidence": 4, "comment": "written before logins", "created": "2026-01-02T03:04:05"}
    with sqlite3.connect(path) as conn:  # a database as version 1 left it
        for statement in MIGRATIONS[1]:
            conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), "
                     "version INTEGER NOT NULL, updated TEXT NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1, 1, '2026-01-02')")
        conn.execute(f"INSERT INTO reviews ({', '.join(old)}) VALUES ({', '.join('?' * len(old))})",
                     list(old.values()))
    store = ReviewStore(path)
    assert SCHEMA_VERSION == 2 and store.schema_version() == 2
    back = store.reviews()
    assert len(back) == 1
    row = back.iloc[0]
    expected = dict(old, agrees_with_label=True, agrees_with_prediction=False)
    assert {k: row[k] for k in old} == expected
    assert pd.isna(row["issuer"]) and pd.isna(row["subject"])
    store.add(Review(reviewer="ada@hospital.example", run_id="run1", rel_path="COVID/a b.png",
                     agrees_with_label=True, agrees_with_prediction=True,
                     heatmap_location="lung_findings", confidence=5, issuer=ISSUER, subject="u-1"))
    store.close()
    again = ReviewStore(path).reviews()  # reopening migrates nothing twice
    assert again["reviewer"].tolist() == ["Dr Old", "ada@hospital.example"]
    assert again["issuer"].isna().tolist() == [True, False] and again["subject"].iloc[1] == "u-1"
    assert again["issuer"].iloc[1] == ISSUER


def test_a_login_needs_issuer_and_subject_together():
    base = dict(reviewer="x", run_id="r", rel_path="a.png", agrees_with_label=True,
                agrees_with_prediction=True, heatmap_location="markers", confidence=3)
    with pytest.raises(ValueError, match="both the login's issuer and subject"):
        Review(**base, issuer=ISSUER)
    with pytest.raises(ValueError, match="subject at most 255"):
        Review(**base, issuer=ISSUER, subject="s" * 256)
    assert Review(**base, issuer=f" {ISSUER} ", subject="u").issuer == ISSUER


def test_the_allow_list_names_who_may_write():
    assert identity.allowed_reviewers("") is None and identity.allowed_reviewers(" , ") is None
    allowed = identity.allowed_reviewers("Ada@Hospital.example, u-42  bob@x.org")
    assert allowed == {"ada@hospital.example", "u-42", "bob@x.org"}
    assert identity.may_write(None, email=None, subject="anyone")
    assert identity.may_write(allowed, email="ADA@hospital.example", subject="u-1")
    assert identity.may_write(allowed, email=None, subject="u-42")
    assert not identity.may_write(allowed, email="eve@hospital.example", subject="u-43")
    claims = {"is_logged_in": True, "iss": ISSUER, "sub": "u-1", "email": "ada@hospital.example",
              "name": "Ada Lovelace"}
    who = identity.reviewer_from_claims(claims, allowed)
    assert who == identity.Reviewer("ada@hospital.example", ISSUER, "u-1", True)
    assert identity.reviewer_from_claims(dict(claims, email=None), allowed).name == "Ada Lovelace"
    assert not identity.reviewer_from_claims(dict(claims, email=None), allowed).may_write
    assert identity.reviewer_from_claims(dict(claims, is_logged_in=False), allowed) is None
    assert identity.reviewer_from_claims({"email": "test@example.com"}, None) is None


def _review_page(run, user: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets["auth"] = AUTH
    at.user = user
    at.session_state["data_dir"] = run.config.data.root
    at.session_state["run_id"] = run.id
    at.session_state["rv_blind"] = False  # unblinded: the form asks agree / disagree (identity only here)
    at.run()
    at.switch_page("views/review.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_with_a_login_the_reviewer_is_the_logged_in_user_and_others_read(trained_run, workspace_copy,
                                                                        monkeypatch):
    run = workspace_copy("abcd")
    monkeypatch.setenv(identity.REVIEWERS_ENV, "ada@hospital.example")
    anonymous = _review_page(run, {"is_logged_in": False})
    assert [b.label for b in anonymous.button] == ["Log in"]
    assert not [t for t in anonymous.text_input if t.key == "rv_reviewer_name"]  # no typed name

    ada = _review_page(run, {"is_logged_in": True, "iss": ISSUER, "sub": "u-1",
                             "email": "ada@hospital.example", "name": "Ada"})
    assert "Logged in as ada@hospital.example" in shown_texts(ada.caption)
    assert not [t for t in ada.text_input if t.key == "rv_reviewer_name"]
    _answer(ada, label=True, prediction=False, where="outside_body")
    _button(ada, "Save review").click().run()
    stored = ReviewStore().reviews(run.id)
    assert stored[["reviewer", "issuer", "subject"]].values.tolist() == [
        ["ada@hospital.example", ISSUER, "u-1"]]

    eve = _review_page(run, {"is_logged_in": True, "iss": ISSUER, "sub": "u-2",
                             "email": "eve@hospital.example"})
    assert "Logged in as eve@hospital.example (read only)" in shown_texts(eve.caption)
    assert any("only the reviewers this server lists in CXR_REVIEWERS" in s for s in texts(eve.info))
    assert not [b for b in eve.button if b.label == "Save review"]
    shown = [d.value for d in eve.dataframe if "reviewer" in d.value.columns][0]
    assert shown["reviewer"].tolist() == ["ada@hospital.example"]  # she reads Ada's review
    assert len(ReviewStore().reviews(run.id)) == 1
