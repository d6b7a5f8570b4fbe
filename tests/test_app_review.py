"""Review page, the Explain page's review form, the Evaluation grid's link to a review, and the
Evaluation page's verdict on two runs, all on copies of the tiny run in a fresh workspace (so the
review database and the extra runs touch no other test)."""
from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from app_fixtures import app, app_workspace, metric, shown_texts, texts, trained_run, viewer  # noqa: F401

from cxrlib.data.fingerprint import file_digest
from cxrlib.reviews import Review, ReviewStore
from cxrlib.runs.run import Run

PAGE = "views/review.py"


@pytest.fixture
def workspace_copy(tmp_path, trained_run, monkeypatch):
    """``copy(prefix="", edit=None) -> Run``: a copy of the tiny run in a fresh workspace (under
    another id when ``prefix`` is given), its predictions changed by ``edit(frame)``."""
    runs_dir = tmp_path / "ws" / "models" / "runs"
    monkeypatch.setenv("CXR_WORKSPACE", str(tmp_path / "ws"))

    def copy(prefix: str = "", edit=None) -> Run:
        run_id = prefix + trained_run.id[len(prefix):]  # another short id: another label
        folder = runs_dir / run_id
        shutil.copytree(trained_run.folder, folder)
        if edit is not None:
            Run(folder).write_predictions(edit(Run(folder).predictions()))  # its row count too
        return Run(folder)

    copy()
    return copy


def _test_rows(run) -> pd.DataFrame:
    preds = run.predictions()
    return preds[preds["split"] == "test"].reset_index(drop=True)


def _button(at, label: str):
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r} among {[b.label for b in at.button]}"
    return found[0]


def _progress(at) -> str:
    return at.get("progress")[0].proto.text


def _answer(at, *, label: bool, prediction: bool, where: str) -> None:
    radios = {r.label.split(" (")[0]: r for r in at.radio}
    radios["Agree with the label"].set_value(label)
    radios["Agree with the prediction"].set_value(prediction)
    radios["Where does the heatmap fall?"].set_value(where)


def _read(at, reading: str, where: str) -> None:
    """A blinded review's answers: the reviewer's own reading and where the heatmap falls."""
    radios = {r.label.split(" (")[0]: r for r in at.radio}
    radios["Your reading of this film"].set_value(reading)
    radios["Where does the heatmap fall?"].set_value(where)


def _sign_in(at, name: str = "Dr Ada"):
    at.text_input(key="rv_reviewer_name").input(name)
    _button(at, "Start reviewing").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _planted_errors(classes, confidences=(0.95, 0.85)):
    """An edit making the first test hits confident errors, one per confidence (distinct, so
    their order in the queue is known)."""
    cols = [f"p_{c}" for c in classes]

    def edit(preds):
        test = preds.index[preds["split"] == "test"]
        truth = preds.loc[test, "label"].map({c: i for i, c in enumerate(classes)})
        right = preds.loc[test, cols].to_numpy(float).argmax(1) == truth.to_numpy()
        for idx, conf in zip(test[right], confidences):
            wrong = (int(truth[idx]) + 1) % len(classes)
            preds.loc[idx, cols] = [conf if i == wrong else (1 - conf) / (len(classes) - 1)
                                    for i in range(len(classes))]
        return preds
    return edit


