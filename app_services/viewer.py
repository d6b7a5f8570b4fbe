"""The film viewer of Explain and Review (issue 26): the film at its native resolution with
window / level, heatmap panels that zoom and pan together (one per compared CAM method, each
with its in-lung share), previous / next film, the model's scores with their caveat, and the
overlay download with its legend strip and PNG text."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import streamlit as st

from cxrlib import explain
from cxrlib.viz import viewer as vw

from .bytecache import byte_cached
from .explaining import SMOOTHING_LABELS, cam_layers, explanation, method_label, overlay_of
from .lungs import explanation_lungs, with_outline

_HERE = Path(__file__).parent
_VIEWER = st.components.v2.component(
    "cxr_film_viewer", js=(_HERE / "film_viewer.js").read_text(encoding="utf-8"),
    css=(_HERE / "film_viewer.css").read_text(encoding="utf-8"),
    isolate_styles=False)  # in the page's DOM, so the page's image and mutation watchers see it

MAX_COMPARED = 4
SCORE_CAVEAT = ("The model's scores (softmax outputs), not calibrated probabilities: a score of "
                "0.99 is not a 99 % chance of being right (see the reliability diagram on "
                "Evaluation).")


def _apply_preset(key: str) -> None:
    centre, width = vw.WINDOW_PRESETS[st.session_state[f"{key}_preset"]]
    st.session_state[f"{key}_centre"], st.session_state[f"{key}_width"] = centre, width


def window_ui(key: str = "wl") -> tuple[float, float, bool]:
    """Window / level controls (preset, level, width, invert): ``(centre, width, invert)``."""
    c1, c2, c3, c4 = st.columns([2, 3, 3, 1], vertical_alignment="bottom")
    c1.selectbox("Window preset", list(vw.WINDOW_PRESETS), key=f"{key}_preset",
                 on_change=_apply_preset, args=(key,), persist_state="session",
                 help="On the film's 8-bit grey levels (display settings, not Hounsfield units).")
    centre = c2.slider("Level (window centre)", 0.0, 255.0, 127.5, 0.5, key=f"{key}_centre",
                        persist_state="session")
    width = c3.slider("Window width", 1.0, 512.0, 256.0, 1.0, key=f"{key}_width",
                       persist_state="session")
    invert = c4.toggle("Invert", key=f"{key}_invert", persist_state="session")
    return centre, width, invert


@byte_cached(0.15)  # the films' lossless PNGs, as sent to the viewer
def _source(film_key: str, centre: float, width: float, invert: bool, outline: str,
            _pixels, _mask) -> str:
    shown = vw.window_level(_pixels, centre, width, invert)
    return vw.film_source(shown if _mask is None else with_outline(shown, _mask))


def film_viewer(pixels, film_key: str, panels: list[dict], cfg, window: tuple, *, key: str,
                height: int | None = None, outline=None, outline_key: str = "") -> None:
    """The film (windowed) and its heatmap panels, zooming and panning together: mouse wheel
    or + / - to zoom, drag or arrows to pan, double click or 0 to reset; the zoom survives a
    change of settings. ``outline``: a lung mask drawn on the film (``outline_key`` names it
    for the cache). ``height``: the panels' height in pixels (default: about square)."""
    source = _source(film_key, *window, outline_key if outline is not None else "", pixels,
                     outline)
    if height is None:  # panels share the page's width: keep each about square
        h, w = pixels.shape[:2]
        height = int(min(680, max(300, 1150 / max(1, len(panels)) * h / w + 30)))
    # The browser learns only that the film changed, never its key: a key names the film's path,
    # and a path names its class (a blinded review's answer).
    revision = hashlib.sha256(film_key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    data = vw.viewer_data(pixels, panels, colormap=cfg.colormap, alpha=cfg.alpha,
                          threshold=cfg.threshold, contour=cfg.contour, height=height,
                          revision=revision, source=source)
    _VIEWER(data={**data, "key": key}, key=key, height="content")


def layer_name(run, layer: str) -> str:
    """A layer as people read it (``the last block (out_relu)``)."""
    return explain.layer_label(layer, cam_layers(run)[0])


def look(cfg, res, run) -> str:
    """``Grad-CAM++ on the last block (out_relu)``: the method and layer explained, and the
    smoothing applied (saying so when eigen-smoothing does not apply to the method)."""
    text = f"{method_label(cfg.method)} on {layer_name(run, res['layer'])}"
    applied = res["smoothing"]
    if applied != "none":
        text += f" · smoothing: {SMOOTHING_LABELS[applied].lower()}"
    if applied != cfg.smoothing:
        text += f" · eigen-smoothing does not apply to {method_label(cfg.method)}"
    return text


def compared_panels(run, pixels, film_key: str, cfg, methods: list[str], *, ds=None,
                    rel_path: str | None = None) -> list[dict]:
    """One panel per method (at its default layer), titled with its in-lung share."""
    panels = []
    for method in methods[:MAX_COMPARED]:
        one = cfg.replace(method=method, layer=None)
        res = explanation(run, pixels, film_key, one)
        lung = explanation_lungs(run, pixels, film_key, res, ds=ds, rel_path=rel_path)
        share = "flat map" if res["flat"] else (
            "—" if lung["share"] is None else f"{lung['share']:.0%} in the lungs")
        panels.append({"title": f"{method_label(method)}<br>{share}",
                       "heatmap": None if res["flat"] else res["heatmap"], "box": res["box"]})
    return panels


def explain_panels(run, pixels, film_key: str, cfg, res, lung, compared: list[str], *, ds=None,
                   rel_path: str | None = None) -> list[dict]:
    """The Explain viewer's panels: the original, then the chosen method's heatmap with its
    in-lung share, or one panel per compared method (two or more chosen)."""
    if len(compared) >= 2:
        return [{"title": "Original"}, *compared_panels(run, pixels, film_key, cfg, compared,
                                                        ds=ds, rel_path=rel_path)]
    share = "—" if lung["share"] is None else f"{lung['share']:.0%} in the lungs"
    return [{"title": "Original"},
            {"title": f"{look(cfg, res, run)}<br>{share}",
             "heatmap": None if res["flat"] else res["heatmap"], "box": res["box"]}]


def methods_ui(cfg, key: str = "ex_compare") -> list[str]:
    """Methods to compare side by side on the same film (none: the one method above)."""
    from .explaining import cam_methods  # noqa: PLC0415

    return st.multiselect(f"Compare methods (2-{MAX_COMPARED}, side by side, synchronised)",
                          cam_methods(), key=key, max_selections=MAX_COMPARED,
                          persist_state="session", format_func=method_label,
                          help="The same film under each method at its default layer, each "
                               "with the share of its heatmap inside the lungs.")


def _step(options: list, key: str, by: int) -> None:
    current = st.session_state.get(key)
    i = options.index(current) if current in options else 0
    st.session_state[key] = options[(i + by) % len(options)]


def film_nav(options: list, key: str, *, on_move=None) -> None:
    """Previous / next film buttons (keyboard: J and K) moving the picker ``key``."""
    c1, c2, c3 = st.columns([1, 1, 4], vertical_alignment="center")
    for col, label, by, shortcut, icon in ((c1, "Previous film", -1, "J", ":material/skip_previous:"),
                                           (c2, "Next film", 1, "K", ":material/skip_next:")):
        col.button(label, key=f"{key}_{'previous' if by < 0 else 'following'}", icon=icon,
                   on_click=_move, args=(options, key, by, on_move), shortcut=shortcut,
                   help=f"Keyboard: {shortcut}")
    c3.caption(f"Film {options.index(st.session_state[key]) + 1 if st.session_state.get(key) in options else '?'}"
               f" of {len(options)}")


def _move(options, key, by, on_move) -> None:
    _step(options, key, by)
    if on_move is not None:
        on_move()


def scores(run, probs) -> None:
    """The model's score of every class, with the calibration caveat."""
    cols = st.columns(len(run.classes))
    for col, cls, p in zip(cols, run.classes, probs):
        col.metric(f"Model score · {cls}", f"{p:.3f}", help=SCORE_CAVEAT)
    st.caption(SCORE_CAVEAT)


def overlay_download(run, name: str, cfg, res: dict[str, Any], predicted: str, score: float) -> None:
    """The overlay as a PNG with a legend strip (method, layer, class, score, run, research use
    only) and the same in its PNG text, drawn and encoded when the button is clicked (a
    native-size PNG on every rerun was most of an Explain rerun's time on a large film, and each
    session kept its copy in memory)."""
    what = look(cfg, res, run)
    target = predicted if cfg.target is None else run.classes[cfg.target]
    meta = {"Title": f"CAM overlay of {name}", "Method": what, "Class": target,
            "Model score": f"{score:.3f} (uncalibrated)", "Run": run.id,
            "Threshold": f"{cfg.threshold:g}", "Colormap": cfg.colormap,
            "Disclaimer": explain.RESEARCH_ONLY}
    lines = [f"{what} | class {target} | model score {score:.3f} (uncalibrated)",
             f"run {run.id[:8]} | {name}", explain.RESEARCH_ONLY]

    def png() -> bytes:
        image = explain.legend_strip(overlay_of(cfg, res), lines, cfg.colormap,
                                     cfg.threshold)
        return explain.to_png(image, text=meta)

    st.download_button("Download the overlay (PNG)", png,
                       file_name=f"{name.rsplit('/', 1)[-1].rsplit('.', 1)[0]}-{cfg.method}.png",
                       mime="image/png", icon=":material/download:")
