"""Preprocessing page: live before / after, histograms, presets, carrying settings to Training."""
from __future__ import annotations

from app_fixtures import app, app_workspace, plotly_titles, texts  # noqa: F401

PAGE = "views/preprocessing.py"


def _preview_urls(at) -> tuple[str, str]:
    """Media URLs of the original and the preprocessed film (content-addressed by Streamlit)."""
    before = [i for i in at.image if i.captions[0].startswith("Original")][0]
    after = [i for i in at.image if i.captions[0].startswith("Preprocessed")][0]
    return before.value[0], after.value[0]


def test_before_after_histogram_and_one_film_per_class(app):
    at = app(PAGE)
    assert texts(at.title) == ["Preprocessing"]
    captions = [c for i in at.image for c in i.captions]
    assert any(c.startswith("Original") for c in captions)
    assert "Preprocessed: white balance 0.05 % → 224 px" in captions
    assert {"COVID-19", "Normal", "Viral Pneumonia"} <= set(captions)  # the per-class row
    assert plotly_titles(at) == ["Grey-level histogram before and after preprocessing"]


def test_moving_a_slider_changes_the_preview(app):
    at = app(PAGE)
    at.multiselect(key="pp_steps").set_value(["white_balance", "clahe"]).run()
    before, after_clahe2 = _preview_urls(at)
    at.slider(key="pp_clip").set_value(8.0).run()
    before_again, after_clahe8 = _preview_urls(at)
    assert before_again == before  # the original does not change
    assert after_clahe8 != after_clahe2
    assert "Preprocessed: white balance 0.05 % → CLAHE 8 / 8×8 → 224 px" in [
        c for i in at.image for c in i.captions]


def test_step_order_follows_the_selection_with_white_balance_first(app):
    at = app(PAGE)
    at.multiselect(key="pp_steps").set_value(["gamma", "clahe", "white_balance"]).run()
    at.slider(key="pp_gamma").set_value(0.5).run()
    assert "Preprocessed: white balance 0.05 % → gamma 0.5 → CLAHE 2 / 8×8 → 224 px" in [
        c for i in at.image for c in i.captions]


def test_published_presets(app):
    at = app(PAGE)
    [b for b in at.button if b.label == "CLAHE → small CNN"][0].click().run()
    assert at.multiselect(key="pp_steps").value == ["clahe"]
    assert at.slider(key="pp_clip").value == 2.0 and at.slider(key="pp_tiles").value == 8


def test_use_for_training_carries_the_settings(app):
    at = app(PAGE)
    at.multiselect(key="pp_steps").set_value(["clahe"]).run()
    at.slider(key="pp_clip").set_value(3.0).run()
    [b for b in at.button if b.label == "Use these settings for training"][0].click().run()
    assert "The Training page will use these settings." in texts(at.success)
    at.switch_page("views/training.py").run()
    assert any("CLAHE 3 / 8×8 → 224 px" in i for i in texts(at.info))


def test_greyed_sliders_say_why(app):
    """Issue 26, bug 5: the CLAHE, gamma and margin sliders stayed greyed until the step was
    added, and nothing said so."""
    at = app("views/preprocessing.py")
    at.multiselect(key="pp_steps").set_value(["white_balance"]).run()
    clip = at.slider(key="pp_clip")
    assert clip.disabled and "add CLAHE (local contrast) to the steps above" in clip.help
    assert any("Greyed sliders belong to steps not chosen above" in c for c in
               [c.value for c in at.caption])
    at.multiselect(key="pp_steps").set_value(["white_balance", "clahe"]).run()
    assert not at.slider(key="pp_clip").disabled and "Greyed" not in at.slider(key="pp_clip").help