def test_review_page_asks_the_name_queues_errors_first_and_saves_a_review(app, trained_run,
                                                                          workspace_copy):
    run = workspace_copy("eeee", _planted_errors(trained_run.classes))  # errors of known order
    at = app(PAGE, run_id=run.id, rv_blind=False)  # unblinded: the queue shows errors first
    assert texts(at.title) == ["Review"]
    assert not at.get("progress")  # nothing but the name until the reviewer says who they are
    _sign_in(at)
    assert "Reviewing as **Dr Ada**" in texts(at.caption)
    test = _test_rows(run)
    probs = test[[f"p_{c}" for c in run.classes]].to_numpy()
    truth = test["label"].map({c: i for i, c in enumerate(run.classes)}).to_numpy()
    wrong = probs.argmax(1) != truth
    conf = probs.max(1)
    errors = test["rel_path"][wrong].to_numpy()[np.argsort(-conf[wrong], kind="stable")]
    assert len(errors) >= 2  # else "errors first, most confident first" would check nothing
    assert _progress(at).startswith(f"You have reviewed 0 of {len(test)} films in the queue")
    picker = at.selectbox(key="rv_film")
    assert picker.options[:len(errors)] == [o for o in picker.options if "error:" in o]
    assert [o.split(". ", 1)[1].split(" — ")[0] for o in picker.options[:len(errors)]] == list(errors)
    film = picker.value
    assert film == (errors[0] if len(errors) else test["rel_path"].iloc[0])

    _button(at, "Save review").click().run()  # nothing is pre-selected: every answer is asked
    assert any(e.startswith("Answer the two agreement questions") for e in texts(at.error))
    assert len(ReviewStore().reviews(run.id)) == 0
    _answer(at, label=False, prediction=True, where="markers")
    at.select_slider[0].set_value(5)
    at.text_area[0].input("heat on the R marker")
    _button(at, "Save review").click().run()
    assert "Review saved (Dr Ada, " + film + ")." in shown_texts(at.success)
    stored = ReviewStore().reviews(run.id)
    row = test.set_index("rel_path").loc[film]
    assert len(stored) == 1
    saved = stored.iloc[0]
    assert (saved["reviewer"], saved["rel_path"], saved["agrees_with_label"],
            saved["agrees_with_prediction"], saved["heatmap_location"], saved["confidence"],
            saved["comment"]) == ("Dr Ada", film, False, True, "markers", 5, "heat on the R marker")
    predicted = run.classes[int(row[[f"p_{c}" for c in run.classes]].to_numpy(float).argmax())]
    assert (saved["label"], saved["prediction"]) == (row["label"], predicted)
    assert saved["film_digest"] == file_digest(row["path"], os.path.getsize(row["path"]))
    assert _progress(at).startswith(f"You have reviewed 1 of {len(test)} films")
    assert [o for o in at.selectbox(key="rv_film").options if "✓ mine" in o] == [
        o for o in at.selectbox(key="rv_film").options if f" {film} — " in o]
    shown = [d.value for d in at.dataframe if "comment" in d.value.columns][0]
    assert shown["comment"].tolist() == ["heat on the R marker"]

    _button(at, "Save review").click().run()  # the same answers again: stored once
    assert "This review is already saved." in texts(at.info)
    assert len(ReviewStore().reviews(run.id)) == 1
    _button(at, "Next to review").click().run()
    assert at.selectbox(key="rv_film").value != film


def test_a_save_is_one_page_run(app, trained_run, workspace_copy, monkeypatch):
    """Issue 22 (a shared server): saving a review runs the page once, not twice (a rerun after
    the save doubled its cost for the server and the browser), and that one run already counts
    the review in everything drawn above the form."""
    import app_services

    at = _sign_in(app(PAGE, run_id=trained_run.id, rv_blind=False))
    runs = []
    queue = app_services.review_queue
    monkeypatch.setattr(app_services, "review_queue",
                        lambda *a, **k: runs.append(1) or queue(*a, **k))
    _answer(at, label=True, prediction=True, where="lung_findings")
    _button(at, "Save review").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(ReviewStore().reviews(trained_run.id)) == 1
    assert len(runs) == 1
    assert _progress(at).startswith("You have reviewed 1 of ")


def test_agreement_tables_appear_with_two_reviewers(app, trained_run, workspace_copy):
    films = _test_rows(trained_run)["rel_path"].tolist()[:8]
    a = [True, True, False, True, False, True, True, False]
    b = [True, False, False, True, False, True, False, False]
    store = ReviewStore()
    for who, answers in (("Dr A", a), ("Dr B", b)):
        for film, value in zip(films, answers):
            store.add(Review(reviewer=who, run_id=trained_run.id, rel_path=film,
                             agrees_with_label=value, agrees_with_prediction=True,
                             heatmap_location="outside_body" if value else "lung_findings",
                             confidence=3, label="Normal"))
    at = app(PAGE, run_id=trained_run.id, reviewer="Dr A")
    overall = [d.value for d in at.dataframe if "method" in d.value.columns][0].set_index("question")
    # by hand: p_o = 6/8; A says yes 5/8, B 3/8: p_e = 2 · 15/64; kappa = (48 − 30)/(64 − 30) = 9/17
    label = overall.loc["agrees with the label"]
    assert (label["method"], label["films"], label["observed agreement"]) == ("Cohen", 8, "75%")
    assert label["kappa (95 % CI)"].startswith(f"{9 / 17:.2f} (")
    off = [d.value for d in at.dataframe if "class" in d.value.columns][0].set_index("class")
    # 8 of the 16 reviews put the heatmap outside the body
    assert off.loc["Normal", "off target (95 % CI)"].startswith("50% (")
    assert off.loc["Normal", "outside the body"] == sum(a) + sum(b) == 8
    assert _progress(at).startswith(f"You have reviewed 8 of {len(_test_rows(trained_run))}")
    assert [d.label for d in at.download_button] == ["All reviews of this run (CSV)"]


