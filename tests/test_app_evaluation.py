"""Evaluation page: metrics that match an independent computation, every figure, PPV / NPV,
bootstrap intervals, the sample grid with errors first, CSV downloads."""
from __future__ import annotations

import json
import re

import numpy as np
from app_fixtures import (app, app_workspace, metric, plotly_titles, reloaded,  # noqa: F401
                          shown_texts, texts, trained_run)
from sklearn.metrics import roc_auc_score

PAGE = "views/evaluation.py"


def _test_split(run):
    preds = run.predictions()
    return preds[preds["split"] == "test"]


def test_headline_metrics_match_an_independent_computation(app, trained_run):
    at = app(PAGE, run_id=trained_run.id)
    assert texts(at.title) == ["Evaluation"]
    test = _test_split(trained_run)
    probs = test[[f"p_{c}" for c in trained_run.classes]].to_numpy()
    truth = test["label"].map({c: i for i, c in enumerate(trained_run.classes)}).to_numpy()
    assert metric(at, "Test accuracy") == f"{np.mean(probs.argmax(1) == truth):.3f}"
    assert metric(at, "Macro AUC") == f"{roc_auc_score(truth, probs, multi_class='ovr'):.3f}"
    assert metric(at, "Test films") == str(len(test))


def test_every_figure_is_drawn(app, trained_run):
    titles = " | ".join(plotly_titles(app(PAGE, run_id=trained_run.id))).lower()
    for word in ("training curves", "confusion", "roc", "precision", "reliability", "bootstrap"):
        assert word in titles, (word, titles)


def test_prevalence_slider_gives_bayes_ppv_npv(app, trained_run):
    at = app(PAGE, run_id=trained_run.id, ev_tab="Predictive values")
    at.selectbox(key="ev_pos").set_value("COVID-19")
    at.slider(key="ev_prev").set_value(0.2).run()
    test = _test_split(trained_run)
    pred = test[[f"p_{c}" for c in trained_run.classes]].to_numpy().argmax(1)
    pos, called = test["label"].to_numpy() == "COVID-19", pred == 0
    sens, spec = (called & pos).sum() / pos.sum(), (~called & ~pos).sum() / (~pos).sum()
    table = _pv_table(at)
    assert table["run"].tolist() == [f"Run {trained_run.id[:8]}"]  # every number names its run
    row = table.iloc[0]
    assert f"{row['Sensitivity']:.3f}" == f"{sens:.3f}" and f"{row['Specificity']:.3f}" == f"{spec:.3f}"
    tp, fp = sens * 0.2, (1 - spec) * 0.8
    tn, fn = spec * 0.8, (1 - sens) * 0.2
    assert _value(row["PPV"]) == _shown(tp, tp + fp)
    assert _value(row["NPV"]) == _shown(tn, tn + fn)
    for name in ("Sensitivity", "Specificity", "PPV", "NPV"):  # each with its interval
        low, high = (float(v) for v in row[f"{name} 95 % CI"].split(" – "))
        assert low <= row[name] <= high and low < high


def _pv_table(at):
    return [d.value for d in at.dataframe if "PPV" in d.value.columns][0]


def _value(v) -> str:
    return "—" if v is None or v != v else f"{v:.3f}"


def _shown(num: float, den: float) -> str:
    """How the page shows a ratio: three decimals, or a dash when it is undefined (0 / 0)."""
    return "—" if den == 0 else f"{num / den:.3f}"


def test_bootstrap_interval_brackets_the_accuracy(app, trained_run):
    at = app(PAGE, run_id=trained_run.id)
    caption = [c for c in texts(at.caption) if c.startswith("95 % CI of accuracy")][0]
    low, high = (float(v) for v in caption.split(": ")[1].split(" (")[0].split(" – "))
    acc = float(metric(at, "Test accuracy"))
    assert low <= acc <= high and "patient-level bootstrap" in caption
    ci = [d.value for d in at.dataframe if "estimate" in d.value.columns][0]
    assert list(ci["metric"])[:1] == ["accuracy"]


