"""Audit page: runs the trust audit of the tiny run and shows its findings plainly."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from app_fixtures import app, app_workspace, metric, texts, trained_run  # noqa: F401

from cxrlib import preprocessing as preprocess

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


def _independent_audit(run):
    """What the audit should find on the run's test films, computed here without cxrlib.audit:
    each film preprocessed from its file, its Grad-CAM, its lung mask, the share of the CAM
    inside the mask, and the model's accuracy with the lungs replaced by the film's mean grey."""
    from cxrlib.explain import get_cam
    from cxrlib.lungs.classical import segment_lungs

    test = run.predictions().query("split == 'test'")
    model = run.load_model()
    cam = get_cam("gradcam", model)
    classes = np.asarray(run.classes)
    shares, right = [], {"lungs blanked": [], "lungs only": []}
    for path, label in zip(test["path"], test["label"]):
        film = preprocess.preprocess_film(cv2.imread(path, cv2.IMREAD_GRAYSCALE),
                                          run.config.preprocess)
        heat = cam(preprocess.to_model_input(film[None]))[0][0]
        lungs = segment_lungs(film).mask
        if heat.sum() > 0:
            shares.append(float(heat[lungs].sum() / heat.sum()))
        fill = np.uint8(round(float(film.mean())))
        for condition, replace in (("lungs blanked", lungs), ("lungs only", ~lungs)):
            masked = np.where(replace, fill, film).astype(np.uint8)
            probs = np.asarray(model(preprocess.to_model_input(masked[None]), training=False))
            right[condition].append(classes[probs.argmax()] == label)
    accuracy = float(np.mean(test["label"].to_numpy() == test["pred"].to_numpy()))
    return test, accuracy, float(np.mean(shares)), {k: float(np.mean(v)) for k, v in right.items()}


def test_audit_findings(app, trained_run):
    at = _audited(app)
    assert not at.exception
    test, acc, share, masked_acc = _independent_audit(trained_run)
    assert metric(at, "CNN test accuracy") == f"{acc:.3f}"
    shown_share = metric(at, "CAM mass inside the lungs")
    assert shown_share.endswith("%") and abs(float(shown_share[:-1]) - 100 * share) <= 0.5 + 1e-9
    assert metric(at, "Accuracy, lungs blanked") == f"{masked_acc['lungs blanked']:.3f}"
    masked = [d.value for d in at.dataframe if "condition" in d.value.columns][0]
    assert list(masked["condition"]) == ["unmasked", "lungs blanked", "lungs only"]
    by_condition = masked.set_index("condition")["accuracy"]
    assert by_condition["unmasked"] == pytest.approx(acc)
    assert by_condition["lungs blanked"] == pytest.approx(masked_acc["lungs blanked"])
    assert by_condition["lungs only"] == pytest.approx(masked_acc["lungs only"])

    # The synthetic classes differ in brightness and every film is a PNG of one size: image
    # properties alone separate them, so the metadata-only baseline must reach the
    # "confounded" level (0.8 for 3 classes) and the page must say so.
    meta_acc = float(metric(at, "Metadata-only accuracy"))
    assert meta_acc >= 0.8
    assert any(w.startswith("The data is confounded") for w in texts(at.warning))
    confusion = [d.value for d in at.dataframe if "Viral Pneumonia" in d.value.columns
                 and "films" not in d.value.columns][0].to_numpy(dtype=float)
    assert f"{np.trace(confusion) / confusion.sum():.3f}" == metric(at, "Metadata-only accuracy")
    split = trained_run.split_table()
    commonest = split.loc[split["split"] == "train", "label"].value_counts().idxmax()
    chance = (split.loc[split["split"] == "test", "label"] == commonest).mean()
    assert [m.help for m in at.metric if m.label == "Metadata-only accuracy"] == [f"Chance: {chance:.3f}"]

    for heading in ("Leakage: patients and near-duplicates on more than one side",
                    "Metadata-only baseline", "Where the model looks", "Masked evaluation",
                    "Per source"):
        assert heading in texts(at.subheader)
    per_source = [d.value for d in at.dataframe if "source" in d.value.columns][-1]
    assert list(per_source["source"]) == ["synthetic"] and per_source["films"].sum() == len(test)
    assert per_source["accuracy"].iloc[0] == pytest.approx(acc)
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
