"""Run services: the registry seen from the app, the run picker, progress. The training form is
:mod:`.training_form`'s."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import streamlit as st

from cxrlib.core.config import RunConfig

from cxrlib.core import paths
from cxrlib.runs import queue as run_queue
from cxrlib.runs import registry

from .address import from_address, to_address
from .core import DATA_DIR, RUN_ID, TASK, notify, safe
from .data import DataStatus


def list_runs(task: str | None = None) -> list:
    """Runs of the registry (newest first as the registry orders them), optionally of one task."""
    runs = registry.list_runs()
    return [r for r in runs if task is None or safe(lambda: r.config.data.task) == task]


def run_stamp(run) -> str:
    """Cache key of a run's artefacts: its id, state and the mtime of its status file."""
    status = safe(run.status, {}) or {}
    files = [p for p in (Path(run.folder) / n for n in ("status.json", "predictions.csv"))
             if p.exists()]
    return f"{run.id}:{status.get('state')}:" + ":".join(str(p.stat().st_mtime_ns) for p in files)


def get_run(run_id: str | None):
    """The run of ``run_id`` or ``None``."""
    if not run_id:
        return None
    try:
        return registry.get_run(run_id)
    except KeyError:
        return None


DELETED_HERE = "_run_deleted_here"
"""Session key of the run this session deleted (Training's delete): no news to its user."""


def gone_message(run_id: str | None, then: str) -> str | None:
    """``Run `1a2b3c4d` was deleted meanwhile; {then}`` when ``run_id`` (shown until now) is no
    longer in the registry and this session did not delete it itself, else None."""
    if not run_id or get_run(run_id) is not None or st.session_state.get(DELETED_HERE) == run_id:
        return None
    return f"Run `{run_id[:8]}` was deleted meanwhile; {then}"


def run_title(run) -> str:
    """Short id, model family / mode and split kind, e.g. ``1a2b3c4d · tiny/head, grouped split``."""
    cfg = safe(lambda: run.config)
    what = f" · {cfg.model.label}/{cfg.train.mode}, {cfg.split.kind} split" if cfg else ""
    return run.id[:8] + what


def run_label(run) -> str:
    """One line naming a run in pickers: :func:`run_title`, state and accuracy."""
    status = safe(run.status, {}) or {}
    acc = (safe(run.metrics, {}) or {}).get("accuracy") if status.get("state") == "done" else None
    bits = [run_title(run), status.get("state", "?")]
    if acc is not None:
        bits.append(f"acc {acc:.3f}")
    return " · ".join(bits)


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _model(stamp: str, run_id: str):
    return get_run(run_id).load_model()


def model(run):
    """The run's best model (cached per run and state)."""
    return _model(run_stamp(run), run.id)


@st.cache_data(max_entries=16, show_spinner=False)
def _predictions(stamp: str, run_id: str):
    return get_run(run_id).predictions()


def predictions(run):
    """The run's test-split predictions (cached)."""
    return _predictions(run_stamp(run), run.id)


QUEUE_KEEPER_PERIOD_S = 5.0


@st.cache_resource
def queue_keeper() -> threading.Thread:
    """One thread per server process that keeps the queue of background runs moving: it frees
    the slots of processes that died without a word (SIGKILL, a reboot) and starts the next
    waiting run, so a restarted server resumes the queue it left. It keeps the workspace it was
    started in (a server's never changes; a test process's does, and others are not its own)."""
    workspace = paths.workspace()

    def keep() -> None:
        while True:
            if paths.workspace() == workspace:
                run_queue.dispatch_quietly()
            time.sleep(QUEUE_KEEPER_PERIOD_S)

    thread = threading.Thread(target=keep, name="cxr-queue-keeper", daemon=True)
    thread.start()
    return thread


def current_run_ui(status: DataStatus) -> None:
    """Sidebar picker of the current run: finished runs of this dataset and task. The dataset
    folder, the task and the run are kept in the address (``?data=``, ``?task=``, ``?run=``): a
    reload or a link keeps them."""
    queue_keeper()
    to_address("data", str(st.session_state.get(DATA_DIR) or "").strip() or None)
    to_address("task", st.session_state.get(TASK))
    if status.level != "ok":
        st.session_state[RUN_ID] = None
        return
    runs = [r for r in dataset_runs(status.dataset, status.dataset.task)
            if (safe(r.status, {}) or {}).get("state") == "done" and r.problem() is None]
    if not runs:
        _switch_run(None)
        st.caption("No finished run on this dataset and task yet: start one on Training.")
        return
    ids = [r.id for r in runs]
    from_address("run", RUN_ID, valid=ids)  # a reload or a shared link keeps its run
    if st.session_state.get(RUN_ID) not in ids:
        _switch_run(ids[0])
    labels = {r.id: run_label(r) for r in runs}
    st.selectbox("Current run", ids, format_func=labels.get, key=RUN_ID)
    to_address("run", st.session_state[RUN_ID])


def _switch_run(run_id: str | None) -> None:
    """Make ``run_id`` the current run; the page says so when the one shown was deleted."""
    if note := gone_message(st.session_state.get(RUN_ID), f"showing run `{run_id[:8]}` instead."
                            if run_id else "no other finished run to show."):
        notify("warning", note)
    st.session_state[RUN_ID] = run_id


def require_run():
    """The sidebar's current run (finished), or a notice pointing to Training and a stop."""
    run = get_run(st.session_state.get(RUN_ID))
    if run is None:
        st.info("No finished run for this dataset and task yet. Train one on the Training page, "
                "then pick it as the current run in the sidebar.", icon=":material/model_training:")
        st.page_link("views/training.py", label="Go to Training", icon=":material/model_training:")
        st.stop()
    return run


