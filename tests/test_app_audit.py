"""Audit page: runs the trust audit of the tiny run and shows its findings plainly."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from app_fixtures import app, app_workspace, metric, texts, trained_run  # noqa: F401

from cxrlib import preprocessing as preprocess

PAGE = "views/audit.py"


def _audited(app):
    """The Audit page with a report: the stored one, or one computed by clicking the button."""
    at = app(PAGE)
    button = [b for b in at.button if b.label == "Run the audit"]
    if button:
        button[0].click().run()
    return at


def test_audit_waits_for_a_click(app):
    at = app(PAGE)
    at.select_slider(key="au_max").set_value(50).run()  # options never audited in this session
    assert texts(at.title) == ["Audit"]
    assert [b.label for b in at.button] == ["Run the audit"]
    assert not at.metric


def _independent_audit(run):
    """What the audit should find on the run's test films, computed here without cxrlib.audit:
    each film preprocessed from its file, its Grad-CAM, its lung field (the learned segmenter on
    the decoded film: the tiny run's model input is the 96 px film itself, so the field needs no
    carrying), the share of the CAM inside it, and the model's predictions with the lungs
    replaced by the film's mean grey. Films whose mask is flagged count nowhere but in ``flagged``."""
    from cxrlib.explain import get_cam
    from cxrlib.lungs import segment_lungs

    test = run.predictions().query("split == 'test'")
    model = run.load_model()
    cam = get_cam("gradcam", model)
    classes = np.asarray(run.classes)
    shares, called, flagged = [], {"unmasked": [], "lungs blanked": [], "lungs only": []}, 0
    trusted = []
    for path in test["path"]:
        raw = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        seg = segment_lungs(raw)
        trusted.append(not seg.flagged)
        if seg.flagged:
            flagged += 1
            continue
        film = preprocess.preprocess_film(raw, run.config.preprocess)
        heat = np.clip(cam(preprocess.to_model_input(film[None]))[0][0], 0, None)
        lungs = seg.mask
        if heat.sum() > 0:
            shares.append(float(heat[lungs].sum() / heat.sum()))
        fill = np.uint8(round(float(film.mean())))
        for condition, replace in (("unmasked", np.zeros_like(lungs)), ("lungs blanked", lungs),
                                   ("lungs only", ~lungs)):
            masked = np.where(replace, fill, film).astype(np.uint8)
            probs = np.asarray(model(preprocess.to_model_input(masked[None]), training=False))
            called[condition].append(classes[probs.argmax()])
    truth = test["label"].to_numpy()
    accuracy = float(np.mean(truth == test["pred"].to_numpy()))
    truth = truth[np.array(trusted)]
    masked = {}
    for condition, pred in called.items():
        pred = np.asarray(pred)
        recalls = [np.mean(pred[truth == c] == c) for c in classes if (truth == c).any()]
        masked[condition] = {"accuracy": float(np.mean(pred == truth)), "n": len(pred),
                             "balanced_accuracy": float(np.mean(recalls)),
                             "predicted": {c: float(np.mean(pred == c)) for c in classes}}
    return test, accuracy, float(np.mean(shares)), masked, flagged


