"""Preprocessing services: cached live previews and the widgets returning a PreprocessConfig."""
from __future__ import annotations

from typing import Any

import streamlit as st

from cxrlib.core.config import LUNG_CROP_MARGIN, PreprocessConfig, RunConfig

from cxrlib import preprocessing as pre
from cxrlib.lungs.network import asset_digest

from .core import file_stamp
from .data import display_copy, film, sample_rows
from .lungs import predicted_lungs


@st.cache_data(max_entries=256, show_spinner=False)
def preview(stamp: str, cfg_key: str, _path: str, _cfg: PreprocessConfig) -> dict[str, Any]:
    """Preprocessing preview of a film at display size, with both histograms and the predicted
    lung mask in the preview's geometry (cut to the lung crop's box when the crop runs)."""
    before = display_copy(stamp, film(_path).pixels)
    seg = predicted_lungs(f"{stamp}:display", before)  # the display copy, not the full film
    after = pre.preprocess_preview(before, _cfg, segmentation=seg)
    lungs = pre.crop_to_box(seg.mask, pre.input_box(before, _cfg, seg))
    return {"before": before, "after": after, "lungs": lungs, "lungs_flagged": seg.flagged,
            "lungs_quality": seg.quality,
            "hist_before": pre.histogram(pre.to_grey(before)), "hist_after": pre.histogram(after)}


def preprocess_preview(path: str, cfg: PreprocessConfig) -> dict[str, Any]:
    """Cached :func:`preview` keyed on the file and the config hash."""
    return preview(file_stamp(path), cfg.hash(), path, cfg)


def preview_films(ds) -> dict[str, str]:
    """One random film per class (``rel_path -> label``), stable until reshuffled."""
    seed = st.session_state.get("pp_seed", 0)
    picks = {}
    for label in ds.classes():
        for row in sample_rows(ds, label, 1, seed).itertuples():
            picks[row.rel_path] = row.label
    return picks


def reshuffle_preview_films() -> None:
    """Button callback: draw other films for the preprocessing preview."""
    st.session_state["pp_seed"] = st.session_state.get("pp_seed", 0) + 1
    st.session_state.pop("pp_film", None)


def apply_preset(cfg: PreprocessConfig, key: str = "pp") -> None:
    """Button callback: set the preprocessing widgets to ``cfg``."""
    st.session_state[f"{key}_steps"] = list(cfg.steps)
    st.session_state[f"{key}_perc"] = float(cfg.wb_percentile)
    st.session_state[f"{key}_gamma"] = float(cfg.gamma)
    st.session_state[f"{key}_clip"] = float(cfg.clahe_clip_limit)
    st.session_state[f"{key}_tiles"] = int(cfg.clahe_tile_grid)
    st.session_state[f"{key}_margin"] = float(cfg.lung_crop_margin)
    st.session_state[f"{key}_size"] = int(cfg.size)


def describe_preprocess(cfg: PreprocessConfig) -> str:
    """Short text of a preprocessing config, e.g. ``white balance 0.05 % → CLAHE 2 / 8×8``."""
    parts = {"white_balance": f"white balance {cfg.wb_percentile:g} %",
             "clahe": f"CLAHE {cfg.clahe_clip_limit:g} / "
                      f"{cfg.clahe_tile_grid}×{cfg.clahe_tile_grid}",
             "gamma": f"gamma {cfg.gamma:g}",
             "lung_crop": f"lung crop + {cfg.lung_crop_margin:.0%}"}
    steps = [parts[s] for s in cfg.steps] or ["grey only"]
    return " → ".join(steps) + f" → {cfg.size} px"


STEP_NAMES = {"white_balance": "White balance", "clahe": "CLAHE (local contrast)",
              "gamma": "Gamma", "lung_crop": "Lung crop"}
"""The names people read for the preprocessing steps' codes."""


def _needs(step: str, order) -> str:
    return "" if step in order else f" Greyed: add {STEP_NAMES[step]} to the steps above to use it."


