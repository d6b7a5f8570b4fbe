"""Class names, folder-name aliases and the two tasks.

The canonical names are the ones the published pipelines use. Every table, prediction file and
figure in the project speaks these names; folder names on disk are mapped to them through
:data:`ALIASES`.
"""
from __future__ import annotations

import re

COVID = "COVID-19"
NORMAL = "Normal"
VIRAL = "Viral Pneumonia"
BACTERIAL = "Bacterial Pneumonia"

CLASSES: tuple[str, ...] = (COVID, NORMAL, VIRAL)
"""The 3-class task, in the order of the model's softmax outputs."""

TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "3class": CLASSES,
    # Binary COVID-19 vs Normal: the positive class is COVID-19. A sigmoid model's single output
    # is P(COVID-19); stored probabilities always have one column per class in this order.
    "binary": (COVID, NORMAL),
}
POSITIVE_CLASS = COVID

ALIASES: dict[str, str] = {
    "covid": COVID,
    "covid19": COVID,
    "covid-19": COVID,
    "covid_19": COVID,
    "sars-cov-2": COVID,
    "normal": NORMAL,
    "no finding": NORMAL,
    "healthy": NORMAL,
    "viral pneumonia": VIRAL,
    "viral_pneumonia": VIRAL,
    "viral-pneumonia": VIRAL,
    "viral": VIRAL,
    "virus": VIRAL,
    "bacterial pneumonia": BACTERIAL,
    "bacterial": BACTERIAL,
    "bacteria": BACTERIAL,
}


def canonical_class(name: str) -> str | None:
    """Map a folder name (or label string) to a canonical class name.

    Args:
        name: e.g. ``"COVID"``, ``"covid-19"``, ``"Viral Pneumonia"``, ``"virus"``.

    Returns:
        The canonical class name, or ``None`` when the name is not a known alias.
    """
    key = re.sub(r"\s+", " ", name.strip().lower())
    if key in ALIASES:
        return ALIASES[key]
    for canonical in (*CLASSES, BACTERIAL):
        if key == canonical.lower():
            return canonical
    return None


def task_classes(task: str) -> tuple[str, ...]:
    """The classes of a task, in model output order.

    Raises:
        ValueError: for an unknown task.
    """
    try:
        return TASK_CLASSES[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASK_CLASSES)}") from None
