"""Explain and Audit pages: CAM method lists come from the registry; a flat map is not drawn."""
from __future__ import annotations

import numpy as np
from app_fixtures import (app, app_workspace, metric, texts, trained_run, viewer,  # noqa: F401
                          viewer_maps)

from cxrlib.explain import CAM_METHODS, method_label

PAGE = "views/explain.py"


def test_method_lists_come_from_the_registry(app):
    labels = [method_label(name) for name in CAM_METHODS]
    at = app(PAGE)
    assert at.selectbox(key="ex_method").options == labels
    assert app("views/audit.py").selectbox(key="au_method").options == labels


def test_the_layer_box_starts_on_the_methods_default_and_a_chosen_layer_is_explained(app, trained_run):
    from cxrlib.explain import method_default_layer

    default = method_default_layer("eigencam", trained_run.load_model())
    at = app(PAGE)
    at.selectbox(key="ex_method").set_value("eigencam").run()
    layer_box = at.selectbox(key="ex_layer")
    assert layer_box.options[0] == "the method's default layer" and default in layer_box.help
    assert _explained(at).startswith("EigenCAM on ") and f"{default})" in _explained(at)
    at.selectbox(key="ex_layer").set_value("tiny_conv_1").run()
    assert _explained(at) == "EigenCAM on tiny_conv_1"
    assert len(viewer_maps(at)) == 1 and not [w for w in texts(at.warning) if "flat map" in w]


def _explained(at) -> str:
    """The "<method> on <layer>" part of the viewer's caption."""
    caption = [c for c in texts(at.caption) if c.startswith("Original · ")][0]
    return [part for part in caption.split(" · ") if " on " in part][0]


def test_a_flat_map_is_reported_not_drawn_and_the_valid_layer_is_offered(app, monkeypatch):
    from cxrlib.explain.gradient_methods import LayerCAM

    # Raw maps negative everywhere, as Grad-CAM++ or LayerCAM on a pre-activation layer.
    monkeypatch.setattr(LayerCAM, "combine", lambda self, a, g, x, t: -np.abs(a).sum(axis=-1) - 1)
    at = app(PAGE)
    at.selectbox(key="ex_method").set_value("layercam").run()
    at.selectbox(key="ex_layer").set_value("tiny_conv_0").run()
    assert not at.exception
    warnings = [w for w in texts(at.warning) if "flat map" in w]  # (the lung-mask note may show too)
    assert len(warnings) == 1 and warnings[0].startswith("LayerCAM gives a flat map on tiny_conv_0")
    assert viewer(at) is not None and not viewer_maps(at)  # the film only: no empty map drawn
    at.toggle(key="ex_faith").set_value(True).run()  # asked for: a flat map still has none
    assert metric(at, "Faithfulness (deletion)") == "—"
    assert not [d for d in at.download_button if d.label.startswith("Download the overlay")]
    offer = [b for b in at.button if b.label.startswith("Explain ")]
    assert [b.label for b in offer] == ["Explain tiny_conv_2 instead"]
    offer[0].click().run()
    assert at.selectbox(key="ex_layer").value == "the method's default layer"
    assert _explained(at) == "LayerCAM on the last block (tiny_conv_2)"
