"""Explain page (issue 25): the method box starts on the one default; the smoothing control
changes the heatmap drawn and says what it applied; a method that does not allow
eigen-smoothing gets the rest of the choice, not an error."""
from __future__ import annotations

import numpy as np
from app_fixtures import app, app_workspace, heat_values, texts, trained_run, viewer_maps  # noqa: F401

PAGE = "views/explain.py"


def _map(at) -> np.ndarray:
    return heat_values(viewer_maps(at)[0])


def _shown(at) -> str:
    return next(c for c in texts(at.caption) if c.startswith("Original"))


def test_the_smoothing_control_changes_the_map_and_back(app):
    at = app(PAGE)
    plain = _map(at)
    assert "smoothing" not in _shown(at)
    for choice, label in (("tta", "shifts and zooms"), ("eigen", "eigen-smoothing")):
        at.selectbox(key="ex_smooth").set_value(choice).run()
        assert not at.exception
        smoothed = _map(at)
        assert smoothed.shape == plain.shape and np.abs(smoothed - plain).max() > 0.05, choice
        assert f"smoothing: {label}" in _shown(at)
    at.selectbox(key="ex_smooth").set_value("none").run()
    np.testing.assert_allclose(_map(at), plain)


def test_eigen_smoothing_is_left_out_where_the_method_does_not_allow_it(app):
    at = app(PAGE)
    at.selectbox(key="ex_method").set_value("eigencam").run()
    at.selectbox(key="ex_smooth").set_value("tta+eigen").run()
    assert not at.exception and not at.error
    shown = _shown(at)
    assert "smoothing: shifts and zooms" in shown and "eigen-smoothing does not apply to EigenCAM" in shown


def test_the_method_box_starts_on_the_one_default(app, monkeypatch):
    """The page preselects ExplainConfig().method (where the measured default lives), not
    whichever method the registry lists first."""
    import dataclasses

    from app_services import explaining
    from cxrlib.core.config import ExplainConfig

    assert app(PAGE).selectbox(key="ex_method").value == ExplainConfig().method

    @dataclasses.dataclass(frozen=True)
    class Moved(ExplainConfig):
        method: str = "layercam"

    monkeypatch.setattr(explaining, "ExplainConfig", Moved)
    assert app(PAGE).selectbox(key="ex_method").value == "layercam"
