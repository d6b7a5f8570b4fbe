"""Home page and the shared sidebar: dataset validation, the demo offer, the synthetic demo."""
from __future__ import annotations

import pytest
from app_fixtures import app, app_workspace, texts  # noqa: F401 (fixtures)

from cxrlib.data.synthetic import DEMO_README

PAGES = ["pages/dataset.py", "pages/preprocessing.py", "pages/training.py",
         "pages/evaluation.py", "pages/explain.py", "pages/audit.py"]


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