def preprocess_ui(initial: PreprocessConfig, *, key: str = "pp") -> PreprocessConfig | None:
    """Sliders for every preprocessing setting; ``None`` (with an error shown) when invalid."""
    order = st.multiselect(
        "Steps, in the order they run", list(STEP_NAMES), format_func=STEP_NAMES.get,
        default=list(initial.steps), key=f"{key}_steps", persist_state="session",
        help="White balance runs per colour channel and therefore always first; the lung crop "
             "(the box of both lungs from the learned segmenter, plus a margin) always last, "
             "just before the resize.")
    off = [STEP_NAMES[s] for s in STEP_NAMES if s not in order]
    if off:  # a greyed slider says why
        st.caption(f"Greyed sliders belong to steps not chosen above ({', '.join(off)}): add "
                   "the step to the list to set them.")
    c1, c2 = st.columns(2)
    perc = c1.slider("White-balance percentile", 0.0, 5.0, float(initial.wb_percentile), 0.05,
                     key=f"{key}_perc", persist_state="session",
                     disabled="white_balance" not in order,
                     help="Channel values at perc % and 100 - perc % map to 0 and 255 "
                          "(published 0.05)." + _needs("white_balance", order))
    gamma = c2.slider("Gamma", 0.2, 3.0, float(initial.gamma), 0.05, key=f"{key}_gamma",
                      persist_state="session", disabled="gamma" not in order,
                      help="out = 255 (in/255)^gamma; 1 is no change." + _needs("gamma", order))
    clip = c1.slider("CLAHE clip limit", 0.5, 10.0, float(initial.clahe_clip_limit), 0.5,
                     key=f"{key}_clip", persist_state="session",
                     help="Published 2.0." + _needs("clahe", order),
                     disabled="clahe" not in order)
    tiles = c2.slider("CLAHE tile grid (tiles per side)", 1, 32, int(initial.clahe_tile_grid),
                      key=f"{key}_tiles", persist_state="session",
                      help="Published 8 (8×8)." + _needs("clahe", order),
                      disabled="clahe" not in order)
    margin = _margin_slider(c1, initial, key, disabled="lung_crop" not in order)
    size = st.select_slider("Model input size (px)", [96, 128, 160, 192, 224, 256, 299],
                            value=initial.size, key=f"{key}_size", persist_state="session")
    steps = tuple(sorted(order, key=lambda s: s != "white_balance"))  # stable: WB first
    try:
        return PreprocessConfig(steps=steps, wb_percentile=perc, clahe_clip_limit=clip,
                                clahe_tile_grid=tiles, gamma=gamma, lung_crop_margin=margin,
                                lung_model=asset_digest(), size=size)
    except ValueError as exc:
        st.error(f"These settings are not valid: {exc}")
        return None


def _margin_slider(where, initial: PreprocessConfig, key: str, *, disabled: bool) -> float:
    return where.slider("Lung-crop margin (share of the lungs' box, each side)", 0.0, 0.3,
                        float(initial.lung_crop_margin), 0.01, key=f"{key}_margin",
                        persist_state="session", disabled=disabled,
                        help=f"Default {LUNG_CROP_MARGIN:g}: the smallest margin at which every "
                             "validation film of the segmenter kept at least 99.9 % of its "
                             "human-annotated lung.")


def lung_crop_ui(cfg: RunConfig, *, key: str = "tr") -> RunConfig | None:
    """A lung-crop toggle and margin over a run's preprocessing (the Training page's view of
    the step); ``None`` (with an error shown) when invalid."""
    pre_cfg = cfg.preprocess
    # Keyed on the preprocessing it starts from: new settings from the Preprocessing page
    # start these widgets afresh from them.
    k = f"{key}_{pre_cfg.hash()}"
    left, right = st.columns(2)
    on = left.toggle("Crop to the lungs before the resize", "lung_crop" in pre_cfg.steps,
                     key=f"{k}_crop", persist_state="session",
                     help="The box of both lungs (learned segmenter) plus a margin: borders, "
                          "shoulders and most markers leave the model's input. Cropping alone "
                          "does not remove source bias (Teixeira et al. 2021): audit the run.")
    margin = _margin_slider(right, pre_cfg, k, disabled=not on)
    steps = tuple(s for s in pre_cfg.steps if s != "lung_crop") + (("lung_crop",) if on else ())
    try:
        return cfg.replace(preprocess=pre_cfg.replace(steps=steps, lung_crop_margin=margin,
                                                      lung_model=asset_digest()))
    except ValueError as exc:
        st.error(f"These settings are not valid: {exc}")
        return None
