"""Evaluation page: metrics that match an independent computation, every figure, PPV / NPV,
bootstrap intervals, the sample grid with errors first, CSV downloads."""
from __future__ import annotations

import numpy as np
from app_fixtures import app, app_workspace, metric, plotly_titles, texts, trained_run  # noqa: F401
from sklearn.metrics import roc_auc_score

PAGE = "views/evaluation.py"


def _test_split(run):
    preds = run.predictions()
    return preds[preds["split"] == "test"]


def test_headline_metrics_match_an_independent_computation(app, trained_run):
    at = app(PAGE)
    assert texts(at.title) == ["Evaluation"]
    test = _test_split(trained_run)
    probs = test[[f"p_{c}" for c in trained_run.classes]].to_numpy()
    truth = test["label"].map({c: i for i, c in enumerate(trained_run.classes)}).to_numpy()
    assert metric(at, "Test accuracy") == f"{np.mean(probs.argmax(1) == truth):.3f}"
    assert metric(at, "Macro AUC") == f"{roc_auc_score(truth, probs, multi_class='ovr'):.3f}"
    assert metric(at, "Test films") == str(len(test))


def test_every_figure_is_drawn(app):
    titles = " | ".join(plotly_titles(app(PAGE))).lower()
    for word in ("training curves", "confusion", "roc", "precision", "reliability", "bootstrap"):
        assert word in titles, (word, titles)


def test_prevalence_slider_gives_bayes_ppv_npv(app, trained_run):
    at = app(PAGE)
    at.selectbox(key="ev_pos").set_value("COVID-19")
    at.slider(key="ev_prev").set_value(0.2).run()
    test = _test_split(trained_run)
    pred = test[[f"p_{c}" for c in trained_run.classes]].to_numpy().argmax(1)
    pos, called = test["label"].to_numpy() == "COVID-19", pred == 0
    sens, spec = (called & pos).sum() / pos.sum(), (~called & ~pos).sum() / (~pos).sum()
    assert metric(at, "Sensitivity") == f"{sens:.3f}" and metric(at, "Specificity") == f"{spec:.3f}"
    tp, fp = sens * 0.2, (1 - spec) * 0.8
    tn, fn = spec * 0.8, (1 - sens) * 0.2
    assert metric(at, "PPV") == _shown(tp, tp + fp)
    assert metric(at, "NPV") == _shown(tn, tn + fn)


def _shown(num: float, den: float) -> str:
    """How the page shows a ratio: three decimals, or a dash when it is undefined (0 / 0)."""
    return "—" if den == 0 else f"{num / den:.3f}"


def test_bootstrap_interval_brackets_the_accuracy(app):
    at = app(PAGE)
    caption = [c for c in texts(at.caption) if c.startswith("95 % CI of accuracy")][0]
    low, high = (float(v) for v in caption.split(": ")[1].split(" (")[0].split(" – "))
    acc = float(metric(at, "Test accuracy"))
    assert low <= acc <= high and "patient-level bootstrap" in caption
    ci = [d.value for d in at.dataframe if "estimate" in d.value.columns][0]
    assert list(ci["metric"])[:1] == ["accuracy"]


def test_sample_grid_errors_first_and_downloads(app, trained_run):
    at = app(PAGE)
    test = _test_split(trained_run)
    probs = test[[f"p_{c}" for c in trained_run.classes]].to_numpy()
    pred = np.asarray(trained_run.classes)[probs.argmax(1)]
    errors = int((pred != test["label"].to_numpy()).sum())
    assert f"Run `{trained_run.id[:8]}`: {errors} errors of {len(test)}" in texts(at.markdown)
    grid = [c for c in texts(at.caption) if "→" in c]
    assert len(grid) == min(12, len(test)) and len(at.image) == len(grid)
    wrong = [c.startswith(":red[**✗") for c in grid]
    assert wrong == sorted(wrong, reverse=True)  # every (red) error before every hit
    assert sum(wrong) == min(errors, 12)
    assert {d.label for d in at.download_button} == {"Predictions (CSV)",
                                                     "Classification report (CSV)",
                                                     "Model (best.keras)"}


def test_two_runs_side_by_side(app, trained_run, synthetic_dataset):
    from app_fixtures import tiny_config

    from cxrlib.runs import runner

    second = runner.train_foreground(tiny_config(synthetic_dataset, epochs=3))
    at = app(PAGE)
    at.multiselect(key="ev_runs").set_value([trained_run.id, second.id]).run()
    assert {f"Run `{trained_run.id[:8]}`", f"Run `{second.id[:8]}`"} <= set(texts(at.subheader))
    assert len([m for m in at.metric if m.label == "Test accuracy"]) == 2


def test_subgroups_by_a_chosen_column(app, trained_run):
    """Cut by ``format`` (every synthetic film is a PNG): one subgroup holding the whole test
    split, whose accuracy is the run's and whose figures are drawn."""
    at = app(PAGE)
    at.multiselect(key="ev_runs").set_value([trained_run.id]).run()
    assert "Where it fails: accuracy by subgroup" in texts(at.subheader)
    assert "format" in at.multiselect(key="ev_by").options
    at.multiselect(key="ev_by").set_value(["format"]).run()
    assert not at.exception
    test = _test_split(trained_run)
    table = [d.value for d in at.dataframe if "flagged" in d.value.columns][0]
    assert table["value"].tolist() == ["PNG"] and table["n"].tolist() == [len(test)]
    accuracy = (test["label"] == test["pred"]).mean()
    assert table["accuracy"].iloc[0] == accuracy and not table["flagged"].iloc[0]
    assert table["ci_low"].iloc[0] <= accuracy <= table["ci_high"].iloc[0]
    titles = " | ".join(plotly_titles(at))
    assert "Accuracy by subgroup" in titles and "Recall of each class by subgroup" in titles
    assert "Subgroups (CSV)" in {d.label for d in at.download_button}
