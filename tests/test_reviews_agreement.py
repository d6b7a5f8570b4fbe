"""Agreement statistics against hand computations and published values; the review queue's order."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from cxrlib.evaluation import resample_weights
from cxrlib.reviews import (cohen_kappa, fleiss_kappa, kappa_tables, model_agreement,
                            off_target_share, review_progress, review_queue, wilson_interval)


def reviews_frame(rows: list[dict]) -> pd.DataFrame:
    """A reviews table as the store returns it, from (reviewer, rel_path, answers...) dicts."""
    base = dict(run_id="run1", film_digest=None, label="COVID-19", prediction="COVID-19",
                agrees_with_label=True, agrees_with_prediction=True,
                heatmap_location="lung_findings", confidence=3, comment="", created="")
    frame = pd.DataFrame([{**base, **r} for r in rows])
    frame["review_id"] = [f"id{i}" for i in range(len(frame))]
    return frame


def test_cohen_kappa_matches_a_hand_computed_table():
    # 50 films: both yes 20, A yes / B no 5, A no / B yes 10, both no 15.
    # p_o = 35/50 = 0.7; A says yes 25/50, B 30/50: p_e = 0.5·0.6 + 0.5·0.4 = 0.5;
    # kappa = (0.7 − 0.5) / (1 − 0.5) = 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-12)
    rng = np.random.default_rng(3)  # and scikit-learn's independent implementation, 4 categories
    x, y = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    y[:120] = x[:120]
    assert cohen_kappa(x, y) == pytest.approx(cohen_kappa_score(x, y), abs=1e-12)
    assert np.isnan(cohen_kappa(["yes"] * 5, ["yes"] * 5))  # one category only: undefined


def test_fleiss_kappa_matches_the_published_example_and_a_hand_computation():
    # Fleiss' kappa article's worked example (10 subjects, 14 raters, 5 categories): 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=5e-6)
    # Unequal raters by hand: films rated (Y,Y), (Y,N,N), (N,N).
    # P_i = 1, (0 + 2 + 0)/(3·2) = 1/3, 1: P̄ = 7/9; p_Y = 3/7, p_N = 4/7: P_e = 25/49
    # kappa = (7/9 − 25/49) / (24/49) = 118/216
    assert fleiss_kappa([[2, 0], [1, 2], [0, 2]]) == pytest.approx(118 / 216, abs=1e-12)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 0], [2, 0]])  # a film with one rating


def _two_reviewers():
    a = [True] * 25 + [False] * 25
    b = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    rows = [{"reviewer": who, "rel_path": f"f{i}", "agrees_with_label": v}
            for who, answers in (("A", a), ("B", b)) for i, v in enumerate(answers)]
    return reviews_frame(rows), a, b


def test_kappa_tables_for_two_reviewers_and_their_bootstrap_interval():
    frame, a, b = _two_reviewers()
    tables = kappa_tables(frame, n_boot=300, seed=5)
    row = tables["overall"].set_index("question").loc["agrees_with_label"]
    assert row["method"] == "Cohen" and row["films"] == 50 and row["reviewers"] == 2
    assert row["kappa"] == pytest.approx(0.4) and row["observed_agreement"] == pytest.approx(0.7)
    pair = tables["pairwise"].set_index("question").loc["agrees_with_label"]
    assert (pair["reviewer_a"], pair["reviewer_b"], pair["kappa"]) == ("A", "B", pytest.approx(0.4))
    # the CI, recomputed directly: the same film draws (films in rel_path order), each
    # resample's kappa from scikit-learn
    order = sorted(range(50), key=lambda i: f"f{i}")
    a, b = np.asarray(a)[order], np.asarray(b)[order]
    weights = resample_weights(50, None, n_boot=300, rng=np.random.default_rng(5))
    kappas = [cohen_kappa_score(np.repeat(a, w), np.repeat(b, w)) for w in weights]
    assert row["low"] == pytest.approx(np.quantile(kappas, 0.025), abs=1e-12)
    assert row["high"] == pytest.approx(np.quantile(kappas, 0.975), abs=1e-12)
    # every film got the same "agree with the prediction" answer: kappa undefined, no crash
    assert pd.isna(tables["overall"].set_index("question").loc["agrees_with_prediction", "kappa"])


def test_three_reviewers_give_fleiss_on_films_two_or_more_reviewed():
    rows = [("A", "f1", "markers"), ("B", "f1", "markers"), ("C", "f1", "outside_body"),
            ("A", "f2", "lung_findings"), ("B", "f2", "lung_findings"),
            ("A", "f3", "markers"), ("C", "f3", "lung_findings"),
            ("B", "f4", "markers"),  # one review only: not in the statistic
            ("A", "f5", "outside_body"), ("B", "f5", "outside_body"), ("C", "f5", "outside_body")]
    frame = reviews_frame([{"reviewer": r, "rel_path": f, "heatmap_location": loc}
                           for r, f, loc in rows])
    # counts per film over (lung_findings, lungs_elsewhere, markers, outside_body)
    counts = [[0, 0, 2, 1], [2, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 3]]
    row = kappa_tables(frame, n_boot=50)["overall"].set_index("question").loc["heatmap_location"]
    assert row["method"] == "Fleiss" and row["films"] == 4 and row["reviewers"] == 3
    assert row["kappa"] == pytest.approx(fleiss_kappa(counts), abs=1e-12)
    assert row["low"] <= row["kappa"] <= row["high"]


def test_a_later_review_replaces_the_reviewers_earlier_one_in_the_statistics():
    frame, _, _ = _two_reviewers()
    again = reviews_frame([{"reviewer": "B", "rel_path": f"f{i}", "agrees_with_label": i < 25}
                           for i in range(50)])  # B now agrees with A on every film
    both = pd.concat([frame, again], ignore_index=True)
    row = kappa_tables(both, n_boot=20)["overall"].set_index("question").loc["agrees_with_label"]
    assert row["kappa"] == pytest.approx(1.0)


def test_wilson_interval_matches_newcombes_published_example():
    # Newcombe (1998), Stat. Med. 17:857, method 3 for 81/263: 0.2553 to 0.3662
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (None, None)


def test_agreement_with_the_model_per_reviewer():
    rows = [  # A: 3 reviews, agrees with the prediction on 2; one film the model got wrong
        {"reviewer": "A", "rel_path": "f1", "agrees_with_prediction": True},
        {"reviewer": "A", "rel_path": "f2", "agrees_with_prediction": True, "agrees_with_label": False},
        {"reviewer": "A", "rel_path": "f3", "agrees_with_prediction": False,
         "label": "Normal", "prediction": "COVID-19"},
        {"reviewer": "B", "rel_path": "f3", "agrees_with_prediction": True,
         "label": "Normal", "prediction": "COVID-19"}]
    table = model_agreement(reviews_frame(rows)).set_index("reviewer")
    assert table.loc["A", "reviews"] == 3
    assert table.loc["A", "agrees_with_prediction"] == pytest.approx(2 / 3)
    assert table.loc["A", "agrees_with_label"] == pytest.approx(2 / 3)
    assert (table.loc["A", "low"], table.loc["A", "high"]) == pytest.approx(wilson_interval(2, 3))
    assert table.loc["A", "model_errors"] == 1 and table.loc["A", "sides_with_model_on_errors"] == 0
    assert table.loc["B", "sides_with_model_on_errors"] == 1
    assert table.loc["all reviewers", "reviews"] == 4
    assert table.loc["all reviewers", "agrees_with_prediction"] == pytest.approx(3 / 4)


def test_share_of_heatmaps_off_target_per_class():
    locs = {"COVID-19": ["markers", "outside_body", "lung_findings", "lungs_elsewhere"],
            "Normal": ["markers", "lung_findings"]}
    rows = [{"reviewer": f"R{i}", "rel_path": f"{cls}/{i}", "label": cls, "heatmap_location": loc}
            for cls, values in locs.items() for i, loc in enumerate(values)]
    table = off_target_share(reviews_frame(rows), ["COVID-19", "Normal", "Viral Pneumonia"])
    table = table.set_index("class")
    assert table.loc["COVID-19", "off_target"] == pytest.approx(2 / 4)
    assert table.loc["Normal", "off_target"] == pytest.approx(1 / 2)
    assert table.loc["all", "off_target"] == pytest.approx(3 / 6)
    assert table.loc["COVID-19", "on markers, text or devices"] == 1
    assert table.loc["COVID-19", "outside the body"] == 1
    assert table.loc["Viral Pneumonia", "reviews"] == 0
    assert pd.isna(table.loc["Viral Pneumonia", "off_target"])
    assert (table.loc["Normal", "low"], table.loc["Normal", "high"]) == pytest.approx(
        wilson_interval(1, 2))


def _predictions():
    classes = ["COVID-19", "Normal"]
    rows = [  # rel_path, label, P(COVID-19), split
        ("a", "COVID-19", 0.9, "test"), ("b", "Normal", 0.95, "test"),  # b: confident error
        ("c", "Normal", 0.6, "test"),  # c: a milder error
        ("d", "COVID-19", 0.99, "test"), ("e", "Normal", 0.2, "test"), ("f", "COVID-19", 0.7, "test"),
        ("g", "COVID-19", 0.1, "train")]
    frame = pd.DataFrame(rows, columns=["rel_path", "label", "p_COVID-19", "split"])
    frame["p_Normal"] = 1 - frame["p_COVID-19"]
    frame["path"] = "/films/" + frame["rel_path"]
    return frame, classes


def test_queue_puts_confident_errors_first_then_cams_outside_the_lungs():
    preds, classes = _predictions()
    queue = review_queue(preds, classes)
    assert queue["rel_path"].tolist() == ["b", "c", "d", "a", "e", "f"]  # no CAM: by confidence
    assert "g" not in queue["rel_path"].tolist()  # test films only
    shares = pd.DataFrame({"rel_path": ["a", "d", "e", "b"], "in_lung_share": [0.2, 0.9, 0.5, 0.1]})
    queue = review_queue(preds, classes, in_lung_share=shares)
    assert queue["rel_path"].tolist() == ["b", "c", "a", "e", "d", "f"]
    assert queue["position"].tolist() == [1, 2, 3, 4, 5, 6]
    assert queue["reason"].iloc[0] == "error: Normal called COVID-19 at 95%"
    assert queue["reason"].iloc[2] == "correct, 20% of the CAM inside the lungs"


def test_progress_counts_films_of_the_queue():
    preds, classes = _predictions()
    queue = review_queue(preds, classes)
    reviews = reviews_frame([{"reviewer": "A", "rel_path": "b"}, {"reviewer": "A", "rel_path": "b"},
                             {"reviewer": "B", "rel_path": "c"}, {"reviewer": "A", "rel_path": "g"}])
    assert review_progress(queue, reviews, "A") == {"queue": 6, "reviewed": 2, "mine": 1,
                                                    "reviewers": 2}
    assert review_progress(queue, reviews.iloc[:0], "A")["mine"] == 0
