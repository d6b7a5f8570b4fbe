"""Heatmap trust in the app: how fine a map is, a film's ROAD score on demand, the method's standing
on the run, and the audit's trust table (:mod:`cxrlib.explain.trust`, :mod:`cxrlib.audit.heatmap_trust`).

The standing comes from the run folder's stored result (``heatmap_trust.json``, written by the
Audit page's trust table or by ``bench/heatmaps.py``); nothing is measured until asked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from cxrlib import explain
from cxrlib.audit.heatmap_trust import run_heatmap_trust
from cxrlib.core.config import ExplainConfig
from cxrlib.explain import trust as trust_lib
from cxrlib.explain.faithfulness import RANDOMISATION_THRESHOLD
from cxrlib.explain.road import road_curves

from .explaining import _cam, _model_input, method_layers
from .runs import get_run, model, run_stamp


def _trust_stamp(run) -> str:
    path = Path(run.folder) / trust_lib.TRUST_FILE
    return str(path.stat().st_mtime_ns) if path.exists() else "none"


@st.cache_data(max_entries=16, show_spinner=False)
def _stored(run_id: str, trust_stamp: str) -> dict[str, Any] | None:
    run = get_run(run_id)
    return None if run is None else trust_lib.load_trust(run.folder)


def stored_trust(run) -> dict[str, Any] | None:
    """The run's stored heatmap-trust result, or None when it was never measured."""
    return _stored(run.id, _trust_stamp(run))


def method_standing(run, method: str) -> str | None:
    """"Grad-CAM ranks 2 of 12 on this run ..." from the stored result; None when the run has none."""
    trust = stored_trust(run)
    found = trust_lib.standing(trust, method)
    if found is None:
        if not trust:
            return None
        return (f"{explain.method_label(method)} was not among the {len(trust.get('ranking', []))} "
                "methods measured on this run (Audit page → Heatmap trust measures them again).")
    k, n = found
    row = trust["methods"][method]
    low, high = row["road_combined_ci"]
    text = (f"{explain.method_label(method)} ranks {k} of {n} on this run by ROAD "
            f"({row['road_combined']:+.3f}, 95 % CI {_num(low)} to {_num(high)}; a random map "
            f"{_num(row.get('random_map_road', trust['random_map_road']))}; "
            f"{row.get('films', trust['films'])} {films_of(trust)})")  # slow methods: fewer films
    if not row.get("beats_random"):
        text += ": :orange[not better than a random map on this run]"
    corr = row.get("randomisation_rank_corr")
    if corr is not None and corr >= RANDOMISATION_THRESHOLD:
        text += (": :orange[its map barely changes when the model's head is re-initialised (rank "
                 f"correlation {corr:.2f}), so it may not show what the model learned]")
    return text


def films_of(trust: dict[str, Any]) -> str:
    """Which films a stored result measured: "validation films" (the default since the rule
    that picks the default method must not read the test split), or "test films" (older ones)."""
    return "validation films" if trust.get("split") == "val" else "test films"


def _num(value) -> str:
    return "—" if value is None else f"{value:+.3f}"


def map_resolution(run, method: str, layer: str | None, film_side: int | None) -> dict[str, Any]:
    """The map's effective resolution (:meth:`cxrlib.explain.base.CAM.resolution`)."""
    default, _ = method_layers(run)[method]
    return _cam(run_stamp(run), run.id, method, layer or default).resolution(film_side)


def resolution_text(res: dict[str, Any]) -> str:
    """``7×7 cells · 32 px of the model input, 457 px of the film per cell``."""
    cells = res.get("cells_per_side")
    if not cells:
        return "resolution unknown"
    text = f"{cells}×{cells} cells · {res['input_px_per_cell']:g} px of the model input"
    if res.get("film_px_per_cell"):
        text += f", {res['film_px_per_cell']:g} px of the film"
    return text + " per cell"


@st.cache_data(max_entries=64, show_spinner="Scoring this map with ROAD (18 imputed films)…")
def _film_road(stamp: str, film_key: str, method: str, layer: str, target: int | None,
               smoothing: str, _run, _pixels, _heat) -> dict[str, Any]:
    cfg = _run.config.preprocess
    x = _model_input(film_key, cfg.hash(), _pixels, cfg)
    return road_curves(model(_run), x, _heat[None], target).to_dict(0)


def film_road(run, pixels, film_key: str, cfg: ExplainConfig, res: dict[str, Any]) -> dict[str, Any]:
    """ROAD curves and combined score of the shown heatmap (:func:`cxrlib.explain.road.road_curves`),
    cached per film and settings. ``res`` is :func:`app_services.explanation`'s result."""
    return _film_road(run_stamp(run), film_key, cfg.method, res["layer"], cfg.target,
                      res["smoothing"], run, pixels, res["heatmap"])


