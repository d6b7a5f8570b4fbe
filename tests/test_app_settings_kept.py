"""A user's settings on a page are still there when they leave the page and come back (issue 22:
"nothing the user made is lost"). Streamlit forgets a widget's value when a run does not draw
it, so each setting a user makes is kept for the session (``persist_state``); before, the
Audit page's CAM method came back to the default, and with it other options: the user saw the
Run button instead of the audit they had started."""
from __future__ import annotations

import pytest
from app_fixtures import app, app_workspace, trained_run  # noqa: F401

HOME = "views/home.py"


def _there_and_back(at, page: str):
    at.switch_page(HOME).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_audit_options_are_kept(app):
    at = app("views/audit.py")
    at.selectbox(key="au_method").set_value("gradcam").run()
    at = _there_and_back(at, "views/audit.py")
    assert at.selectbox(key="au_method").value == "gradcam"


def test_the_explain_settings_and_the_window_are_kept(app, trained_run):
    at = app("views/explain.py", run_id=trained_run.id)
    layers = at.selectbox(key="ex_layer").options
    at.selectbox(key="ex_layer").set_value(layers[-1])
    at.selectbox(key="ex_target").set_value(trained_run.classes[1])
    at.selectbox(key="ex_wl_preset").set_value("Lungs")
    at.multiselect(key="ex_compare").set_value(["gradcam", "eigencam"])
    at.toggle(key="ex_road").set_value(True).run()
    at.toggle(key="ex_wl_invert").set_value(True).run()
    chosen = {"ex_layer": layers[-1], "ex_target": trained_run.classes[1], "ex_wl_preset": "Lungs"}
    window = (at.slider(key="ex_wl_centre").value, at.slider(key="ex_wl_width").value)
    assert window == (90.0, 170.0)  # the preset's, set by its callback
    at = _there_and_back(at, "views/explain.py")
    assert {k: at.selectbox(key=k).value for k in chosen} == chosen
    assert (at.slider(key="ex_wl_centre").value, at.slider(key="ex_wl_width").value) == window
    assert at.toggle(key="ex_wl_invert").value is True
    assert at.multiselect(key="ex_compare").value == ["gradcam", "eigencam"]
    assert at.toggle(key="ex_road").value is True


def _tab(at, label: str):
    at.session_state["ev_tab"] = label
    return at.run()


def test_the_evaluation_settings_are_kept(app, trained_run):
    """Each setting is on its own tab of the page, and only the open tab is drawn: they are
    kept across tabs as across pages."""
    at = app("views/evaluation.py", run_id=trained_run.id)
    at.toggle(key="ev_norm").set_value(True).run()
    _tab(at, "Predictive values")
    at.selectbox(key="ev_pos").set_value(trained_run.classes[2])
    at.slider(key="ev_prev").set_value(0.2).run()
    _tab(at, "Where it fails")
    by = at.multiselect(key="ev_by").options[:1]
    at.multiselect(key="ev_by").set_value(by).run()
    at = _there_and_back(at, "views/evaluation.py")
    assert at.multiselect(key="ev_by").value == by  # the tab left is the tab shown
    _tab(at, "Predictive values")
    assert at.selectbox(key="ev_pos").value == trained_run.classes[2]
    assert at.slider(key="ev_prev").value == pytest.approx(0.2)
    _tab(at, "Performance")
    assert at.toggle(key="ev_norm").value is True


def test_the_training_lung_crop_and_the_preprocessing_film_are_kept(app):
    """The Training page's lung-crop switch was lost on leaving the page while its margin was
    kept: a run started on return used other preprocessing than the user had set."""
    at = app("views/training.py")
    [crop] = [t for t in at.toggle if t.label.startswith("Crop to the lungs")]
    key, was = crop.key, crop.value
    crop.set_value(not was).run()
    at = _there_and_back(at, "views/training.py")
    assert at.toggle(key=key).value is (not was)

    at.switch_page("views/preprocessing.py").run()
    films = at.selectbox(key="pp_film").options
    at.selectbox(key="pp_film").select_index(1).run()
    chosen = at.selectbox(key="pp_film").value
    at = _there_and_back(at, "views/preprocessing.py")
    assert len(films) > 2 and at.selectbox(key="pp_film").value == chosen
