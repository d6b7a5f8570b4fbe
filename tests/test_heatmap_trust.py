"""The heatmap-trust table: ROAD per method with patient-bootstrap CIs against a random map,
the default rule, the stored result and a single film's score."""
from __future__ import annotations

import numpy as np
import pytest

from test_explain import COLS, ROWS, S, region_model
from test_road import _planted_films


def test_bootstrap_interval_resamples_patients_not_films():
    from cxrlib.explain.trust import bootstrap_mean_ci

    assert bootstrap_mean_ci(np.full(10, 0.3), None) == pytest.approx([0.3, 0.3])
    values = np.repeat([0.0, 1.0], 20)  # two patients of 20 films each
    by_film = bootstrap_mean_ci(values, None, seed=1)
    by_patient = bootstrap_mean_ci(values, ["a"] * 20 + ["b"] * 20, seed=1)
    assert by_film[0] < 0.5 < by_film[1] and by_film[1] - by_film[0] < 0.4
    assert by_patient == pytest.approx([0.0, 1.0])  # two patients: a resample is 0, 1/2 or 1


def test_trust_table_ranks_methods_against_a_random_map_and_applies_the_default_rule(tmp_path):
    from cxrlib.explain.trust import (choose_default, heatmap_trust, load_trust, save_trust,
                                      standing)

    model = region_model(scale=2.0)
    x = _planted_films(6, seed=3)
    lungs = np.zeros((S, S), bool)
    lungs[ROWS[0]:ROWS[1], COLS[0]:COLS[1]] = True  # "lungs" = the region, so shares are known
    seen = []
    trust = heatmap_trust(model, x, ["gradcam", "occlusion"], groups=list("aabbcc"),
                          targets=0, lung_masks=[lungs] * 6, default="gradcam", n_boot=200,
                          road_options={"fractions": (0.1, 0.5, 0.9)}, randomisation_films=2,
                          timing_films=2, progress=lambda name, d, n: seen.append((name, d, n)))
    assert seen[0] == ("random map", 1, 3) and seen[-1][1:] == (3, 3)
    rows = trust["methods"]
    assert set(rows) == {"gradcam", "occlusion"} and trust["films"] == 6
    assert abs(trust["random_map_road"]) < 0.1
    for name, row in rows.items():
        low, high = row["road_combined_ci"]
        assert low <= row["road_combined"] <= high and row["beats_random"], name
        assert row["in_lung_share"] > 0.5 and row["ms_per_film"] > 0 and len(row["per_film"]) == 6
    assert rows["gradcam"]["cells_per_side"] == 16 and rows["occlusion"]["cells_per_side"] == 15
    assert rows["gradcam"]["default"] and not rows["occlusion"]["default"]
    assert trust["ranking"][0] in rows and standing(trust, trust["ranking"][1]) == (2, 2)
    assert standing(trust, "scorecam") is None and standing(None, "gradcam") is None
    fast = {**trust, "methods": {n: {**r, "ms_per_film": 1.0} for n, r in rows.items()}}
    assert choose_default(fast) == trust["ranking"][0]
    slow = {**trust, "methods": {n: {**r, "ms_per_film": 80.0} for n, r in rows.items()}}
    assert choose_default(slow) is None
    save_trust(tmp_path, trust)
    stored = load_trust(tmp_path)
    assert stored["ranking"] == trust["ranking"] and "per_film" not in stored["methods"]["gradcam"]
    (tmp_path / "heatmap_trust.json").write_text("[1, 2]")
    assert load_trust(tmp_path) is None and load_trust(tmp_path / "nowhere") is None


def test_score_film_gives_map_resolution_and_road():
    from cxrlib.explain.trust import score_film

    model = region_model(scale=2.0)
    x = _planted_films(1, seed=4)[0]
    scored = score_film(model, x, "gradcam", "masked_relu", 0, film_side=320,
                        road_options={"fractions": (0.1, 0.5)})
    assert scored["heatmap"].shape == (S, S) and not scored["flat"] and scored["target"] == 0
    assert scored["resolution"] == {"cells_per_side": 16, "input_px_per_cell": 2.0,
                                    "film_px_per_cell": 20.0}
    assert scored["road"]["combined"] > 0.2 and len(scored["road"]["morf"]) == 2
    flat = score_film(model, x, "gradcam", "masked_relu", 1)  # no evidence for class 1: flat
    assert flat["flat"] and flat["road"] is None


def test_methods_rank_by_road_with_a_zero_score_above_a_negative_and_none_last():
    """Bug: the ranking read ``road_combined or -inf``, so a score of exactly 0.0 ranked with the
    unmeasured methods, below a negative one."""
    from cxrlib.explain.trust import rank_methods

    rows = {"a": {"road_combined": -0.1}, "b": {"road_combined": None},
            "c": {"road_combined": 0.0}, "d": {"road_combined": 0.2}}
    assert rank_methods(rows) == ["d", "c", "a", "b"]