def test_explain_page_review_form_saves_with_the_films_prediction(app, trained_run, workspace_copy):
    at = app("views/explain.py", run_id=trained_run.id)
    film = at.selectbox(key="ex_film_Test").value
    at.text_input(key="ex_reviewer_name").input("Dr Eve")
    _button(at, "Start reviewing").click().run()
    _answer(at, label=True, prediction=False, where="outside_body")
    _button(at, "Save review").click().run()
    assert f"Review saved (Dr Eve, {film})." in shown_texts(at.success)
    saved = ReviewStore().reviews(trained_run.id).iloc[0]
    pred = [m.label.split(" · ", 1)[1] for m in at.metric if m.label.startswith("Model score · ")]
    values = [float(m.value) for m in at.metric if m.label.startswith("Model score · ")]
    assert saved["prediction"] == pred[int(np.argmax(values))]
    assert (saved["agrees_with_label"], saved["agrees_with_prediction"],
            saved["heatmap_location"]) == (True, False, "outside_body")
    assert saved["label"] == _test_rows(trained_run).set_index("rel_path").loc[film, "label"]
    assert not at.image and not at.get("plotly_chart")  # the form adds no image, no chart
    assert len(viewer(at)["panels"]) == 2  # the film viewer alone: the film and its heatmap


def test_evaluation_grid_opens_a_film_on_the_review_page(app, trained_run, workspace_copy):
    at = app("views/evaluation.py", run_id=trained_run.id, reviewer="Dr Ada",
             ev_tab="Sample predictions")
    box = at.selectbox(key=f"ev_review_{trained_run.id}_film")
    film = box.options[2]
    box.set_value(film)
    _button(at, "Review it").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert texts(at.title) == ["Review"]
    assert at.selectbox(key="rv_film").value == film


def _edit_b(k_fix: int, j_break: int, classes):
    """Run B: run A with ``k_fix`` of its errors made right and ``j_break`` hits made wrong."""
    cols = [f"p_{c}" for c in classes]

    def edit(preds):
        test = preds.index[preds["split"] == "test"]
        truth = preds.loc[test, "label"].map({c: i for i, c in enumerate(classes)})
        right = preds.loc[test, cols].to_numpy(float).argmax(1) == truth.to_numpy()
        for idx, make_right in [(i, True) for i in test[~right][:k_fix]] + \
                               [(i, False) for i in test[right][:j_break]]:
            t = int(truth[idx])
            target = t if make_right else (t + 1) % len(classes)
            preds.loc[idx, cols] = [0.9 if i == target else 0.1 / (len(classes) - 1)
                                    for i in range(len(classes))]
        return preds
    return edit


def test_two_runs_the_page_says_whether_the_difference_is_real(app, trained_run, workspace_copy):
    test = _test_rows(trained_run)
    probs = test[[f"p_{c}" for c in trained_run.classes]].to_numpy()
    errors = int((np.asarray(trained_run.classes)[probs.argmax(1)] != test["label"]).sum())
    k, j = min(2, errors), 4
    other = workspace_copy("bbbb", _edit_b(k, j, trained_run.classes))
    at = app("views/evaluation.py", run_id=trained_run.id)
    at.selectbox(key="ev_other").set_value(other.id).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Is the difference real?" in texts(at.subheader)
    # hand computation: only A right on j films, only B right on k
    p = min(1.0, 2 * sum(math.comb(j + k, i) for i in range(min(j, k) + 1)) / 2 ** (j + k))
    assert metric(at, "McNemar p (exact)") == format(p, ".3g")
    assert metric(at, "Accuracy B − A") == format((k - j) / len(test), "+.3f")
    assert metric(at, "Films only one run gets right") == str(j + k)


def test_two_runs_on_other_test_films_are_refused_with_the_reason(app, trained_run, workspace_copy):
    def other_split(preds):
        test = preds.index[preds["split"] == "test"]
        return preds.drop(test[:3])  # three test films fewer: another split
    other = workspace_copy("cccc", other_split)
    at = app("views/evaluation.py", run_id=trained_run.id)
    at.selectbox(key="ev_other").set_value(other.id).run()
    refusal = [w for w in texts(at.warning) if "cannot be compared film by film" in w]
    assert refusal and "tested on different films (another split): 3 test films only in run" in refusal[0]
    assert not [m for m in at.metric if m.label == "McNemar p (exact)"]



