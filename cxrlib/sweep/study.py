"""Running a sweep: every candidate an ordinary cached run, scored without the test split, one
chosen by the rule declared before anything trained; only then is its test split read.

A sweep lives in ``models/sweeps/<name>/`` of the workspace:

* ``spec.json``: the spec and the selection rule, written before the first candidate trains.
  Running the same name again resumes it; a different spec or rule under that name is refused.
* ``candidates/<run_id>.json``: one record per finished candidate (written atomically when its
  scores are complete), and ``candidates/<run_id>-loso.csv`` its per-film LOSO predictions
  (:func:`loso_films`; the paired bootstrap of LOSO gains, :mod:`cxrlib.sweep.gains`). A killed
  sweep resumes after its last record: a finished candidate is neither retrained nor rescored
  (and its run is cached anyway).
* ``status.json``: state (``running`` / ``done`` / ``cancelled`` / ``failed``), the candidate
  being worked on, ``done`` / ``total``, the sweep's pid. ``cancel`` (a file) asks it to stop:
  the candidate being trained is cancelled like any run.
* ``result.json`` and ``leaderboard.csv``: the leaderboard and the choice.

Each candidate is scored on what does not touch the test split (:func:`score_run`): validation
loss and accuracy (the epoch whose weights the run kept), leave-one-source-out
(:func:`cxrlib.audit.loso.leave_one_source_out` with ``read_test=False``: each held-out
source scored on its films outside the test split), the source probe
on the training and validation films (:func:`cxrlib.audit.source_probe.source_probe`) and the
train time. :func:`select` applies the rule; :func:`read_test_figures` is the one place a
sweep reads a run's test figures, called once, for the chosen run.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from cxrlib.core import paths
from cxrlib.core.clock import now_iso
from cxrlib.core.fsutil import read_json, write_json_atomic
from cxrlib.sweep.scoring import (external_figures, leaderboard, read_test_figures,  # noqa: F401
                                  score_run, select)
from cxrlib.sweep.space import Candidate, SweepSpec, candidates


class SweepCancelled(RuntimeError):
    """The sweep was asked to stop (its ``cancel`` file)."""


def sweeps_dir() -> Path:
    """``models/sweeps`` of the workspace."""
    return paths.workspace() / "models" / "sweeps"


def sweep_folder(name: str) -> Path:
    return sweeps_dir() / name


def resolve_selection(selection: str, n_sources: int) -> str:
    """``auto`` is ``loso`` with at least 3 sources, else ``validation``."""
    if selection == "auto":
        return "loso" if n_sources >= 3 else "validation"
    if selection == "loso" and n_sources < 2:
        raise ValueError("selection 'loso' needs a dataset with at least two sources")
    return selection


def request_cancel(name: str) -> bool:
    """Ask a running sweep to stop; False when there is no such sweep."""
    folder = sweep_folder(name)
    if not (folder / "spec.json").exists():
        return False
    (folder / "cancel").touch()
    return True


def run_sweep(spec: SweepSpec, *, data_root: str | None = None,
              progress: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) ``spec``; returns the result (also ``result.json``).

    Raises:
        ValueError: a different spec already holds the name, or the rule cannot apply.
        SweepCancelled: the ``cancel`` file appeared (status ``cancelled``; records kept).
    """
    from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415
    from cxrlib.data.identity import film_sources  # noqa: PLC0415
    from cxrlib.runs.registry import run_id  # noqa: PLC0415

    cands = candidates(spec, data_root)
    if not cands:
        raise ValueError("the sweep has no candidates")
    first = cands[0].config
    if any(c.config.split.val_fraction == 0 for c in cands):
        raise ValueError("a sweep needs a validation split (val_fraction > 0): with none the "
                         "test split would stand in for it")
    ds = scan_dataset(first.data.root, bacterial=first.data.bacterial).for_task(first.data.task)
    n_sources = int(film_sources(ds.manifest).nunique())
    rule = resolve_selection(spec.selection, n_sources)
    folder = sweep_folder(spec.name)
    declared = json.loads(json.dumps({"spec": spec.to_dict(), "data": str(first.data.root),
                                      "selection": rule, "fingerprint": ds.fingerprint,
                                      "sources": n_sources}, default=str))
    old = read_json(folder / "spec.json", default=None) if (folder / "spec.json").exists() else None
    if old is not None and old != declared:
        raise ValueError(f"sweep {spec.name!r} exists with another spec, data or selection rule "
                         f"({folder / 'spec.json'}); choose another name")
    (folder / "candidates").mkdir(parents=True, exist_ok=True)
    (folder / "cancel").unlink(missing_ok=True)
    write_json_atomic(folder / "spec.json", declared)  # the rule, before anything trains
    t0, records = time.perf_counter(), []
    status = {"state": "running", "pid": os.getpid(), "total": len(cands), "done": 0,
              "selection": rule, "started": now_iso(), "candidate": None, "error": None}

    def report(**fields):
        status.update(fields, updated=now_iso())
        write_json_atomic(folder / "status.json", status)
        if progress:
            progress(dict(status))

    try:
        for k, cand in enumerate(cands):
            if (folder / "cancel").exists():
                raise SweepCancelled(f"sweep {spec.name} cancelled")
            rec = _record_path(folder, cand, ds, run_id)
            if rec is not None and rec.exists():
                records.append(read_json(rec))
                report(done=k + 1, candidate=cand.name)
                continue
            if k and spec.minutes is not None and time.perf_counter() - t0 > 60 * spec.minutes:
                report(message=f"budget of {spec.minutes:g} min spent: {k} of {len(cands)} candidates")
                break
            report(done=k, candidate=cand.name, message=f"training {cand.name}")
            record = evaluate_candidate(cand, ds, folder, report)
            if spec.external:  # scored for the leaderboard, never for the choice
                report(message=f"external folder for {cand.name}")
                record.update(external_figures(record["run_id"], spec.external))
            write_json_atomic(folder / "candidates" / f"{record['run_id']}.json", record)
            records.append(record)
            report(done=k + 1)
    except SweepCancelled:
        report(state="cancelled", message="cancelled by request")
        raise
    except BaseException as exc:
        report(state="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    chosen = select(records, rule)
    test = read_test_figures(_run(chosen["run_id"])) if chosen else {}
    for r in records:
        r["selected"] = chosen is not None and r["run_id"] == chosen["run_id"]
    result = {"name": spec.name, "selection": rule, "sources": n_sources,
              "candidates": records, "chosen": chosen["run_id"] if chosen else None,
              "chosen_name": chosen["name"] if chosen else None,
              "chosen_test_accuracy": test.get("accuracy"), "chosen_test_macro_auc": test.get("macro_auc"),
              "sweep_s": round(time.perf_counter() - t0, 2)}
    write_json_atomic(folder / "result.json", result)
    leaderboard(records).to_csv(folder / "leaderboard.csv", index=False)
    report(state="done", done=len(records), message=f"chose {result['chosen_name']}")
    return result


def _record_path(folder: Path, cand: Candidate, ds, run_id) -> Path | None:
    """The record of a candidate whose config needs nothing learned first (a standardisation
    scale is learned from the data: its run id is known only then)."""
    if cand.config.preprocess.standardise != "none" and not cand.config.preprocess.standard_scale:
        from cxrlib.training.standardisation import resolve_standardisation  # noqa: PLC0415

        cand.config = resolve_standardisation(cand.config, dataset=ds)
    return folder / "candidates" / f"{run_id(cand.config, ds.fingerprint)}.json"


def evaluate_candidate(cand: Candidate, ds, folder: Path, report) -> dict:
    """Train (or reuse) the candidate's run and score it without its test split."""
    from cxrlib.runs import runner  # noqa: PLC0415

    def follow(status: dict) -> None:
        if (folder / "cancel").exists() and run.state not in ("done", "failed", "cancelled"):
            run.request_cancel()
        report(run_state=status.get("state"), run_message=status.get("message"))

    from cxrlib.runs.registry import create_run  # noqa: PLC0415

    run = create_run(cand.config, ds.fingerprint)
    runner.train_foreground(cand.config, fingerprint=ds.fingerprint, on_status=follow, run=run)
    state = run.state
    if state == "cancelled" or (folder / "cancel").exists():
        raise SweepCancelled(f"sweep cancelled while training {cand.name}")
    if state != "done":
        raise RuntimeError(f"candidate {cand.name} (run {run.id}) {state}: {run.status().get('error')}")
    report(message=f"leave-one-source-out of {cand.name}")
    record = {"name": cand.name, "run_id": run.id, "settings": cand.settings, **score_run(run)}
    films = record.pop("loso_predictions", None)
    if films is not None and len(films):  # before the record: a record implies its films
        from cxrlib.core.csvio import write_counted  # noqa: PLC0415

        write_counted(folder / "candidates", loso_films_name(run.id), films)
    _tensorboard(run, folder.name, record)
    return record


def loso_films_name(run_id: str) -> str:
    """The file, in ``candidates/``, of a candidate's per-film LOSO predictions."""
    return f"{run_id}-loso.csv"


def loso_films(name: str, run_id: str):
    """A candidate's per-film LOSO predictions (rel_path, group, label, source, predicted),
    or None when the sweep stored none (a sweep from before they were stored)."""
    from cxrlib.core.csvio import read_counted  # noqa: PLC0415

    folder = sweep_folder(name) / "candidates"
    return read_counted(folder, loso_films_name(run_id)) if (folder / loso_films_name(run_id)).is_file() else None


def _tensorboard(run, sweep: str, record: dict) -> None:
    """The run's curves and the sweep's figures for it as TensorBoard scalars (derived files:
    a failure to write them never stops the sweep)."""
    try:
        from cxrlib.runs.tensorboard import write_run_scalars, write_sweep_scalars  # noqa: PLC0415

        write_run_scalars(run)
        write_sweep_scalars(run, sweep, record)
    except Exception:  # noqa: BLE001, S110
        pass


def start_background(spec: SweepSpec) -> int:
    """Run ``spec`` in a detached ``python -m cxrlib sweep`` process (its spec saved as
    ``request.json``, its output in ``sweep.log``); returns the process id."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    folder = sweep_folder(spec.name)
    folder.mkdir(parents=True, exist_ok=True)
    request = folder / "request.json"
    write_json_atomic(request, spec.to_dict())
    with open(folder / "sweep.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cxrlib", "sweep", str(request)],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=str(paths.PROJECT_ROOT))
    return proc.pid


def list_sweeps() -> list[str]:
    """Names of the sweeps in the workspace, newest first."""
    root = sweeps_dir()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "spec.json").is_file()]
    return [p.name for p in sorted(found, key=lambda p: (p / "spec.json").stat().st_mtime, reverse=True)]


def sweep_result(name: str) -> dict | None:
    """``result.json`` of a finished sweep, or None."""
    path = sweep_folder(name) / "result.json"
    return read_json(path, default=None) if path.is_file() else None


def sweep_status(name: str) -> dict | None:
    folder = sweep_folder(name)
    if not (folder / "spec.json").exists():
        return None
    return read_json(folder / "status.json", default={}) or {}


def _run(run_id: str):
    from cxrlib.runs.registry import get_run  # noqa: PLC0415

    return get_run(run_id)


def dumps(result: dict) -> str:
    return json.dumps(result, sort_keys=True, default=str)
