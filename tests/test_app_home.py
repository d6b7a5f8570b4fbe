"""Home page and the shared sidebar: dataset validation, the demo offer, the synthetic demo."""
from __future__ import annotations

from pathlib import Path

import pytest
from app_fixtures import app, app_workspace, texts  # noqa: F401 (fixtures)

from cxrlib.data.synthetic import DEMO_README

PAGES = ["views/dataset.py", "views/preprocessing.py", "views/training.py",
         "views/evaluation.py", "views/explain.py", "views/audit.py"]


def test_empty_folder_offers_the_demo(app, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("put data here")
    at = app(data_dir=empty)
    assert texts(at.title) == ["CXR Explorer"]
    assert any("holds no images and no class folders" in w for w in texts(at.sidebar.warning))
    assert [b.label for b in at.button] == ["Build the synthetic demo dataset"]
    layouts = " ".join(texts(at.markdown))
    for layout in ("One folder per class", "COVID-19 Radiography Database", "chest_xray",
                   "manifest.csv"):
        assert layout in layouts


def test_demo_button_builds_labelled_data_and_switches_to_it(app, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_WORKSPACE", str(tmp_path / "ws"))
    empty = tmp_path / "empty"
    empty.mkdir()
    at = app(data_dir=empty)
    at.button[0].click().run()
    demo = tmp_path / "ws" / "data" / "synthetic-demo"
    assert at.session_state["data_dir"] == str(demo)
    assert (demo / "README.txt").read_text() == DEMO_README
    assert any("synthetic demo dataset" in w for w in texts(at.warning))
    images = {m.label: m.value for m in at.metric}
    assert images == {"Images": "120", "COVID-19": "40", "Normal": "40", "Viral Pneumonia": "40"}
    assert any(s.startswith("120 images") for s in texts(at.sidebar.success))


def test_demo_never_overwrites_a_user_folder(app, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_WORKSPACE", str(tmp_path / "ws"))
    mine = tmp_path / "ws" / "data" / "synthetic-demo"
    mine.mkdir(parents=True)
    (mine / "README.txt").write_text("my own notes")
    empty = tmp_path / "empty"
    empty.mkdir()
    at = app(data_dir=empty)
    at.button[0].click().run()
    assert (mine / "README.txt").read_text() == "my own notes"
    assert at.session_state["data_dir"] == str(tmp_path / "ws" / "data" / "synthetic-demo-2")


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist"),
    ("file", "is a file, not a folder"),
    ("unknown", "is not a dataset CXR Explorer can read"),
])
def test_bad_folder_is_explained_in_the_sidebar(app, tmp_path, kind, message):
    target = tmp_path / kind
    if kind == "file":
        target.write_text("not a folder")
    elif kind == "unknown":
        (target / "holiday photos").mkdir(parents=True)
        (target / "holiday photos" / "notes.txt").write_text("no images")
    at = app(data_dir=target)
    errors = texts(at.sidebar.error)
    assert len(errors) == 1 and message in errors[0], errors
    assert "Build the synthetic demo dataset" in [b.label for b in at.button]


@pytest.mark.parametrize("typed, message", [
    ("~nosuchuser/x", "does not exist"),  # expanduser raised RuntimeError
    ("/tmp/" + "a" * 4000, "cannot be used as a folder path: file name too long"),  # OSError
    ("/tmp/a\0b", "cannot be used as a folder path: it holds a NUL character"),  # ValueError
])
def test_a_folder_path_the_system_cannot_take_is_one_line_not_an_exception_box(app, typed, message):
    """Found by the app's hostile hunt: each of these put an exception box on every page
    (``~nosuchuser`` from the sidebar, a NUL from the address's ``?data=``)."""
    at = app(data_dir=typed)  # the fixture asserts that no exception box is drawn
    errors = texts(at.sidebar.error)
    assert len(errors) == 1 and message in errors[0], errors


@pytest.mark.parametrize("page", PAGES)
def test_pages_without_a_dataset_point_to_home(app, tmp_path, page):
    at = app(page, data_dir=tmp_path / "nowhere")
    assert any(w.startswith("No dataset is open") for w in texts(at.warning))
    assert not at.get("plotly_chart")


def test_sidebar_shows_dataset_task_and_current_run(app, synthetic_dataset):
    at = app()
    assert texts(at.sidebar.success)[0].startswith("72 images · 3 classes")
    assert at.radio(key="task").value == "3class"
    assert at.selectbox(key="run_id").value is not None
    at.radio(key="task").set_value("binary").run()
    assert texts(at.sidebar.success)[0].startswith("48 images · 2 classes")
    assert at.metric[0].value == "48"


def test_a_fresh_machine_opens_the_bundled_sample_and_offers_one_quick_run(app, monkeypatch, workspace):
    from app_fixtures import ROOT, wait_for

    from cxrlib.core import paths
    from cxrlib.runs import registry, runner

    monkeypatch.delenv("CXR_DATA_DIR", raising=False)
    assert paths.default_data_dir() == paths.SAMPLE_DIR  # data/ holds only its README
    monkeypatch.setenv(runner.TRAIN_ENTRY_ENV, f"{ROOT / 'tests' / 'app_fixtures.py'}:fake_trainer")
    at = app(data_dir=paths.default_data_dir())
    assert any(s.startswith("120 images") for s in texts(at.sidebar.success))
    assert any("bundled sample" in s for s in texts(at.info))
    images = {m.label: m.value for m in at.metric}
    assert images == {"Images": "120", "COVID-19": "40", "Normal": "40", "Viral Pneumonia": "40"}
    [b for b in at.button if b.label == "Train a quick MobileNetV2 run on the sample"][0].click().run()
    runs = registry.list_runs()
    assert len(runs) == 1
    cfg = runs[0].config
    assert (cfg.model.family, cfg.model.weights, cfg.train.mode) == ("mobilenetv2", "imagenet", "head")
    assert cfg.preprocess.steps == ("white_balance",) and cfg.split.kind == "grouped"
    assert wait_for(lambda: runs[0].status().get("epoch") == 1, 60)
    at.run()
    assert any(p.text.startswith(f"Quick run `{runs[0].id[:8]}`") for p in at.progress)
    assert not [b for b in at.button if b.label.startswith("Train a quick")]
    runner.cancel(runs[0].id, grace_s=5)


def test_data_roots_limit_the_sidebar_and_reveal_nothing_outside(app, synthetic_dataset, tmp_path,
                                                                  monkeypatch):
    """CXR_DATA_ROOTS (issue 12): a folder outside the allowed roots gets the same answer whether
    it exists or not, and no page opens it; a folder inside opens as usual."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv("CXR_DATA_ROOTS", str(allowed))
    for target in (synthetic_dataset, tmp_path / "no-such-folder", Path("/etc")):
        at = app("views/dataset.py", data_dir=target)
        assert texts(at.sidebar.error) == [
            f"{target} is outside the folders this installation may open (CXR_DATA_ROOTS: "
            f"{allowed}). Give a folder inside one of them."]
        assert any(w.startswith("No dataset is open") for w in texts(at.warning))
    monkeypatch.setenv("CXR_DATA_ROOTS", str(synthetic_dataset.parent))
    at = app(data_dir=synthetic_dataset)
    assert texts(at.sidebar.success)[0].startswith("72 images · 3 classes")
