"""Explanation services: CAM objects, heatmaps, overlays and the faithfulness test, cached."""
from __future__ import annotations

import threading
from typing import Any

import streamlit as st

from cxrlib.core.config import ExplainConfig, PreprocessConfig

from cxrlib import explain
from cxrlib import preprocessing as pre
from cxrlib.data import imageio

from .address import from_address, to_address
from .lungs import input_box, predicted_lungs
from .runs import get_run, model, run_stamp


@st.cache_resource(max_entries=4, show_spinner=False)
def _layers(stamp: str, run_id: str) -> tuple[list[str], str]:
    m = model(get_run(run_id))
    return explain.conv_layer_names(m), explain.default_layer(m)


def cam_layers(run) -> tuple[list[str], str]:
    """Conv-like layers a CAM can use, and the default one."""
    return _layers(run_stamp(run), run.id)


@st.cache_resource(max_entries=4, show_spinner=False)
def _method_layers(stamp: str, run_id: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    m = model(get_run(run_id))
    layers = {name: (explain.method_default_layer(name, m), tuple(explain.method_layers(name, m)))
              for name in explain.CAM_METHODS}
    # Once per run and server: compile the CAM functions of every method's default layer in the
    # background, so that no session's first pick of a method waits on a trace (issue 22).
    threading.Thread(target=_warm, args=(m, [d for d, _ in layers.values()
                                             if d != explain.INPUT_LAYER]),
                     name=f"cxr-warm-cams-{run_id[:8]}", daemon=True).start()
    return layers


def _warm(m, layers: list[str]) -> None:
    try:
        explain.warm_engines(m, layers)
    except Exception:  # noqa: BLE001 - the click path meets and reports the same error properly
        pass


def method_layers(run) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Per registered CAM method: its default layer on the run's model and the layers it is
    valid on (those whose activations are what it needs)."""
    return _method_layers(run_stamp(run), run.id)


def cam_methods() -> list[str]:
    """Registered CAM method names, in the registry's order (for method lists)."""
    return list(explain.CAM_METHODS)


def method_label(name: str) -> str:
    """The readable name of a CAM method (``"gradcam++"`` -> ``"Grad-CAM++"``)."""
    return explain.method_label(name)


@st.cache_resource(max_entries=6, show_spinner="Building the explanation model…")
def _cam(stamp: str, run_id: str, method: str, layer: str):
    return explain.get_cam(method, model(get_run(run_id)), layer)


@st.cache_resource(max_entries=32, show_spinner=False)
def _model_input(film_key: str, cfg_key: str, _pixels, _cfg: PreprocessConfig):
    seg = predicted_lungs(film_key, _pixels) if pre.crops_to_lungs(_cfg) else None
    return pre.to_model_input(pre.preprocess_film(_pixels, _cfg, segmentation=seg)[None])


@st.cache_data(max_entries=64, show_spinner="Computing the heatmap…")
def _heatmap(stamp: str, film_key: str, method: str, layer: str, target: int | None,
             smoothing: str, _run, _pixels) -> dict[str, Any]:
    cfg = _run.config.preprocess
    x = _model_input(film_key, cfg.hash(), _pixels, cfg)
    cam = _cam(stamp, _run.id, method, layer)
    applied = explain.smoothing_for(cam, smoothing)  # eigen-smoothing only where it applies
    result = explain.explain_smoothed(cam, x, target, applied)
    return {"heatmap": result.heatmaps[0], "probs": result.probs[0], "layer": result.layer,
            "flat": bool(result.flat[0]), "layer_valid": result.layer_valid, "smoothing": applied}


@st.cache_data(max_entries=64, show_spinner="Measuring faithfulness (deletion test)…")
def _faithfulness(stamp: str, film_key: str, method: str, layer: str, target: int | None,
                  smoothing: str, _run, _pixels, _heat) -> dict[str, Any]:
    cfg = _run.config.preprocess
    x = _model_input(film_key, cfg.hash(), _pixels, cfg)
    return explain.deletion_insertion(model(_run), x, _heat, target, steps=20)


def explanation(run, pixels, film_key: str, cfg: ExplainConfig):
    """Heatmap and probabilities of one film (its overlay: :func:`overlay_of`; its deletion test,
    on request: :func:`faithfulness_ui`).

    Cached on the run, the film's content key and the CAM settings. ``layer`` is the layer
    explained (``cfg.layer`` or the method's default); ``flat`` says the map has no contrast:
    then there is nothing to draw, and ``valid_layer`` is the method's default layer, one where
    it is valid. ``box`` is the part of the film the model saw (the lung crop's box, or the whole
    film): the heatmap is drawn over it only.
    """
    stamp = run_stamp(run)
    default, _ = method_layers(run)[cfg.method]
    layer = cfg.layer or default
    res = dict(_heatmap(stamp, film_key, cfg.method, layer, cfg.target, cfg.smoothing, run, pixels))
    res["valid_layer"] = default
    res["box"] = input_box(run.config.preprocess, pixels, film_key)
    res["film"] = pixels  # the film explained (not a copy), for :func:`overlay_of`
    return res


def overlay_of(cfg: ExplainConfig, res: dict[str, Any]):
    """The heatmap of :func:`explanation` drawn over the film at its own size (the film itself
    for a flat map): for the download and the PACS, so made only when one is asked for (a
    native-size overlay of a 4k film took about 0.5 s, and the viewer draws its own)."""
    if res["flat"]:
        return res["film"]
    return explain.overlay(res["film"], res["heatmap"], alpha=cfg.alpha, colormap=cfg.colormap,
                           contour=cfg.contour, box=res["box"], threshold=cfg.threshold)


FAITHFULNESS_HELP = ("Area under the class-score curve when pixels are removed in random order "
                     "minus the same when removed most-heated first. Above 0: the heatmap points "
                     "at pixels the model needs.")


def faithfulness_ui(container, run, pixels, film_key: str, cfg: ExplainConfig,
                    res: dict[str, Any]) -> None:
    """The explained film's deletion test, on request, as a metric ("—" until asked, and for a
    flat map). On request because it is most of an Explain action's work: about 4 of 5 CPU
    seconds for a MobileNetV2 film on 2 cores (42 forward passes), where the heatmap takes tens
    of milliseconds; every rerun used to pay for it."""
    asked = container.toggle("Measure faithfulness (deletion test, a few seconds)", key="ex_faith",
                             persist_state="session")
    faith = None
    if asked and not res["flat"]:
        faith = _faithfulness(run_stamp(run), film_key, cfg.method, res["layer"], cfg.target,
                              res["smoothing"], run, pixels, res["heatmap"])
    container.metric("Faithfulness (deletion)", "—" if faith is None else f"{faith['faithfulness']:+.3f}",
                     help=FAITHFULNESS_HELP)


def _use_default_layer() -> None:
    st.session_state["ex_layer"] = DEFAULT_LAYER


def flat_map_notice(container, cfg: ExplainConfig, res: dict[str, Any]) -> None:
    """Say that the map is flat (and not an explanation), and offer the method's valid layer."""
    label = explain.method_label(cfg.method)
    why = ("" if res["layer_valid"] else f" {label} needs non-negative activations, and "
           f"{res['layer']}'s activations can be negative.")
    container.warning(f"{label} gives a flat map on {res['layer']} for this film: nothing to draw, "
                      f"so no heatmap is shown.{why}", icon=":material/blur_off:")
    if res["valid_layer"] != res["layer"]:
        container.button(f"Explain {res['valid_layer']} instead", key="ex_use_valid_layer",
                         on_click=_use_default_layer, icon=":material/layers:")


def explain_refusal(film) -> str | None:
    """Why a film cannot be explained, or None: a film under the minimum side is too small to
    classify (the rule the dataset scan applies, :func:`cxrlib.data.imageio.check_min_side`)."""
    try:
        imageio.check_min_side(film.meta, imageio.min_film_side(), "")
    except imageio.ImageReadError as exc:
        return exc.reason
    return None


PREDICTED = "the predicted class"
DEFAULT_COLORMAP, DEFAULT_THRESHOLD = "inferno", 0.2
VIEWER_LOOK = ExplainConfig(alpha=0.5, colormap=DEFAULT_COLORMAP, threshold=DEFAULT_THRESHOLD)
"""How the app draws a heatmap unless told otherwise (Review's overlay)."""
DEFAULT_LAYER = "the method's default layer"


def explain_ui(layers: list[str], classes: list[str],
               methods: dict[str, tuple[str, tuple[str, ...]]]) -> ExplainConfig:
    """Widgets for a CAM explanation; returns an :class:`ExplainConfig`.

    ``methods`` (:func:`method_layers`): the layer box starts on each method's own default
    layer and marks the layers a method is not valid on.
    """
    c1, c2, c3 = st.columns(3)
    from_address("method", "ex_method", valid=cam_methods())  # a link keeps the method
    method = c1.selectbox("Method", cam_methods(), key="ex_method", persist_state="session",
                          format_func=method_label,  # starts on the one default, ExplainConfig's
                          index=cam_methods().index(ExplainConfig().method))
    to_address("method", method)
    own, valid = methods[method]
    needs = explain.CAM_METHODS[method].activations == explain.NON_NEGATIVE
    # Labels must not depend on the method: the browser keeps showing a chosen option's old
    # label when only the labels change, so the default layer is named in the help and caption.
    choice = c2.selectbox(
        "Layer", [DEFAULT_LAYER, *layers], key="ex_layer", persist_state="session",
        help=f"{method_label(method)} " + ("needs non-negative activations (after a ReLU): "
                                           f"valid on {len(valid)} of {len(layers)} layers"
                                           if needs else "takes signed activations")
             + f"; its default layer here is {own}.")
    if not explain.CAM_METHODS[method].uses_layer:
        c2.caption(f"{method_label(method)} explains the input itself: the layer is not used.")
    elif choice != DEFAULT_LAYER and choice not in valid:
        c2.caption(f":orange[{choice} has signed activations; {method_label(method)} assumes "
                   f"non-negative ones, so its map may be flat or mislead. Valid: {own}.]")
    layer = None if choice == DEFAULT_LAYER else choice
    # Options are plain strings: a None option serialises as "no selection", so after a rerun
    # the box would read "Choose an option" instead of the predicted class.
    choice = c3.selectbox("Explain class", [PREDICTED, *classes], key="ex_target",
                          persist_state="session")
    target = None if choice == PREDICTED else list(classes).index(choice)
    alpha = c1.slider("Heatmap opacity (alpha)", 0.0, 1.0, 0.5, 0.05, key="ex_alpha",
                      persist_state="session")
    cmaps = list(explain.COLORMAPS)
    cmap = c2.selectbox("Colormap", cmaps, index=cmaps.index(DEFAULT_COLORMAP), key="ex_cmap",
                        persist_state="session",
                        help="inferno and turbo are perceptually ordered; jet (published) is "
                             "kept for comparison.")
    threshold = c3.slider("Hide evidence below (share of the maximum)", 0.0, 0.9,
                          DEFAULT_THRESHOLD, 0.05, key="ex_threshold", persist_state="session",
                          help="Heatmap values below this are not drawn: the film shows through "
                               "unchanged instead of being tinted.")
    contour = c3.toggle("Contour lines instead of a filled map", False, key="ex_contour",
                        persist_state="session")
    return ExplainConfig(method=method, layer=layer, target=target, alpha=alpha, colormap=cmap,
                         contour=contour, threshold=threshold, smoothing=smoothing_ui(c1))


SMOOTHING_LABELS = {"none": "None", "tta": "Shifts and zooms (TTA, no flip)",
                    "eigen": "Eigen-smoothing", "tta+eigen": "Both"}
"""The Explain page's names of :data:`cxrlib.explain.SMOOTHINGS`."""


def smoothing_ui(container) -> str:
    """The smoothing control (:func:`cxrlib.explain.explain_smoothed`): a name of
    :data:`cxrlib.explain.SMOOTHINGS`."""
    return container.selectbox(
        "Smoothing", list(explain.SMOOTHINGS), format_func=SMOOTHING_LABELS.get, key="ex_smooth",
        persist_state="session",
        help="TTA: the map averaged over 5 shifted and 2 zoomed views of the film (never a "
             "flip), each warped back into the film's frame: about 7 times the work. "
             "Eigen-smoothing: the first principal component of the weighted activations "
             "instead of their sum (less noise, same place); not for occlusion, EigenCAM or "
             "fused LayerCAM, where only the TTA part applies.")
