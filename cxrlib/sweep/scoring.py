"""How a sweep scores and chooses its candidates without reading their test splits.

:func:`score_run` gives a finished candidate's validation, leave-one-source-out (test films
unscored) and source-probe figures; :func:`select` applies the declared rule;
:func:`read_test_figures` is the sweep's one read of a test split, for the chosen run, after the
choice; :func:`leaderboard` is the table people read (no test figures).
"""
from __future__ import annotations

import math
from datetime import datetime


def score_run(run) -> dict:
    """Validation, leave-one-source-out and source-probe figures of a finished head-mode run,
    none of which reads its test split; ``loso_predictions`` holds LOSO's per-film
    predictions (a table, :attr:`cxrlib.audit.loso.LosoResult.predictions`)."""
    from cxrlib.audit.loso import leave_one_source_out, loso_sources, run_features  # noqa: PLC0415
    from cxrlib.audit.source_probe import source_probe  # noqa: PLC0415

    hist = run.history()
    best = hist.loc[hist["val_loss"].astype(float).idxmin()] if len(hist) and "val_loss" in hist else None
    data = run_features(run)
    m = data.manifest
    try:
        sources = loso_sources(m).to_numpy()
    except ValueError:  # one source: nothing to hold out, nothing to probe
        sources = None
    loso = leave_one_source_out(run, data=data, read_test=False) if sources is not None else None
    probe_acc = None
    if sources is not None:
        rows = m["split"].isin(["train", "val"]).to_numpy()
        try:
            probe_acc = source_probe(data.features[0][rows], sources[rows], m["group"].to_numpy()[rows],
                                     m["label"].to_numpy()[rows], seed=run.config.train.seed)["accuracy"]
        except ValueError:
            probe_acc = None
    per_source = ({r["source"]: r["held_out_accuracy"] for r in loso.table.to_dict("records")}
                  if loso is not None else {})
    # per-film LOSO predictions (not JSON: the sweep stores them as a CSV beside the record)
    return {"loso_predictions": loso.predictions if loso is not None else None,
            "val_loss": None if best is None else float(best["val_loss"]),
            "val_accuracy": None if best is None else float(best.get("val_accuracy", math.nan)),
            "loso_expected_accuracy": loso.expected_accuracy if loso else None,
            "loso_per_source": per_source, "loso_s": round(loso.seconds, 2) if loso else None,
            "source_probe_accuracy": probe_acc,
            "train_s": _train_seconds(run)}


def _train_seconds(run) -> float | None:
    """Start to end of the run's (last) training, from status.json (metrics.json holds test
    figures, so the sweep does not read it for this)."""
    s = run.raw_status()
    try:
        end = s.get("finished") or s["updated"]
        return round((datetime.fromisoformat(end) - datetime.fromisoformat(s["started"])).total_seconds(), 1)
    except (KeyError, TypeError, ValueError):
        return None


def select(records: list[dict], rule: str) -> dict | None:
    """The chosen record: ``loso``: highest ``loso_expected_accuracy``, ties by lowest
    ``val_loss``; ``validation``: lowest ``val_loss``. Records without the figure are last."""
    def num(v, worst):
        return worst if v is None or v != v else float(v)

    if not records:
        return None
    if rule == "loso":
        return min(records, key=lambda r: (-num(r.get("loso_expected_accuracy"), -math.inf),
                                           num(r.get("val_loss"), math.inf)))
    return min(records, key=lambda r: num(r.get("val_loss"), math.inf))


def external_figures(run_id: str, folder: str) -> dict:
    """A candidate's accuracy and macro AUC on an external labelled folder (shown in the
    leaderboard, labelled as not used for the choice; the choice reads neither)."""
    from cxrlib.evaluation.predict import evaluate_folder  # noqa: PLC0415

    from cxrlib.runs.registry import get_run  # noqa: PLC0415

    metrics, _ = evaluate_folder(get_run(run_id), folder)
    return {"external_accuracy": metrics.get("accuracy"),
            "external_macro_auc": (metrics.get("auc") or {}).get("macro")}


def read_test_figures(run) -> dict:
    """The run's test-split accuracy and macro AUC (metrics.json): the sweep's one read of a
    test split, for the chosen run, after the choice."""
    m = run.metrics()
    return {"accuracy": m.get("accuracy"), "macro_auc": m.get("macro_auc")}


def leaderboard(records: list[dict]):
    """One row per candidate: name, run, settings, validation, LOSO (expected and per source),
    source probe, train time and selection; no test figures."""
    import pandas as pd  # noqa: PLC0415

    rows = []
    for r in records:
        row = {"name": r["name"], "run_id": r["run_id"],
               "settings": "; ".join(f"{k}={v}" for k, v in r.get("settings", {}).items()),
               "val_loss": r.get("val_loss"), "val_accuracy": r.get("val_accuracy"),
               "loso_expected_accuracy": r.get("loso_expected_accuracy"),
               "source_probe_accuracy": r.get("source_probe_accuracy"), "train_s": r.get("train_s"),
               "selected": bool(r.get("selected"))}
        if "external_accuracy" in r:  # a folder from elsewhere: never used for the choice
            row.update({"external_accuracy (not used for the choice)": r["external_accuracy"],
                        "external_macro_auc (not used for the choice)": r.get("external_macro_auc")})
        row.update({f"loso[{k}]": v for k, v in (r.get("loso_per_source") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)
