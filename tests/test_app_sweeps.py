"""Training page, Sweeps section (issue 23): start a sweep of the remedies in the background,
see a finished sweep's leaderboard and choice, and the other test figures only on request."""
from __future__ import annotations

import shutil

from app_fixtures import app, app_workspace, texts, trained_run  # noqa: F401

PAGE = "views/training.py"


def _set_tiny(at):
    at.selectbox(key="tr_family").set_value("tiny").run()
    at.number_input(key="tr_epochs_tiny").set_value(5)
    at.select_slider(key="tr_lr").set_value(1e-2)
    return at.run()


def test_sweeps_section_starts_a_sweep_and_shows_a_finished_one(app, trained_run, monkeypatch):
    from cxrlib.sweep import study
    from cxrlib.sweep.space import SweepSpec

    spec = SweepSpec(name="page-sweep", data=trained_run.config.data.root, selection="validation",
                     base=trained_run.config.to_dict(), candidates=[{"name": "baseline"}])
    try:
        result = study.run_sweep(spec)  # the cached run: nothing trains (one source: no LOSO)
        assert result["chosen"] == trained_run.id
        started = []
        monkeypatch.setattr(study, "start_background", lambda s: started.append(s) or 4242)
        at = _set_tiny(app(PAGE))
        assert "Sweeps: which remedy generalises to an unseen source?" in texts(at.subheader)
        assert any(e.label.startswith("page-sweep — done (1/1)") for e in at.expander)
        assert any("chosen: **baseline**" in m for m in texts(at.markdown))
        boards = [d.value for d in at.dataframe if "loso_expected_accuracy" in d.value.columns]
        assert len(boards) == 1 and boards[0]["name"].tolist() == ["baseline"]
        assert not any("test_accuracy" in d.value.columns for d in at.dataframe)
        at.toggle(key="sweep_all_page-sweep").set_value(True).run()
        shown = [d.value for d in at.dataframe if "test_accuracy" in d.value.columns]
        assert shown and shown[0]["test_accuracy"].iloc[0] == trained_run.metrics()["accuracy"]
        at.text_input[0].set_value("new-sweep")
        at.button[[b.label for b in at.button].index("Start sweep")].click().run()
        assert not at.exception
        assert [s.name for s in started] == ["new-sweep"]
        assert [c["name"] for c in started[0].candidates] == ["baseline", "acquisition", "source_balance"]
        assert started[0].candidates[1]["train.feature_augment_copies"] == 2
    finally:
        shutil.rmtree(study.sweep_folder("page-sweep"), ignore_errors=True)


def test_the_sweep_form_keeps_its_values_across_pages(app, trained_run, monkeypatch):
    """Left open last stops: a sweep's candidates, name, copies and rule went back to the
    defaults when the user looked at another page and came back."""
    from cxrlib.sweep import study

    monkeypatch.setattr(study, "start_background", lambda spec: 4242)  # nothing starts
    at = _set_tiny(app(PAGE))
    at.multiselect(key="sw_remedies").set_value(["baseline", "acquisition"])
    at.text_input(key="sw_name").set_value("mine")
    at.number_input(key="sw_copies").set_value(3)
    at.radio(key="sw_selection").set_value("validation")
    at.button[[b.label for b in at.button].index("Start sweep")].click().run()  # a form's values
    at.switch_page("views/home.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="sw_remedies").value == ["baseline", "acquisition"]
    assert at.text_input(key="sw_name").value == "mine"
    assert at.number_input(key="sw_copies").value == 3
    assert at.radio(key="sw_selection").value == "validation"