def find_run(cfg: RunConfig, fingerprint: str):
    """The run of this exact configuration on this dataset, or None when it was never made."""
    return registry.find_run(cfg, fingerprint)


def start_run(cfg: RunConfig, fingerprint: str):
    """Start (or attach to, or return the finished) run of ``cfg`` in a background process."""
    from cxrlib.runs import runner  # noqa: PLC0415

    return runner.start(cfg, fingerprint=fingerprint)


def cancel_run(run) -> None:
    """Ask a run to stop and return at once; a background thread escalates to SIGTERM/SIGKILL
    if the training process does not stop by itself (the page never waits for it). A run that
    waits in the queue leaves it at once."""
    from cxrlib.runs import runner  # noqa: PLC0415

    if run_queue.cancel_waiting(run):
        return
    run.request_cancel()
    threading.Thread(target=runner.cancel, args=(run.id,), kwargs={"grace_s": 15.0},
                     name=f"cancel-{run.id}", daemon=True).start()


def runs_table(runs: list):
    """One row per run (``cxrlib.runs.registry.headline``, which never raises: a damaged run is
    a ``broken`` row naming its damaged file), newest first; ``problem`` is empty for sound runs."""
    import pandas as pd

    table = pd.DataFrame([registry.headline(r) for r in runs])
    if "queue" in table:  # a waiting run says where it is in the queue
        table["state"] = table["queue"].where(table["queue"].notna(), table["state"])
        table = table.drop(columns="queue")
    if "problem" in table:
        table["problem"] = table["problem"].fillna("")
    return table


def run_status(run) -> dict[str, Any]:
    """The run's status, with ``queue`` ("queued, position k of n") while it waits for a slot."""
    status = run.status()
    if status.get("state") == "queued":
        status = dict(status, queue=run_queue.describe(run.id))
    return status


def progress_text(status: dict[str, Any]) -> tuple[float, str]:
    """Fraction done and a one-line summary (epoch, loss, accuracy, ETA) of a run's status."""
    epoch, epochs = status.get("epoch") or 0, status.get("epochs") or 0
    step, steps = status.get("step") or 0, status.get("steps") or 0
    frac = ((max(epoch - 1, 0) + (step / steps if steps else 0)) / epochs) if epochs else 0.0
    bits = [status.get("queue") or status.get("state", "?")]
    if epochs:
        bits.append(f"epoch {epoch}/{epochs}")
    for name, value in (status.get("metrics") or {}).items():
        if isinstance(value, (int, float)):
            bits.append(f"{name} {value:.3f}")
    if status.get("eta_s") is not None:
        bits.append(f"ETA {int(status['eta_s']) // 60}:{int(status['eta_s']) % 60:02d}")
    if status.get("message"):
        bits.append(str(status["message"]))
    return min(max(frac, 0.0), 1.0), " · ".join(bits)


def dataset_runs(ds, task: str) -> list:
    """Runs made on this dataset (same fingerprint) for ``task``, newest first."""
    return [r for r in list_runs(task) if safe(lambda r=r: r.fingerprint) == ds.fingerprint]


def active_runs(ds, task: str) -> list:
    """Runs of this dataset and task that are queued or running."""
    return [r for r in dataset_runs(ds, task)
            if (safe(r.status, {}) or {}).get("state") in ("queued", "running")]


def leakage_warning(run) -> str | None:
    """The warning to show when a run's split puts patients (or duplicate groups) on both sides,
    or None (also when it has no split yet)."""
    leak = safe(lambda: run.leakage, {}) or {}
    if not (leak.get("patients_on_several_sides") or leak.get("groups_on_several_sides")):
        return None
    parts = []
    if leak.get("patients_on_several_sides"):
        parts.append(f"{leak['patients_on_several_sides']} of {leak.get('patients_total', '?')} "
                     f"patients ({leak.get('patient_images', '?')} films)")
    if leak.get("groups_on_several_sides"):
        parts.append(f"{leak['groups_on_several_sides']} duplicate/patient groups "
                     f"({leak.get('group_images', '?')} films)")
    examples = ", ".join(map(str, leak.get("patient_examples") or leak.get("group_examples") or []))
    return (f"Run `{run.id[:8]}`: its split puts {' and '.join(parts)} on more than one side "
            f"(e.g. {examples}). Its test metrics are optimistic: the model has seen these "
            "patients in training. Use the grouped split.")


def damaged_runs() -> list[tuple[Any, Any]]:
    """Runs of the registry with a damaged file, as ``(run, RunFileError)`` pairs.

    All of the registry's, not one dataset's: a run whose config.json is damaged cannot say
    which dataset it was made on.
    """
    found = []
    for run in registry.list_runs():
        damage = run.damage()
        if damage is not None:
            found.append((run, damage))
    return found


def runs_to_list(ds, task: str) -> list:
    """The Training page's table: this dataset's runs of ``task``, then every damaged run."""
    runs = dataset_runs(ds, task)
    return runs + [r for r, _ in damaged_runs() if r not in runs]


def delete_run(run_id: str) -> None:
    """Button callback: delete a finished, failed, cancelled or damaged run; a refusal (a run
    that is training) is kept in the session for the page to show."""
    try:
        target = registry.delete_run(registry.get_run(run_id))
        st.session_state[DELETED_HERE] = run_id
        st.session_state.pop("delete_error", None)
        if target is not None:  # a run "folder" that was a link: say what was and was not removed
            st.session_state["delete_note"] = (f"Run `{run_id}` was a link: the link was removed, "
                                               f"the folder it pointed to ({target}) was not deleted.")
    except (registry.RunBusy, registry.RunNotFound, OSError) as exc:
        st.session_state["delete_error"] = str(exc.args[0] if exc.args else exc)
