"""Per-source metrics of a run's predictions, and the external-set check."""
from __future__ import annotations

import pandas as pd

from cxrlib.audit.findings import finding
from cxrlib.data.identity import film_sources
from cxrlib.evaluation.core import own_test_accuracy


def source_of(predictions: pd.DataFrame, manifest: pd.DataFrame | None = None) -> pd.Series:
    """The source of each prediction row (:func:`cxrlib.data.identity.film_sources`, the rule
    leave-one-source-out uses), with the manifest's ``source`` column when the predictions have
    none. Pass every row (all splits): the sources are named on the whole set."""
    frame = predictions
    has_own = "source" in frame and frame["source"].fillna("").astype(str).str.len().gt(0).any()
    if not has_own and manifest is not None and "source" in manifest:
        lookup = dict(zip(manifest["rel_path"].astype(str), manifest["source"].fillna("").astype(str)))
        frame = frame.assign(source=frame["rel_path"].astype(str).map(lookup).fillna("").to_numpy())
    return film_sources(frame)


def per_source_metrics(predictions: pd.DataFrame, manifest: pd.DataFrame | None = None, *,
                       split: str | None = "test") -> pd.DataFrame:
    """Accuracy per source of a run's predictions.

    Args:
        predictions: ``Run.predictions()`` (``rel_path``, ``label``, ``pred``, optional ``split``).
        manifest: the dataset manifest, for its ``source`` column.
        split: only rows of this split (``None`` for all rows).

    Returns:
        One row per source, most films first: ``source``, ``films``, ``accuracy``, ``classes``
        (``"label (count)"`` joined by ``"; "``) and ``single_class`` (True when the source
        holds one class only: its accuracy is then that class's recall, and a model can earn
        it by recognising the source).
    """
    p = predictions.assign(source=source_of(predictions, manifest).to_numpy())
    if split is not None and "split" in p:
        p = p[p["split"].astype(str) == split]
    rows = []
    for source, g in p.groupby("source", sort=False):
        counts = g["label"].value_counts()
        rows.append({"source": source, "films": len(g),
                     "accuracy": float((g["label"].astype(str) == g["pred"].astype(str)).mean()),
                     "classes": "; ".join(f"{k} ({v})" for k, v in counts.items()),
                     "single_class": len(counts) == 1})
    cols = ["source", "films", "accuracy", "classes", "single_class"]
    return pd.DataFrame(rows, columns=cols).sort_values(["films", "source"], ascending=[False, True]).reset_index(drop=True)


def seen_digests(run, manifest: pd.DataFrame | None = None) -> set[str]:
    """Content digests of the films ``run`` trained or validated on (``train`` and ``val`` rows of
    its split.csv), from ``manifest`` (default: its dataset, scanned) by ``rel_path``."""
    if manifest is None:
        from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415

        manifest = scan_dataset(run.config.data.root, bacterial=run.config.data.bacterial).manifest
    split = run.split_table()
    fitted = set(split.loc[split["split"].isin(["train", "val"]), "rel_path"].astype(str))
    digests = manifest.loc[manifest["rel_path"].astype(str).isin(fitted), "digest"].astype(str)
    return set(digests) - {""}


def external_check(run, folder, *, model=None, manifest: pd.DataFrame | None = None,
                   progress=None) -> dict:
    """Evaluate a run on another labelled folder and compare with its own test accuracy.

    Films of the folder the run trained or validated on (the same content: :func:`seen_digests`)
    are counted and left out of every figure; when nothing is left there is no accuracy.

    Args:
        run: a :class:`cxrlib.runs.run.Run` that is done.
        folder: a labelled dataset folder (any layout :func:`cxrlib.data.datasets.scan_dataset` reads).
        model: the run's loaded model (default ``run.load_model()``).
        manifest: the run's dataset manifest (default: scanned), for :func:`seen_digests`.
        progress: ``progress(done, total)`` while predicting.

    Returns:
        ``external_accuracy`` (None when every film was seen), ``own_test_accuracy``, ``drop``
        (own - external), ``films`` (those figures are on), ``seen_films`` (left out),
        ``per_class_recall`` (classes the folder holds), ``verdict``, ``predictions``
        (DataFrame, with the folder's manifest columns) and ``subgroups``: the
        :class:`cxrlib.evaluation.subgroups.SubgroupAnalysis` of the folder by its usual
        columns (a recall of 0.78 that is 1.00 in one subgroup and 0.05 in another is the
        finding, not the average), or ``None`` when it has none with two values.
    """
    from cxrlib.evaluation.metrics import evaluate  # noqa: PLC0415
    from cxrlib.evaluation.predict import evaluate_folder  # noqa: PLC0415
    from cxrlib.evaluation.subgroups import default_columns, subgroup_analysis  # noqa: PLC0415

    metrics, predictions = evaluate_folder(run, folder, model=model, progress=progress)
    ok = predictions[predictions.get("error", "") == ""] if "error" in predictions else predictions
    seen = (ok["digest"].astype(str).isin(seen_digests(run, manifest)) if "digest" in ok
            else pd.Series(False, index=ok.index))
    n_seen, ok = int(seen.sum()), ok[~seen.to_numpy()]
    own, _ = own_test_accuracy(run)
    if ok.empty:
        verdict = finding(True, "external", f"{folder} is no external set: all {n_seen} films of it "
                                            f"are films the run trained or validated on (the same "
                                            f"content), so it gives no accuracy on new data.")
        return {"external_accuracy": None, "own_test_accuracy": own, "drop": None, "films": 0,
                "seen_films": n_seen, "per_class_recall": {}, "verdict": verdict,
                "predictions": predictions, "subgroups": None}
    if n_seen:
        metrics = evaluate(ok["label"].to_numpy(), ok[[f"p_{c}" for c in run.classes]].to_numpy(),
                           run.classes)
    external = float(metrics.get("accuracy", (ok["label"] == ok["pred"]).mean()))
    drop = own - external if own == own else float("nan")
    recall = {c: row["sensitivity"] for c, row in metrics["per_class"].items()
              if row["sensitivity"] is not None}
    by = default_columns(ok)
    subgroups = subgroup_analysis(ok, run.classes, by) if by else None
    where = (f"on the {len(ok)} films of {folder} the run never trained or validated on ({n_seen} "
             f"of the {n_seen + len(ok)} films are its own training or validation films)"
             if n_seen else f"on {folder}")
    if drop == drop and drop >= 0.1:
        verdict = finding(True, "external", f"Accuracy falls from {own:.0%} on the run's own "
                                            f"test split to {external:.0%} {where}: the model "
                                            f"does not carry over to new data.")
    elif drop == drop:
        verdict = finding(bool(n_seen), "external", f"Accuracy {where} is {external:.0%} (own test "
                                                    f"split {own:.0%}).")
    else:
        verdict = finding(bool(n_seen), "external", f"Accuracy {where} is {external:.0%}.")
    return {"external_accuracy": external, "own_test_accuracy": own, "drop": drop,
            "films": int(len(ok)), "seen_films": n_seen, "per_class_recall": recall,
            "verdict": verdict, "predictions": predictions, "subgroups": subgroups}
