"""Audit page: runs the trust audit of the tiny run and shows its findings plainly."""
from __future__ import annotations

import numpy as np
from app_fixtures import app, app_workspace, metric, texts, trained_run  # noqa: F401

PAGE = "pages/audit.py"


def _audited(app):
    """The Audit page with a report: the stored one, or one computed by clicking the button."""
    at = app(PAGE)
    button = [b for b in at.button if b.label == "Run the audit"]
    if button:
        button[0].click().run()
    return at


def test_audit_waits_for_a_click(app):
    at = app(PAGE)
    at.select_slider(key="au_max").set_value(50).run()  # options never audited in this session
    assert texts(at.title) == ["Audit"]
    assert [b.label for b in at.button] == ["Run the audit"]
    assert not at.metric


def test_audit_findings(app, trained_run):
    at = _audited(app)
    assert not at.exception
    test = trained_run.predictions().query("split == 'test'")
    acc = np.mean(test["label"].to_numpy() == test["pred"].to_numpy())
    assert metric(at, "CNN test accuracy") == f"{acc:.3f}"
    meta_acc = float(metric(at, "Metadata-only accuracy"))
    assert 0.0 <= meta_acc <= 1.0
    share = metric(at, "CAM mass inside the lungs")
    assert share.endswith("%") and 0 <= float(share[:-1]) <= 100
    # the synthetic classes differ in brightness: a metadata-only classifier finds that out
    if meta_acc >= 0.9:
        assert any("confounded" in w for w in texts(at.warning))
    for heading in ("Leakage: patients and near-duplicates on more than one side",
                    "Metadata-only baseline", "Where the model looks", "Masked evaluation",
                    "Per source"):
        assert heading in texts(at.subheader)
    masked = [d.value for d in at.dataframe if "condition" in d.value.columns][0]
    assert list(masked["condition"]) == ["unmasked", "lungs blanked", "lungs only"]
    assert masked.set_index("condition").loc["unmasked", "accuracy"] == acc
    per_source = [d.value for d in at.dataframe if "source" in d.value.columns][-1]
    assert list(per_source["source"]) == ["synthetic"] and per_source["films"].sum() == len(test)
    assert len(at.image) >= 2  # lung mask and CAM of the gallery's first film


def test_a_second_visit_reuses_the_report(app):
    at = _audited(app)
    again = app(PAGE)  # another session: no button, the stored report is shown
    assert not [b for b in again.button if b.label == "Run the audit"]
    assert metric(again, "CNN test accuracy") == metric(at, "CNN test accuracy")


def test_bad_external_folder_is_a_clear_error(app, tmp_path):
    at = app(PAGE)
    at.text_input(key="au_external").set_value(str(tmp_path / "missing")).run()
    at.button[0].click().run()
    assert not at.exception
    assert any(e.startswith("The audit could not finish:") for e in texts(at.error))