def test_sample_grid_errors_first_and_downloads(app, trained_run):
    at = app(PAGE, run_id=trained_run.id, ev_tab="Sample predictions")
    test = _test_split(trained_run)
    probs = test[[f"p_{c}" for c in trained_run.classes]].to_numpy()
    pred = np.asarray(trained_run.classes)[probs.argmax(1)]
    errors = int((pred != test["label"].to_numpy()).sum())
    assert f"Run `{trained_run.id[:8]}`: {errors} errors of {len(test)}" in texts(at.markdown)
    grid = [c for c in at.caption if "→" in c.value]
    assert len(grid) == min(12, len(test)) and len(at.image) == len(grid)
    # An error is drawn orange and bold (Streamlit's directive, not escaped: it was shown as
    # ":orange[**✗ …" text), its class names as they are (markdown-it: an independent renderer)
    wrong = [c.value.startswith(":orange[**✗ ") and c.value.endswith(")]") for c in grid]
    assert wrong == sorted(wrong, reverse=True)  # every (orange) error before every hit
    assert sum(wrong) == min(errors, 12)
    for caption in shown_texts(grid):
        assert re.fullmatch(r"(:orange\[✗|✓) (COVID-19|Normal|Viral Pneumonia) → "
                            r"(COVID-19|Normal|Viral Pneumonia) \(score [01]\.\d\d\)\]?", caption), caption
    assert {d.label for d in at.download_button} == {"Predictions (CSV)",
                                                     "Classification report (CSV)",
                                                     "Model (best.keras)"}


def _second_run(synthetic_dataset):
    from app_fixtures import tiny_config

    from cxrlib.runs import runner

    return runner.train_foreground(tiny_config(synthetic_dataset, epochs=3))


def test_two_runs_side_by_side(app, trained_run, synthetic_dataset):
    second = _second_run(synthetic_dataset)
    at = app(PAGE, run_id=trained_run.id)
    at.selectbox(key="ev_other").set_value(second.id).run()
    assert {f"Run `{trained_run.id[:8]}`", f"Run `{second.id[:8]}`"} <= set(texts(at.subheader))
    assert len([m for m in at.metric if m.label == "Test accuracy"]) == 2
    assert at.query_params.get("compare") == second.id  # a reload shows the same pair
    # every figure says whose it is, and the pairs share their axes
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    owners = [s["layout"]["title"]["text"].split("</b>")[0] for s in specs]
    assert sum(f"Run A · {trained_run.id[:8]}" in o for o in owners) == 6
    assert sum(f"Run B · {second.id[:8]}" in o for o in owners) == 6
    pairs = list(zip(specs[0:12:2], specs[1:12:2]))  # A and B of each row, drawn in turn
    for a, b in pairs:
        for axis in ("xaxis", "yaxis"):
            assert a["layout"].get(axis, {}).get("range") == b["layout"].get(axis, {}).get("range")
    at.session_state["ev_tab"] = "Predictive values"
    table = _pv_table(at.run())
    assert table["run"].tolist() == [f"Run A · {trained_run.id[:8]}", f"Run B · {second.id[:8]}"]


def test_unit_square_plots_keep_their_axes_in_a_narrow_column(app, trained_run, synthetic_dataset):
    """Issue 26: side by side, the PR and reliability plots' y axes ran to 300 % and −200 %:
    plotly widened the range of a free y axis to keep the square. Both axes must give up plot
    area (constrain 'domain') and keep [0, 1]."""
    second = _second_run(synthetic_dataset)
    at = app(PAGE, run_id=trained_run.id)
    at.selectbox(key="ev_other").set_value(second.id).run()
    square = [json.loads(c.proto.spec)["layout"] for c in at.get("plotly_chart")]
    square = [lay for lay in square if lay.get("yaxis", {}).get("scaleanchor") == "x"]
    assert len(square) >= 6  # ROC, PR and reliability of both runs
    for lay in square:
        assert lay["yaxis"]["constrain"] == "domain" and lay["xaxis"]["constrain"] == "domain"
        assert lay["yaxis"]["range"] == [-0.01, 1.01]


def test_evaluation_follows_the_sidebar_current_run(app, trained_run, synthetic_dataset):
    """Issue 26, bug 1: picking another run in the sidebar left Evaluation on the first one."""
    second = _second_run(synthetic_dataset)
    at = app(PAGE, run_id=trained_run.id)
    assert f"Run `{trained_run.id[:8]}`" in texts(at.subheader)
    at.selectbox(key="run_id").set_value(second.id).run()
    assert not at.exception
    heads = [t for t in texts(at.subheader) if t.startswith("Run `")]
    assert heads == [f"Run `{second.id[:8]}`"]
    assert at.query_params.get("run") == second.id


