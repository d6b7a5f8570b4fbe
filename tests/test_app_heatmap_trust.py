"""Heatmap trust in the app: the Explain page's resolution, standing and on-demand ROAD score;
the Audit page's heatmap-trust table."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from app_fixtures import app, app_workspace, metric, texts, trained_run  # noqa: F401

from cxrlib import preprocessing as preprocess

EXPLAIN, AUDIT = "views/explain.py", "views/audit.py"


@pytest.fixture
def no_stored_trust(trained_run):
    """The shared tiny run without a stored trust result, before and after the test."""
    from cxrlib.explain.trust import TRUST_FILE

    path = trained_run.folder / TRUST_FILE
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)


def test_explain_shows_resolution_and_scores_the_film_on_demand(app, trained_run, no_stored_trust):
    from cxrlib.core.config import ExplainConfig
    from cxrlib.explain import get_cam, road_score

    at = app(EXPLAIN)
    model = trained_run.load_model()
    cam = get_cam(ExplainConfig().method, model)  # the method the page starts on
    cells = int(model.get_layer(cam.layer).output.shape[1]) if cam.layer in [
        layer.name for layer in model.layers] else cam.cells_per_side
    captions = texts(at.caption)
    assert f"Map resolution: {cells}×{cells} cells · {96 / cells:g} px of the model input, " \
           f"{96 / cells:g} px of the film per cell" in captions
    assert any(c.startswith("No heatmap-trust measurement of this run yet") for c in captions)
    assert not [m for m in at.metric if m.label.startswith("ROAD")]  # nothing until asked
    at.toggle(key="ex_road").set_value(True).run()
    film_name = at.selectbox(key="ex_film_Test").value
    path = trained_run.predictions().set_index("rel_path").loc[film_name, "path"]
    x = preprocess.to_model_input(preprocess.preprocess_film(
        cv2.imread(path, cv2.IMREAD_GRAYSCALE), trained_run.config.preprocess)[None])
    heat, _ = cam(x)
    assert metric(at, "ROAD (LeRF − MoRF)") == f"{road_score(model, x, heat[0]):+.3f}"


def test_explain_names_the_methods_standing_from_a_stored_result(app, trained_run, no_stored_trust):
    from cxrlib.explain.trust import save_trust

    rows = {name: {"layer": "x", "road_combined": score, "road_combined_ci": [score - 0.05, score + 0.05],
                   "beats_random": score > 0.06, "ms_per_film": 5.0, "cells_per_side": 6}
            for name, score in (("eigencam", 0.3), ("gradcam", 0.2), ("layercam", 0.01))}
    save_trust(trained_run.folder, {"methods": rows, "ranking": list(rows), "films": 40,
                                    "random_map_road": 0.0, "random_map_road_ci": [-0.01, 0.01]})
    at = app(EXPLAIN, ex_method="gradcam")
    assert any(c.startswith("Grad-CAM ranks 2 of 3 on this run by ROAD (+0.200, 95 % CI +0.150 to "
                            "+0.250; a random map +0.000; 40 test films)") for c in texts(at.caption))
    at.selectbox(key="ex_method").set_value("layercam").run()
    assert any("ranks 3 of 3" in c and "not better than a random map" in c for c in texts(at.caption))
    # A slow method measured on fewer validation films says so, against its own random map.
    rows["layercam"].update(films=12, random_map_road=0.02)
    save_trust(trained_run.folder, {"methods": rows, "ranking": list(rows), "films": 40, "split": "val",
                                    "random_map_road": 0.0, "random_map_road_ci": [-0.01, 0.01]})
    at = app(EXPLAIN, ex_method="layercam")
    assert any("ranks 3 of 3" in c and "a random map +0.020; 12 validation films" in c
               for c in texts(at.caption)), texts(at.caption)
    # A method whose map barely changes when the head is re-initialised fails the sanity check
    # (Adebayo et al. 2018), whatever its ROAD: the standing says so.
    rows["gradcam"].update(randomisation_rank_corr=0.93)
    rows["eigencam"].update(randomisation_rank_corr=0.2)
    save_trust(trained_run.folder, {"methods": rows, "ranking": list(rows), "films": 40, "split": "val",
                                    "random_map_road": 0.0, "random_map_road_ci": [-0.01, 0.01]})
    at = app(EXPLAIN, ex_method="gradcam")
    assert any("ranks 2 of 3" in c and "barely changes when the model's head is re-initialised "
               "(rank correlation 0.93)" in c for c in texts(at.caption)), texts(at.caption)
    at.selectbox(key="ex_method").set_value("eigencam").run()
    assert any("ranks 1 of 3" in c and "re-initialised" not in c for c in texts(at.caption))
    # A method the stored result did not measure is named as such, not "no measurement yet".
    at.selectbox(key="ex_method").set_value("hirescam").run()
    captions = texts(at.caption)
    assert not any(c.startswith("No heatmap-trust measurement") for c in captions), captions
    assert any(c.startswith("HiResCAM was not among the 3 methods measured on this run")
               for c in captions), captions


def test_audit_measures_heatmap_trust_on_click_and_stores_it(app, trained_run, no_stored_trust,
                                                             monkeypatch):
    import functools

    from app_services import heatmap_trust

    # Two methods keep the test short; the table takes whatever the library measured.
    monkeypatch.setattr(heatmap_trust, "run_heatmap_trust", functools.partial(
        heatmap_trust.run_heatmap_trust, methods=("gradcam", "eigencam")))
    at = app(AUDIT)
    button = [b for b in at.button if b.label == "Run the audit"]
    if button:
        button[0].click().run(timeout=300)  # (the audit report is shared with test_app_audit)
    measure = [b for b in at.button if b.label == "Measure every heatmap method (ROAD)"]
    assert measure and not no_stored_trust.exists()
    measure[0].click().run(timeout=300)
    assert not at.exception and no_stored_trust.exists()
    table = at.dataframe[-1].value
    assert sorted(table["method"]) == ["EigenCAM", "Grad-CAM"] and table["rank"].tolist() == [1, 2]
    assert table["ROAD (LeRF − MoRF)"].is_monotonic_decreasing
    assert any(c.startswith("ROAD (Rong et al. 2022) on ") for c in texts(at.caption))
    # The ranking feeds the rule that picks the default method: validation films, never test ones.
    from cxrlib.explain.trust import load_trust

    split = trained_run.split_table()
    val = split.loc[split["split"] == "val", "rel_path"]
    stored = load_trust(trained_run.folder)
    assert stored["split"] == "val" and stored["films"] == min(len(val), 200)
    assert any(f"{stored['films']} validation films" in c for c in texts(at.caption))
    again = app(AUDIT)  # another session: the stored table, no measuring button
    assert not [b for b in again.button if b.label.startswith("Measure every")]


def test_trust_films_are_the_runs_validation_films_unless_test_is_asked(trained_run):
    """The heatmap-trust ranking picks the default method, so it reads the validation split."""
    from cxrlib.audit.heatmap_trust import trust_films
    from cxrlib.data.datasets import scan_dataset

    ds = scan_dataset(trained_run.config.data.root).for_task(trained_run.config.data.task)
    split = trained_run.split_table()
    names = {s: set(split.loc[split["split"] == s, "rel_path"].astype(str)) for s in ("val", "test")}
    x, groups, rel_paths, masks = trust_films(trained_run, ds, 4, seed=1)
    assert len(x) == len(groups) == len(masks) == 4 and set(rel_paths) <= names["val"]
    _, _, test_paths, _ = trust_films(trained_run, ds, 4, seed=1, split="test")
    assert set(test_paths) <= names["test"] and not set(test_paths) & names["val"]