def test_audit_findings(app, trained_run):
    at = _audited(app)
    assert not at.exception
    test, acc, share, masked_acc, flagged = _independent_audit(trained_run)
    assert metric(at, "CNN test accuracy") == f"{acc:.3f}"
    shown_share = metric(at, "CAM mass inside the lungs")
    assert shown_share.endswith("%") and abs(float(shown_share[:-1]) - 100 * share) <= 0.5 + 1e-9
    assert metric(at, "Accuracy, lungs blanked") == f"{masked_acc['lungs blanked']['accuracy']:.3f}"
    # the films left out for a flagged mask are counted where the lung figures are
    assert flagged > 0
    lung_caption = [c for c in texts(at.caption) if c.startswith("Lung masks of the")][0]
    assert lung_caption.startswith(f"Lung masks of the {len(test)} test films: {len(test)} predicted.")
    assert f" {flagged} predicted masks are flagged as poor" in lung_caption
    summary = [d.value for d in at.dataframe if "scored" in d.value.columns][0].set_index("label")
    assert summary.loc["all", "flagged"] == flagged and summary.loc["all", "masks"] == "predicted"
    masked = [d.value for d in at.dataframe if "condition" in d.value.columns][0]
    assert list(masked["condition"]) == ["unmasked", "lungs blanked", "lungs only"]
    rows = masked.set_index("condition")
    assert set(rows["masks"]) == {"predicted"}
    for condition in ("unmasked", "lungs blanked", "lungs only"):  # balanced accuracy, calls
        expected = masked_acc[condition]
        assert rows.loc[condition, "films"] == expected["n"] == len(test) - flagged
        assert rows.loc[condition, "accuracy"] == pytest.approx(expected["accuracy"])
        assert rows.loc[condition, "balanced accuracy"] == pytest.approx(expected["balanced_accuracy"])
        for c, share in expected["predicted"].items():
            assert rows.loc[condition, f"called · {c}"] == pytest.approx(share)
    # the lungs-blanked accuracy carries its interval (issue 26): Wilson on the films scored
    from cxrlib.evaluation.intervals import wilson_interval

    n = int(rows.loc["lungs blanked", "films"])
    low, high = wilson_interval(round(rows.loc["lungs blanked", "accuracy"] * n), n)
    blanked_help = [m.help for m in at.metric if m.label == "Accuracy, lungs blanked"][0]
    assert blanked_help.startswith(f"95 % CI {low:.3f}–{high:.3f} (Wilson, {n} films)")

    # The synthetic classes differ only inside the lungs and every film is a PNG of one size
    # on one anatomy: acquisition properties cannot tell them apart. The baseline must stay
    # near chance, and the page must not call the data confounded (the baseline that read the
    # whole film's mean and spread did).
    assert not any(w.startswith("The data is confounded") for w in texts(at.warning))
    confusion = [d.value for d in at.dataframe if "Viral Pneumonia" in d.value.columns][0]
    confusion = confusion.to_numpy(dtype=float)
    assert f"{np.trace(confusion) / confusion.sum():.3f}" == metric(at, "Metadata-only accuracy")
    recalls = np.diag(confusion) / confusion.sum(axis=1)
    assert recalls.mean() < 0.6  # chance 1/3
    test_labels = trained_run.split_table().query("split == 'test'")["label"]
    majority = test_labels.value_counts().max() / len(test_labels)
    help_text = [m.help for m in at.metric if m.label == "Metadata-only accuracy"][0]
    assert help_text.startswith(f"Chance: {majority:.3f} (the majority class)")
    assert f"Balanced accuracy {recalls.mean():.3f} (chance 0.333)" in help_text
    features = [d.value for d in at.dataframe if "feature" in d.value.columns
                and "what it is" in d.value.columns][0]
    assert "border_mean" in set(features["feature"]) and not {"mean", "std"} & set(features["feature"])
    # one source only: leave-one-source-out says why it did not run
    assert "Will it work at another hospital?" in texts(at.subheader)
    assert any("Leave-one-source-out skipped" in i for i in texts(at.info))

    for heading in ("Leakage: patients and near-duplicates on more than one side",
                    "Metadata-only baseline", "Where the model looks", "Masked evaluation",
                    "Per source"):
        assert heading in texts(at.subheader)
    per_source = [d.value for d in at.dataframe if "source" in d.value.columns][-1]
    assert list(per_source["source"]) == ["synthetic"] and per_source["films"].sum() == len(test)
    assert per_source["accuracy"].iloc[0] == pytest.approx(acc)
    assert len(at.image) >= 2  # lung mask and CAM of the gallery's first film
    gallery = [m for m in texts(at.markdown) if "of the CAM inside the lungs" in m]
    assert gallery and all(m.endswith("mask: predicted, model input 96×96 px") for m in gallery)


def test_a_second_visit_reuses_the_report(app):
    at = _audited(app)
    again = app(PAGE)  # another session: no button, the stored report is shown
    assert not [b for b in again.button if b.label == "Run the audit"]
    assert metric(again, "CNN test accuracy") == metric(at, "CNN test accuracy")


def test_bad_external_folder_is_a_clear_error(app, tmp_path):
    at = app(PAGE)
    at.text_input(key="au_external").set_value(str(tmp_path / "missing")).run()
    at.button[0].click().run()
    assert not at.exception
    said = [e for e in texts(at.error)
            if e.startswith("The last audit with these options could not finish:")]
    assert said and str(tmp_path / "missing") in said[0]
    assert [b for b in at.button if b.label == "Run the audit"]  # to try again at once
    # another visitor with the same options is told why, not only offered the button again
    again = app(PAGE)
    again.text_input(key="au_external").set_value(str(tmp_path / "missing")).run()
    said = [e for e in texts(again.error)
            if e.startswith("The last audit with these options could not finish:")]
    assert said and str(tmp_path / "missing") in said[0]
    assert [b for b in again.button if b.label == "Run the audit"]