def test_queue_uses_an_audit_of_any_options_the_audit_page_offers(app, trained_run, workspace_copy):
    """An audit run with a CAM method, film count, adversarial weight or mask folder of the Audit
    page's choice orders the queue's correct films by their CAM share inside the lungs (the
    queue used to find only Grad-CAM / Grad-CAM++ audits without those options); of several,
    the one that measured the most films. The shares come from the run folder, where the audit
    stored them, not from this server process's memory (the queue used to forget them on a
    restart, and another process's audit never reached it)."""
    run = workspace_copy("c")  # a copy of the tiny run under another id: its own folder
    test = _test_rows(trained_run)
    probs = test[[f"p_{c}" for c in trained_run.classes]].to_numpy()
    truth = test["label"].map({c: i for i, c in enumerate(trained_run.classes)}).to_numpy()
    correct = test["rel_path"][probs.argmax(1) == truth].tolist()
    assert len(correct) >= 3
    shares = np.linspace(0.9, 0.1, len(correct))  # the reverse of the rel_path order
    attention = pd.DataFrame({"rel_path": correct, "in_lung_share": shares})
    assert run.audit_attention() is None
    run.write_audit_attention(attention)
    # a smaller audit run since (fewer films): the queue keeps the one that covers more films
    run.write_audit_attention(attention.head(1))
    at = app(PAGE, run_id=run.id, rv_blind=False)
    _sign_in(at)
    options = at.selectbox(key="rv_film").options
    measured = [o for o in options if "of the CAM inside the lungs" in o]
    ranked = [o.split(". ", 1)[1].split(" — ")[0] for o in measured]
    assert ranked == correct[::-1]  # least inside the lungs first
    # the run trained again (new predictions): the stored shares are no longer its own
    preds = run.folder / "predictions.csv"
    preds.write_bytes(preds.read_bytes())
    assert run.audit_attention() is None


def test_a_reload_keeps_the_run_film_reviewer_and_count(app, trained_run, workspace_copy,
                                                       synthetic_dataset):
    """Issue 26, bug 2: a reload (a new session) fell back to the newest run, asked the name
    again and said "you have reviewed 0 of ..." . The address now carries run, film and reviewer."""
    from app_fixtures import reloaded

    older = workspace_copy("0000")  # not the newest run: the fallback would show the other
    at = app(PAGE, run_id=older.id)
    _sign_in(at, "Dr Reload")
    _read(at, older.classes[0], where="heart_mediastinum")  # blinded, a new location
    _button(at, "Save review").click().run()
    _button(at, "Next to review").click().run()
    film, count = at.selectbox(key="rv_film").value, _progress(at)
    assert count.startswith("You have reviewed 1 of")
    address = dict(at.query_params)
    assert (address["run"], address["reviewer"], address["blind"]) == (older.id, "Dr Reload", "1")
    assert address["film"].startswith("film ")  # blinded: a code, not the path

    fresh = reloaded(PAGE, address, synthetic_dataset)  # a reload: a new session
    assert fresh.selectbox(key="run_id").value == older.id
    assert "Reviewing as **Dr Reload**" in texts(fresh.caption)
    assert fresh.selectbox(key="rv_film").value == film
    assert _progress(fresh) == count


def test_blinded_review_hides_label_prediction_and_errors_until_saved(app, trained_run,
                                                                    workspace_copy):
    """Issue 26: a blinded review (the default) shows the film and its heatmap, not the label or
    the prediction, until the reviewer has saved; the queue does not announce errors."""
    run = workspace_copy("eeee", _planted_errors(trained_run.classes))
    at = _sign_in(app(PAGE, run_id=run.id))
    assert at.toggle(key="rv_blind").value is True and at.query_params.get("blind") == "1"
    options = at.selectbox(key="rv_film").options
    assert not [o for o in options if "error" in o or " — " in o]
    assert not [o for o in options if any(c in o for c in run.classes)]  # paths name classes
    film = at.selectbox(key="rv_film").value
    assert not [c for c in texts(at.caption) if film in c]
    assert at.query_params["film"].startswith("film ") and film not in at.query_params["film"]
    sent = json.dumps(viewer(at))  # what the browser gets to draw the film (the helper's hunt:
    assert film not in sent and not [c for c in run.classes if c in sent]  # its path was in it)
    row = _test_rows(run).set_index("rel_path").loc[film]
    label = row["label"]
    predicted = run.classes[int(row[[f"p_{c}" for c in run.classes]].to_numpy(float).argmax())]
    shown = " ".join(texts(at.markdown) + [r.label for r in at.radio])
    assert "Labelled" not in shown and f"({label})" not in shown and f"({predicted})" not in shown
    assert not [r for r in at.radio if r.label.startswith("Agree with")]
    _read(at, label, where="diffuse")
    _button(at, "Save review").click().run()
    saved = ReviewStore().reviews(run.id).iloc[-1]
    assert (saved["agrees_with_label"], saved["agrees_with_prediction"]) == (True, label == predicted)
    assert saved["heatmap_location"] == "diffuse" and f"[blinded reading: {label}]" in saved["comment"]
    assert any(t.startswith(":green[✓] Labelled") or t.startswith(":orange[✗] Labelled")
               for t in texts(at.markdown))  # shown once saved