def test_a_reload_opens_the_run_and_comparison_of_the_address(app, trained_run, synthetic_dataset):
    """Issue 26, bug 2: a new session (a reload, a shared link) fell back to the newest run."""
    from streamlit.testing.v1 import AppTest

    from app_fixtures import APP, TIMEOUT

    second = _second_run(synthetic_dataset)
    older = trained_run
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["data_dir"] = str(synthetic_dataset)
    at.query_params.update({"run": older.id, "compare": second.id})
    at.run()
    at.switch_page(PAGE)
    at.query_params.update({"run": older.id, "compare": second.id})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="run_id").value == older.id
    heads = [t for t in texts(at.subheader) if t.startswith("Run `")]
    assert heads == [f"Run `{older.id[:8]}`", f"Run `{second.id[:8]}`"]


def test_subgroups_by_a_chosen_column(app, trained_run):
    """Cut by ``format`` (every synthetic film is a PNG): one subgroup holding the whole test
    split, whose accuracy is the run's and whose figures are drawn."""
    at = app(PAGE, run_id=trained_run.id, ev_tab="Where it fails")
    assert "Where it fails: accuracy by subgroup" in texts(at.subheader)
    assert "format" in at.multiselect(key="ev_by").options
    at.multiselect(key="ev_by").set_value(["format"]).run()
    assert not at.exception
    test = _test_split(trained_run)
    table = [d.value for d in at.dataframe if "flagged" in d.value.columns][0]
    assert table["value"].tolist() == ["PNG"] and table["films"].tolist() == [len(test)]
    assert not [c for c in table.columns if "_" in c]  # headers people read
    accuracy = (test["label"] == test["pred"]).mean()
    assert table["accuracy"].iloc[0] == accuracy and not table["flagged"].iloc[0]
    assert table["95 % CI low"].iloc[0] <= accuracy <= table["95 % CI high"].iloc[0]
    titles = " | ".join(plotly_titles(at))
    assert "Accuracy by subgroup" in titles and "Recall of each class by subgroup" in titles
    assert "Subgroups (CSV)" in {d.label for d in at.download_button}


def test_only_the_open_tab_is_drawn_and_it_is_kept(app, trained_run):
    """The page was 8 charts, 4 tables and 12 films at once, the heaviest page for a browser
    (1.24 of a warm action's 4.4 CPU s on the sample). Below the headline only the open tab is
    drawn now, and it is the one the user left when they come back."""
    at = app(PAGE, run_id=trained_run.id)
    assert [t.label for t in at.tabs] == ["Performance", "Where it fails", "Predictive values",
                                          "Sample predictions"]
    assert len(at.get("plotly_chart")) == 6 and not at.image  # Performance: figures, no films
    assert metric(at, "Test accuracy")  # the headline stays above the tabs
    at.session_state["ev_tab"] = "Sample predictions"
    at.run()
    assert not at.get("plotly_chart") and len(at.image) == min(12, len(_test_split(trained_run)))
    assert metric(at, "Test accuracy")
    at.switch_page("views/home.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.get("plotly_chart") and at.image  # still on Sample predictions


def test_the_open_tab_is_in_the_address(app, trained_run):
    """Left open last stop: a reload or a shared link opened Performance whatever tab was open.
    The tab is now ``?tab=`` (absent for the first), and a new session opens it."""
    at = app(PAGE, run_id=trained_run.id)
    assert "tab" not in at.query_params  # the first tab: a plain address
    at.session_state["ev_tab"] = "Where it fails"
    at.run()
    assert at.query_params.get("tab") == "Where it fails"
    fresh = reloaded(PAGE, dict(at.query_params))
    assert fresh.session_state["ev_tab"] == "Where it fails"
    assert "Where it fails: accuracy by subgroup" in texts(fresh.subheader)  # that tab is drawn
    assert "Confusion matrix" not in " | ".join(plotly_titles(fresh))  # not Performance's
    odd = reloaded(PAGE, {**dict(at.query_params), "tab": "Nonsense"})
    assert odd.session_state["ev_tab"] == "Performance" and len(odd.get("plotly_chart")) == 6
    assert "Confusion matrix" in " | ".join(plotly_titles(odd))