def heatmap_trust_panel(container, run, pixels, film_key: str, cfg: ExplainConfig,
                        res: dict[str, Any]) -> None:
    """Next to the overlay: the map's resolution, the method's standing on the run, and the
    film's ROAD score on demand."""
    side = max(pixels.shape[:2])
    container.caption("Map resolution: " + resolution_text(
        map_resolution(run, cfg.method, cfg.layer, side)))
    container.caption(method_standing(run, cfg.method) or
                      "No heatmap-trust measurement of this run yet (Audit page → Heatmap trust).")
    if res["flat"]:
        return
    if container.toggle("ROAD score of this film (a few seconds)", key="ex_road",
                        persist_state="session",
                        help="Removes the map's most / least relevant 10-90 % of pixels, fills them "
                             "from their neighbours (ROAD's noisy linear imputation) and follows "
                             "the class probability. Combined = mean(LeRF - MoRF): above 0, the map "
                             "orders pixels by what the model uses; a random map scores about 0."):
        road = film_road(run, pixels, film_key, cfg, res)
        container.metric("ROAD (LeRF − MoRF)", f"{road['combined']:+.3f}",
                         help=f"Mean class probability with the least relevant pixels removed "
                              f"{road['lerf_mean']:.3f}, with the most relevant removed "
                              f"{road['morf_mean']:.3f} (unchanged film {road['original']:.3f}).")


def compare_scores(run, pixels, film_key: str, methods: list[str], target: int | None = None):
    """Per method (at its default layer): :func:`cxrlib.explain.trust.score_film` of the film,
    for a side-by-side view. Not cached: the caller caches what it shows."""
    cfg = run.config.preprocess
    x = _model_input(film_key, cfg.hash(), pixels, cfg)
    side = max(pixels.shape[:2])
    return {m: trust_lib.score_film(model(run), x, m, None, target, film_side=side) for m in methods}


def trust_table(trust: dict[str, Any]) -> pd.DataFrame:
    """The stored result as a table, best ROAD first."""
    rows = []
    for k, (name, r) in enumerate(trust["methods"].items(), start=1):
        low, high = r["road_combined_ci"]
        rows.append({"rank": k, "method": explain.method_label(name), "layer": r["layer"],
                     "ROAD (LeRF − MoRF)": r["road_combined"],
                     "95 % CI": f"{_num(low)} to {_num(high)}",
                     "beats a random map": bool(r.get("beats_random")), "films": r.get("films"),
                     "ms per film": r["ms_per_film"], "cells per side": r["cells_per_side"],
                     "randomisation rank corr.": r["randomisation_rank_corr"],
                     "CAM in lungs": r["in_lung_share"], "default": bool(r.get("default"))})
    return pd.DataFrame(rows)


def heatmap_trust_section(run, ds, max_films: int | None) -> None:
    """The Audit page's "heatmap trust" table: the stored result, or a button that measures
    every method on the validation films with a live progress box (as the audit itself runs)."""
    trust = stored_trust(run)
    if trust is None or st.button("Measure again", key="au_trust_again", icon=":material/refresh:"):
        if trust is None and not st.button("Measure every heatmap method (ROAD)", key="au_trust",
                                           icon=":material/rule:"):
            st.info("ROAD scores every CAM method on the run's validation films: about 2 s per film and "
                    "method on a CPU, more for Score-CAM, Ablation-CAM and occlusion.")
            return
        with st.status("Measuring the heatmap methods…", expanded=True) as box:
            bar = st.progress(0.0, text="starting")

            def progress(step: str, done: int, total: int) -> None:
                bar.progress(min(done / total, 1.0) if total else 0.0, text=f"{step}: {done}/{total}")

            trust = run_heatmap_trust(run, ds, films=max_films, progress=progress)
            box.update(label="Heatmap trust measured", state="complete", expanded=False)
        _stored.clear()
    st.dataframe(trust_table(trust), hide_index=True)
    rule = trust.get("default_rule")
    st.caption(f"ROAD (Rong et al. 2022) on {trust['films']} {films_of(trust)}, patient-bootstrap 95 % CIs; "
               f"a random map scores {_num(trust['random_map_road'])}. Best method under 50 ms a "
               f"film that beats it: {explain.method_label(rule) if rule else 'none'}.")
    weak = [explain.method_label(n) for n, r in trust["methods"].items() if not r.get("beats_random")]
    if weak:
        st.warning("Not better than a random map on this run: " + ", ".join(weak) + ".")
