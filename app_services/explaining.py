"""Explanation services: CAM objects, heatmaps, overlays and the faithfulness test, cached."""
from __future__ import annotations

from typing import Any

import streamlit as st

from cxrlib.core.config import ExplainConfig, PreprocessConfig

from cxrlib import explain
from cxrlib import preprocessing as pre

from .runs import get_run, model, run_stamp


@st.cache_resource(max_entries=4, show_spinner=False)
def _layers(stamp: str, run_id: str) -> tuple[list[str], str]:
    m = model(get_run(run_id))
    return explain.conv_layer_names(m), explain.default_layer(m)


def cam_layers(run) -> tuple[list[str], str]:
    """Conv-like layers a CAM can use, and the default one."""
    return _layers(run_stamp(run), run.id)


@st.cache_resource(max_entries=6, show_spinner="Building the explanation model…")
def _cam(stamp: str, run_id: str, method: str, layer: str):
    return explain.get_cam(method, model(get_run(run_id)), layer)


@st.cache_resource(max_entries=32, show_spinner=False)
def _model_input(film_key: str, cfg_key: str, _pixels, _cfg: PreprocessConfig):
    return pre.to_model_input(pre.preprocess_film(_pixels, _cfg)[None])


@st.cache_data(max_entries=64, show_spinner="Computing the heatmap…")
def _heatmap(stamp: str, film_key: str, method: str, layer: str, target: int | None,
             _run, _pixels) -> dict[str, Any]:
    cfg = _run.config.preprocess
    x = _model_input(film_key, cfg.hash(), _pixels, cfg)
    heatmaps, probs = _cam(stamp, _run.id, method, layer)(x, target)
    return {"heatmap": heatmaps[0], "probs": probs[0]}


@st.cache_data(max_entries=64, show_spinner="Measuring faithfulness (deletion test)…")
def _faithfulness(stamp: str, film_key: str, method: str, layer: str, target: int | None,
                  _run, _pixels, _heat) -> dict[str, Any]:
    cfg = _run.config.preprocess
    x = _model_input(film_key, cfg.hash(), _pixels, cfg)
    return explain.deletion_insertion(model(_run), x, _heat, target, steps=20)


def explanation(run, pixels, film_key: str, cfg: ExplainConfig, *, faithful: bool = True):
    """Heatmap, probabilities, overlay (at the film's size) and deletion test of one film.

    Cached on the run, the film's content key and the CAM settings; alpha, colormap and contour
    only redraw the overlay.
    """
    stamp = run_stamp(run)
    layer = cfg.layer or cam_layers(run)[1]
    res = dict(_heatmap(stamp, film_key, cfg.method, layer, cfg.target, run, pixels))
    res["overlay"] = explain.overlay(pixels, res["heatmap"], alpha=cfg.alpha,
                                            colormap=cfg.colormap, contour=cfg.contour)
    if faithful:
        res["faithfulness"] = _faithfulness(stamp, film_key, cfg.method, layer, cfg.target, run,
                                            pixels, res["heatmap"])
    return res


def explain_ui(layers: list[str], default_layer: str, classes: list[str]) -> ExplainConfig:
    """Widgets for a CAM explanation; returns an :class:`ExplainConfig`."""
    c1, c2, c3 = st.columns(3)
    method = c1.selectbox("Method", list(explain.CAM_METHODS), key="ex_method",
                          persist_state="session")
    layer = c2.selectbox("Layer", layers, index=layers.index(default_layer)
                         if default_layer in layers else len(layers) - 1, key="ex_layer",
                         help=f"Default: {default_layer}")
    target = c3.selectbox("Explain class", [None, *range(len(classes))], key="ex_target",
                          format_func=lambda i: "the predicted class" if i is None else classes[i])
    alpha = c1.slider("Heatmap opacity (alpha)", 0.0, 1.0, 0.4, 0.05, key="ex_alpha",
                      persist_state="session")
    cmap = c2.selectbox("Colormap", list(explain.COLORMAPS), key="ex_cmap", persist_state="session")
    contour = c3.toggle("Contour lines instead of a filled map", False, key="ex_contour",
                        persist_state="session")
    return ExplainConfig(method=method, layer=layer, target=target, alpha=alpha, colormap=cmap,
                         contour=contour)