def test_the_audit_reports_what_a_sweep_found_on_this_dataset(app, trained_run):
    """A stored sweep of this dataset (hand-made: 2 sources, 4 films each, one group a film):
    the page shows each candidate's LOSO gain over the baseline and names the source that no
    candidate reached."""
    import shutil

    import pandas as pd

    from cxrlib.core.csvio import write_counted
    from cxrlib.core.fsutil import write_json_atomic
    from cxrlib.sweep import study

    right = {"base": ([1, 1, 0, 0], [0, 0, 0, 0]), "better": ([1, 1, 1, 1], [0, 0, 0, 0])}
    folder = study.sweep_folder("audit-sweep")
    try:
        (folder / "candidates").mkdir(parents=True)
        write_json_atomic(folder / "spec.json", {"fingerprint": trained_run.fingerprint})
        records = []
        for name, (x, nih) in right.items():
            films = pd.DataFrame([{"rel_path": f"{s}/{k}", "group": f"{s}{k}", "source": s,
                                   "label": "Normal", "predicted": "Normal" if ok else "COVID-19"}
                                  for s, oks in (("X", x), ("NIH", nih)) for k, ok in enumerate(oks)])
            write_counted(folder / "candidates", study.loso_films_name(name), films)
            records.append({"name": "baseline" if name == "base" else name, "run_id": name,
                            "loso_expected_accuracy": (sum(x) / 4 + 0) / 2, "selected": name == "better",
                            "loso_per_source": {"X": sum(x) / 4, "NIH": 0.0}})
        write_json_atomic(folder / "result.json", {"candidates": records, "selection": "loso",
                                                   "chosen_name": "better", "chosen_test_accuracy": 0.9})
        at = _audited(app)
        assert not at.exception
        table = [d.value for d in at.dataframe if "gain over baseline" in d.value.columns][0]
        assert table["candidate"].tolist() == ["better"]
        assert table["gain over baseline"].iloc[0] == pytest.approx((1.0 - 0.5) / 2)  # X: 2/4 -> 4/4
        low, high = table["95 % CI low"].iloc[0], table["95 % CI high"].iloc[0]
        assert 0 <= low <= 0.25 <= high <= 0.5
        shown = " ".join(texts(at.markdown))
        assert "**Missing from the data:** with **NIH** held out (it holds Normal)" in shown
        assert "Baseline LOSO expected accuracy 0.250." in shown
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_cam_method_box_starts_on_the_one_default(app):
    """The audit's CAM method starts where Explain's does (ExplainConfig().method, the measured
    default of issue 25), not on whichever method the registry lists first."""
    from cxrlib.core.config import ExplainConfig
    from cxrlib.explain import CAM_METHODS

    assert ExplainConfig().method != next(iter(CAM_METHODS))  # else this test could not fail
    assert app(PAGE).selectbox(key="au_method").value == ExplainConfig().method


def test_an_audit_cut_short_by_a_server_restart_starts_again(trained_run, synthetic_dataset,
                                                              monkeypatch, tmp_path):
    """Issue 22: "a server restart resumes the queue". Training runs were resumed, audits were
    not: an audit running or waiting when the server stopped was lost, and its user found the
    Run button with no word. Its request is now kept on disk until it ends, and a new server
    process starts it again, as it was asked."""
    import threading
    from pathlib import Path

    from app_services import auditing
    from cxrlib.audit import pending

    release, asked = threading.Event(), []

    def fake_work(run, ds, *options):  # the audit's real work is tested above
        def work(progress):
            asked.append((run.id, Path(ds.root).resolve(), ds.task, options))
            release.wait(10)
            return "the report"
        return work

    monkeypatch.setattr(auditing, "_audit_work", fake_work)
    options = dict(external=None, max_films=50, method="gradcam", adversarial=0.0, masks=None)
    from app_services.data import open_dataset
    from cxrlib.core.config import DataConfig

    ds = open_dataset(DataConfig(root=str(synthetic_dataset), task="3class")).dataset
    job = auditing.start_audit(trained_run, ds, **options)
    [request] = pending.pending()  # on disk while it runs
    assert (request["run"], request["task"], request["options"]) == (trained_run.id, "3class",
                                                                     options)
    release.set()
    job._thread.join(5)  # noqa: SLF001
    assert pending.pending() == [] and auditing.resume_pending() == []  # ended: nothing to resume
    # what a server stopped mid-audit leaves: the request, and no job in the new process
    release.clear()
    asked.clear()
    key = auditing.audit_key(trained_run, **{**options, "max_films": 100})
    pending.remember(key, trained_run.id, str(synthetic_dataset), "3class",
                     {**options, "max_films": 100})
    [resumed] = auditing.resume_pending()
    assert auditing.audit_job(trained_run, **{**options, "max_films": 100}) is resumed
    release.set()
    resumed._thread.join(5)  # noqa: SLF001
    assert asked == [(trained_run.id, Path(synthetic_dataset).resolve(), "3class",
                      (None, 100, "gradcam", 0.0, None))]
    assert auditing.cached_audit(trained_run, **{**options, "max_films": 100}) == "the report"
    assert pending.pending() == []
    # a request whose dataset has gone is said on the page; one whose run has gone is dropped
    gone = dict(options, max_films=500)
    pending.remember(auditing.audit_key(trained_run, **gone), trained_run.id,
                     str(tmp_path / "moved"), "3class", gone)
    pending.remember(("no-such-run",), "0123456789abcdef", str(synthetic_dataset), "3class",
                     options)
    pending.remember(("odd-options",), trained_run.id, str(synthetic_dataset), "3class",
                     {**options, "no_such_option": 1})  # e.g. left by another version
    assert auditing.resume_pending() == [] and pending.pending() == []
    said = auditing.audit_failure(trained_run, **gone)
    assert said.startswith("it was cut short by a server restart and could not start again: ")
    assert str(tmp_path / "moved") in said


