"""The Explain page's PACS source without a configured PACS: it says how to configure one.
(With a PACS: the PACS tier, tests/test_pacs.py.)"""
from __future__ import annotations

from app_fixtures import app, app_workspace, texts  # noqa: F401


def test_pacs_source_without_a_pacs_says_how_to_set_one(app, monkeypatch):
    for name in ("CXR_PACS_URL", "CXR_PACS_USER", "CXR_PACS_PASSWORD", "CXR_PACS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    at = app("views/explain.py")
    at.radio(key="ex_source").set_value("PACS (DICOMweb)").run()
    assert not at.exception, [e.value for e in at.exception]
    info = " ".join(texts(at.info))
    assert "No PACS is configured (no PACS URL" in info and "docs/pacs.md" in info
    assert not at.image  # nothing explained