def test_the_review_viewer_names_the_method_it_draws(app, trained_run, workspace_copy):
    """Bug: the Review page's heatmap panel and caption said "Grad-CAM on ..." whatever the viewer
    drew; it draws the default method (XGrad-CAM since issue 25). The label names the method of
    ``ExplainConfig()``, as Explain's does."""
    from cxrlib import explain
    from cxrlib.core.config import ExplainConfig

    run = workspace_copy("ffff", _planted_errors(trained_run.classes))
    at = app(PAGE, run_id=run.id, rv_blind=False)
    _sign_in(at)
    expected = f"{explain.method_label(ExplainConfig().method)} on "
    assert expected != "Grad-CAM on "  # else this test could not tell the bug
    assert any(f" px · {expected}" in c for c in texts(at.caption)), texts(at.caption)


def _shown(markdown: str) -> tuple[str, str]:
    """(the text a Markdown source shows, its HTML), by markdown-it (app_fixtures.shown)."""
    from markdown_it import MarkdownIt

    from app_fixtures import shown

    return shown(markdown), MarkdownIt().render(markdown)


def test_what_users_typed_is_shown_as_typed_never_as_markdown(app, trained_run, workspace_copy):
    """Found by the app's hostile hunt: a reviewer's name (and the address's ?film=) was drawn
    as Markdown: `**bold** :red[x] [l](https://evil.example)` showed bold, red and as a live link,
    and a crafted review link showed "Log in again" linking to another site."""
    run = workspace_copy("5555")
    name = "**bold** :red[x] [l](https://evil.example) `code` _it_ $x$ <b>"
    at = _sign_in(app(PAGE, run_id=run.id), name)
    [caption] = [c for c in texts(at.caption) if c.startswith("Reviewing as")]
    text, rendered = _shown(caption)
    assert text == f"Reviewing as {name}" and "<a " not in rendered and "<em>" not in rendered
    _read(at, run.classes[0], where="heart_mediastinum")
    _button(at, "Save review").click().run()
    [saved] = [s for s in texts(at.success) if s.startswith("Review saved")]
    assert _shown(saved)[0].startswith(f"Review saved ({name}, ") and "<a " not in _shown(saved)[1]
    film = "a` [Log in again](https://evil.example/login) `b"
    fresh = app(PAGE, run_id=run.id)
    fresh.query_params["film"] = film
    fresh.run()
    [waiting] = [c for c in texts(fresh.caption) if "is waiting for your review" in c]
    text, rendered = _shown(waiting)
    assert text == f"Film {film} is waiting for your review." and "<a " not in rendered


def test_a_film_the_address_names_that_is_not_in_the_queue_is_said(app, trained_run,
                                                                    workspace_copy):
    """Found by the app's hostile hunt: ``?film=nope.png`` (a stale or mistyped link) quietly
    showed the queue's first film instead. Toggling the blinded mode (the address then holds
    a film's code, not its path) is no unknown film and says nothing."""
    run = workspace_copy("6666")
    other = workspace_copy("7777")
    at = app(PAGE, run_id=run.id)  # a link opened: the film is read once the reviewer is known
    at.query_params["film"] = "Normal/nope`[x](y).png"
    at = _sign_in(at)
    shown = at.selectbox(key="rv_film").value
    [said] = [w for w in shown_texts(at.warning) if "not among" in w]
    assert said == ("Film Normal/nope`[x](y).png of the address is not among this run's test "
                    "films; showing the queue's film instead.")
    at.run()  # the address now names the film shown: said once
    assert not [w for w in texts(at.warning) if "not among" in w]
    assert at.selectbox(key="rv_film").value == shown
    at.toggle(key="rv_blind").set_value(False).run()  # the address held a code: known
    at.toggle(key="rv_blind").set_value(True).run()
    assert not [w for w in texts(at.warning) if "not among" in w]
    at.selectbox(key="run_id").set_value(other.id).run()  # the user's own switch: no link's film
    assert not [w for w in texts(at.warning) if "not among" in w]