def test_resuming_never_stops_a_page_and_leaves_no_stale_request(trained_run, synthetic_dataset,
                                                                 monkeypatch):
    """Found in review: a request with options of odd types (a list) raised outside the guard,
    and a run changed since (a new key) left its old request to be resumed at every restart."""
    import threading

    from app_services import auditing
    from cxrlib.audit import pending

    release = threading.Event()
    monkeypatch.setattr(auditing, "_audit_work",
                        lambda *a: lambda progress: release.wait(10) and "report")
    options = dict(external=None, max_films=50, method="gradcam", adversarial=0.0, masks=None)
    pending.remember(("odd",), trained_run.id, str(synthetic_dataset), "3class",
                     {**options, "masks": ["a", "b"]})
    stale = ("an older stamp of the run",)  # the key the run had when it was asked
    pending.remember(stale, trained_run.id, str(synthetic_dataset), "3class", options)
    [job] = auditing.resume_pending()
    [kept] = pending.pending()  # under the run's key now; not the odd one, not the stale one
    assert kept["file"] == pending.request_file(auditing.audit_key(trained_run, **options))
    assert not pending.request_file(stale).exists()
    release.set()
    job._thread.join(5)  # noqa: SLF001
    assert pending.pending() == []
    monkeypatch.setattr(pending, "pending", lambda: 1 / 0)  # a store it cannot read
    assert auditing.resume_pending() == []


def test_an_audit_cut_short_again_and_again_is_not_started_at_every_restart(
        trained_run, synthetic_dataset, monkeypatch):
    """Left alone last stop, fixed now: an audit whose process is killed each time (the kernel's
    out-of-memory killer) kept its request, so every server restart ran it again, for ever. Each
    restart that starts it counts in its request; once it has been started again
    ``pending.MAX_RESUMES`` times, it is dropped and the Audit page says why. A user who starts it
    by hand starts the count again."""
    import threading

    from app_services import auditing
    from cxrlib.audit import pending
    from cxrlib.audit.background import AuditProcessLost

    release = threading.Event()

    def killed_work(*args):
        def work(progress):
            release.wait(10)
            raise AuditProcessLost("the audit's process ended without a report (exit code -9)")
        return work

    monkeypatch.setattr(auditing, "_audit_work", killed_work)
    options = dict(external=None, max_films=50, method="gradcam", adversarial=0.0, masks=None)
    key = auditing.audit_key(trained_run, **options)
    pending.remember(key, trained_run.id, str(synthetic_dataset), "3class", options)
    for restart in range(1, pending.MAX_RESUMES + 1):  # each one starts it, and it is killed
        [job] = auditing.resume_pending()
        assert [r["resumes"] for r in pending.pending()] == [restart]
        release.set()
        job._thread.join(5)  # noqa: SLF001
        release.clear()
        [left] = pending.pending()  # lost, not failed: kept for the next server
        assert left["resumes"] == restart
    assert auditing.resume_pending() == [] and pending.pending() == []  # not once more
    said = auditing.audit_failure(trained_run, **options)
    assert said == (f"it was cut short {pending.MAX_RESUMES + 1} times (by server restarts, or "
                    "its process was killed, as when memory runs out) and is not started again "
                    "by itself: run it again to retry.")
    # started by hand, it counts from nothing again, and the reason is gone
    from app_services.data import open_dataset
    from cxrlib.core.config import DataConfig

    ds = open_dataset(DataConfig(root=str(synthetic_dataset), task="3class")).dataset
    job = auditing.start_audit(trained_run, ds, **options)
    assert [r["resumes"] for r in pending.pending()] == [0]
    assert auditing.audit_failure(trained_run, **options) is None
    release.set()
    job._thread.join(5)  # noqa: SLF001
