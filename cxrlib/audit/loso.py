"""Leave-one-source-out (LOSO): what accuracy to expect at a source the model has never seen.

A test split drawn from the same sources as the training films says little about a new
hospital: the model may have learned each source's look. LOSO trains the run's head once per
source with every film of that source held out (and every film sharing a patient, duplicate
group or near-duplicate cluster with it: :func:`cxrlib.data.identity.group_keys`), on the
run's own cached backbone features (:mod:`cxrlib.training.features`), with the run's head
configuration, split, seed and fit (:func:`cxrlib.training.head_fit.fit_head`, the engine's), and
scores it on the held-out source. The mean over sources is the *expected accuracy at an unseen
source*, reported next to the run's test-split accuracy.

A source that holds a single class can only measure that class's recall: its accuracy is the
share of its films the model assigns to the class, with no way to tell a model that recognises
the disease from one that calls everything from an unknown hospital that class.
Metrics come from :func:`cxrlib.evaluation.metrics.point_metrics` (the one accuracy path).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from cxrlib.core.classes import task_classes
from cxrlib.data.identity import film_sources
from cxrlib.evaluation.core import json_records, own_test_accuracy


@dataclass
class RunFeatures:
    """A head-mode run's films and their cached backbone features.

    Attributes:
        manifest: the task's films with ``split`` (from split.csv; ``excluded`` for films that
            did not decode) and ``group`` (the split's group key).
        features: ``float32 (copies + 1, N, D)`` as :func:`cached_features` returns them.
        head: the run's trained head (its architecture is what each fold trains afresh).
        classes: the task's classes.
    """

    manifest: pd.DataFrame
    features: np.ndarray
    head: object
    classes: tuple[str, ...]


def run_features(run, *, dataset=None, progress: Callable[[int, int], None] | None = None) -> RunFeatures:
    """Load a finished head-mode run's films, split and backbone features (cached: seconds).

    Raises:
        ValueError: the run's model has no frozen backbone (``small_cnn``), or the dataset's
            fingerprint is not the run's.
    """
    from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415
    from cxrlib.data.identity import group_keys  # noqa: PLC0415
    from cxrlib.models import backbone_and_head  # noqa: PLC0415
    from cxrlib.preprocessing.tensor_cache import load_tensors  # noqa: PLC0415
    from cxrlib.training.features import config_features  # noqa: PLC0415

    cfg = run.config
    ds = dataset or scan_dataset(cfg.data.root, bacterial=cfg.data.bacterial)
    if ds.task != cfg.data.task:
        ds = ds.for_task(cfg.data.task)
    if ds.fingerprint != run.fingerprint:
        raise ValueError(f"the dataset at {cfg.data.root} is not the one run {run.id} was trained on")
    feature_model, head = backbone_and_head(run.load_model())
    tensors = load_tensors(ds, cfg.preprocess)
    fs = config_features(feature_model, tensors.images, cfg, rel_paths=ds.manifest["rel_path"].tolist(),
                         fingerprint=ds.fingerprint, progress=progress)
    split = run.split_table()
    manifest = ds.manifest.reset_index(drop=True)
    lookup = split.set_index(split["rel_path"].astype(str))
    manifest["split"] = manifest["rel_path"].map(lookup["split"]).fillna("excluded").astype(str)
    bad = {p["rel_path"] for p in tensors.problems}
    manifest.loc[manifest["rel_path"].isin(bad), "split"] = "excluded"
    if "group" in lookup:
        manifest["group"] = manifest["rel_path"].map(lookup["group"]).astype(object)
    if "group" not in manifest or manifest["group"].isna().any():
        manifest["group"] = group_keys(manifest)
    return RunFeatures(manifest, fs.features, head, tuple(task_classes(cfg.data.task)))


def loso_sources(manifest: pd.DataFrame) -> pd.Series:
    """The source of every film (:func:`cxrlib.data.identity.film_sources`).

    Raises:
        ValueError: fewer than two sources can be told apart.
    """
    source = film_sources(manifest)
    if source.nunique() >= 2:
        return source
    raise ValueError("leave-one-source-out needs films from at least two sources (a manifest "
                     "'source' or 'source_repo' column, or one top-level folder per source)")


@dataclass
class LosoResult:
    """Result of :func:`leave_one_source_out`.

    Attributes:
        table: one row per held-out source (see :func:`leave_one_source_out`).
        expected_accuracy: mean held-out accuracy over sources (each source one new hospital).
        weighted_accuracy: the same weighted by films.
        test_accuracy: the run's own test-split accuracy (in distribution).
        adversarial: the source-adversarial weight the fold heads trained with (0: plain).
        seconds: wall time of the folds.
        predictions: one row per scored film (``rel_path``, ``source``, ``group`` (the
            split's group key), ``label``, ``predicted``): what each fold's head called the
            films of the source it held out (the unit of a paired bootstrap of LOSO gains,
            :mod:`cxrlib.sweep.gains`).
    """

    table: pd.DataFrame
    expected_accuracy: float | None
    weighted_accuracy: float | None
    test_accuracy: float | None
    adversarial: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dict(self) -> dict:
        """JSON values; ``sources`` holds the table's records."""
        rows = json_records(self.table)
        return {"expected_accuracy": self.expected_accuracy, "weighted_accuracy": self.weighted_accuracy,
                "test_accuracy": self.test_accuracy, "adversarial": self.adversarial,
                "seconds": round(self.seconds, 2), "notes": self.notes, "sources": rows}


def leave_one_source_out(run, *, data: RunFeatures | None = None, adversarial: float = 0.0,
                         progress: Callable[[str, int, int], None] | None = None,
                         read_test: bool = True) -> LosoResult:
    """Train the run's head once per source with that source held out; score it there.

    Args:
        run: a finished head-mode :class:`cxrlib.runs.run.Run` (``mobilenetv2`` or ``tiny``).
        data: :func:`run_features` of the run (computed when not given).
        adversarial: > 0 trains each fold's head with the source-adversarial branch of that
            weight (:mod:`cxrlib.audit.adversarial`) on the fold's training sources.
        progress: ``progress(source, done, total)`` after each fold.
        read_test: False leaves the run's test split unread (a sweep's candidates before the
            choice): no ``test_accuracy``, ``in_distribution_accuracy``, ``drop`` or
            ``fold_test_accuracy``, and each held-out source is scored on its films outside
            the test split only (a choice made on those figures says nothing of the test split).

    Returns:
        A :class:`LosoResult`; its table has per source ``source``, ``n``, ``classes`` (label
        counts), ``single_class``, ``held_out_accuracy``, ``balanced_accuracy``,
        ``majority_rate``, ``recall_<class>`` (only for classes it holds),
        ``predicted_<class>`` (what its films were called), ``in_distribution_accuracy`` (the
        run's own test films of that source), ``drop`` (in-distribution minus held-out),
        ``fold_test_accuracy`` (the fold's head on the other sources' test films) and
        ``n_train``.
    """
    from cxrlib.evaluation.metrics import point_metrics  # noqa: PLC0415
    from cxrlib.audit.adversarial import adversary  # noqa: PLC0415
    from cxrlib.training.head_fit import fit_head, fresh_head  # noqa: PLC0415

    data = data or run_features(run)
    m, classes = data.manifest, data.classes
    usable = (m["split"] != "excluded").to_numpy()
    source = loso_sources(m).to_numpy()
    y = np.array([classes.index(c) for c in m["label"]])
    onehot = np.eye(len(classes), dtype=np.float32)[y]
    overall, own = (own_test_accuracy(run, dict(zip(m["rel_path"].astype(str), source)))
                    if read_test else (float("nan"), {}))  # a sweep's candidates: test unread
    extra = adversary(source, adversarial) if adversarial > 0 else None
    names = sorted(set(source[usable]))
    rows, notes, scored_films, t0 = [], [], [], time.perf_counter()
    for k, name in enumerate(names):
        held = usable & (source == name)
        touching = set(m.loc[held, "group"])
        pool = usable & ~held & ~m["group"].isin(touching).to_numpy()
        tr = np.flatnonzero(pool & (m["split"] == "train").to_numpy())
        val = np.flatnonzero(pool & (m["split"] == "val").to_numpy())
        test = np.flatnonzero(pool & (m["split"] == "test").to_numpy())
        val = val if len(val) else test
        head = fresh_head(data.head, run.config.train.seed)  # the same start for every fold
        fit_head(head, data.features, tr, val, onehot, run.config.train, extra=extra,
                 sources=source)  # sources: the run's source balancing, when it has it
        # unread, the test split is not scored either (a sweep chooses on these figures)
        scored = held if read_test else held & (m["split"] != "test").to_numpy()
        pred = _predict(head, data.features[0], np.flatnonzero(scored))
        point = point_metrics(y[scored], pred, classes)
        scored_films.append(pd.DataFrame({c: m[c].astype(str).to_numpy()[scored] for c in ("rel_path", "group", "label")}
                                         ).assign(source=name, predicted=np.asarray(classes, dtype=object)[pred]))
        fold_test = (point_metrics(y[test], _predict(head, data.features[0], test), classes)
                     if len(test) and read_test else {})
        rows.append(_row(name, point, classes, own.get(name), fold_test.get("accuracy"), len(tr)))
        if rows[-1]["single_class"]:
            notes.append(f"{name} holds only {rows[-1]['classes'].split(' (')[0]}: its accuracy "
                         "is that class's recall, not a measure of telling the classes apart.")
        if progress:
            progress(name, k + 1, len(names))
    table = pd.DataFrame(rows)
    acc = table["held_out_accuracy"].astype(float)
    expected = float(acc.mean()) if len(acc) else None
    weighted = float((acc * table["n"]).sum() / table["n"].sum()) if len(acc) else None
    own_all = overall if overall == overall else None  # nan: the run has no test figure
    films = pd.concat(scored_films, ignore_index=True) if scored_films else pd.DataFrame()
    return LosoResult(table, expected, weighted, own_all, float(adversarial),
                      time.perf_counter() - t0, notes, films)


def _predict(head, features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    if not len(rows):
        return np.zeros(0, np.int64)
    # a direct call: predict() would trace a new function for every fold's fresh head
    return np.asarray(head(features[rows], training=False)).argmax(axis=1)


def _row(name, point, classes, in_dist, fold_test, n_train) -> dict:
    held_classes = [c for c in classes if point["support"][c]]
    row = {"source": name, "n": point["n"],
           "classes": "; ".join(f"{c} ({point['support'][c]})" for c in held_classes),
           "single_class": len(held_classes) == 1, "held_out_accuracy": point["accuracy"],
           "balanced_accuracy": point["balanced_accuracy"], "majority_rate": point["majority_rate"]}
    row.update({f"recall_{c}": point["recall"][c] if c in held_classes else None for c in classes})
    row.update({f"predicted_{c}": point["predicted"][c] for c in classes})
    row.update(in_distribution_accuracy=in_dist, fold_test_accuracy=fold_test, n_train=int(n_train),
               drop=None if in_dist is None or point["accuracy"] is None else in_dist - point["accuracy"])
    return row
