"""The sidebar's dataset folder and task reach the browser with every script run (issue 22).

The defect: a browser that missed a run's output (a user who clicks before the first page has
drawn, under load) mounted the sidebar's dataset box at its empty default, because Streamlit
sends a keyed widget's value only in a run where the value was set; the browser's next rerun
sent the empty box back and the session lost its dataset ("No dataset folder is given yet").
Reproduced in ``bench/serve.py`` under load with every rerun request traced: the browser's first
request carried no widgets, its second an empty folder. Every run now sends both values.
"""
from __future__ import annotations

from app_fixtures import app, app_workspace  # noqa: F401

from app_services.core import TASK_LABELS


def test_every_run_sends_the_dataset_folder_and_the_task_to_the_browser(app, synthetic_dataset):
    at = app()
    at.radio(key="task").set_value("binary").run()
    for _ in range(2):  # later runs, in which nothing sets either value
        at.run()
        box, task = at.text_input(key="data_dir"), at.radio(key="task")
        assert box.proto.set_value and box.proto.value == str(synthetic_dataset)
        assert task.proto.set_value and task.proto.raw_value == TASK_LABELS["binary"]
