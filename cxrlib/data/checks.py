"""Whether a dataset can train a task: every class of it present, with enough films and patients.

A run on a task with an empty or near-empty class still "finishes". A 3-class run whose Viral folder is
empty ends ``done`` with a macro AUC of ``nan``, and one with three Viral films has a test split with
no Viral film at all. So the CLI's ``train`` command and the app's start button call
:func:`check_trainable` *before* a run is created, and refuse with the counts.

The minimums are configurable: the arguments, or ``CXR_MIN_CLASS_FILMS`` (default 5) and
``CXR_MIN_CLASS_PATIENTS`` (default 2; applied to the grouped split only, which keeps a patient on
one side, so a class needs two patients to reach both training and test).
"""
from __future__ import annotations

import os

from cxrlib.core.classes import task_classes
from cxrlib.data.identity import group_keys
from cxrlib.data.roots import DatasetError

MIN_CLASS_FILMS_ENV, MIN_CLASS_PATIENTS_ENV = "CXR_MIN_CLASS_FILMS", "CXR_MIN_CLASS_PATIENTS"


class TooFewFilms(DatasetError):
    """A class of the task has fewer readable films (or patients) than training needs."""


def min_class_films() -> int:
    """The default minimum of readable films per class: ``$CXR_MIN_CLASS_FILMS`` or 5."""
    return int(os.environ.get(MIN_CLASS_FILMS_ENV) or 5)


def min_class_patients() -> int:
    """The default minimum of patients per class for a grouped split: ``$CXR_MIN_CLASS_PATIENTS`` or 2."""
    return int(os.environ.get(MIN_CLASS_PATIENTS_ENV) or 2)


def check_trainable(dataset, task: str, split_kind: str = "grouped", *,
                    min_films: int | None = None, min_patients: int | None = None) -> None:
    """Refuse a task that a dataset cannot train.

    Args:
        dataset: a scanned :class:`cxrlib.data.datasets.Dataset` (all classes, or already
            :meth:`~cxrlib.data.datasets.Dataset.for_task`).
        task: ``"3class"`` or ``"binary"``.
        split_kind: ``"grouped"`` also counts patients (the groups the split keeps together:
            :func:`cxrlib.data.identity.group_keys`); ``"random"`` counts films only.
        min_films: readable films each class needs (default :func:`min_class_films`).
        min_patients: groups each class needs for a grouped split (default
            :func:`min_class_patients`).

    Raises:
        TooFewFilms: (a DatasetError) naming every short class with its counts and the minimum.
        ValueError: an unknown task.
    """
    min_films = min_class_films() if min_films is None else int(min_films)
    min_patients = min_class_patients() if min_patients is None else int(min_patients)
    classes = task_classes(task)
    manifest = dataset.manifest[dataset.manifest["label"].isin(classes)]
    films = manifest["label"].value_counts()
    groups = (group_keys(manifest).groupby(manifest["label"]).nunique()
              if split_kind == "grouped" and len(manifest) else None)
    short = []
    for cls in classes:
        n = int(films.get(cls, 0))
        if n < min_films:
            short.append(f"{cls} has {n} readable film{'s' * (n != 1)} (at least {min_films} needed)")
        elif groups is not None and int(groups.get(cls, 0)) < min_patients:
            k = int(groups.get(cls, 0))
            short.append(f"{cls} has {k} patient{'s' * (k != 1)} (a grouped split needs at least "
                         f"{min_patients})")
    if short:
        raise TooFewFilms(f"cannot train the {task} task on {dataset.root}: " + "; ".join(short)
                          + ". Add films, choose another task, or lower the minimum "
                          f"({MIN_CLASS_FILMS_ENV}, {MIN_CLASS_PATIENTS_ENV}).")
