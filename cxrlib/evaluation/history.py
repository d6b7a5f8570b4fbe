"""A run's training history (history.csv) in the forms the figures and pages use."""
from __future__ import annotations

import pandas as pd


TRAINING_METRICS = {"loss": ("loss", "val_loss"), "accuracy": ("accuracy", "val_accuracy")}


def training_curves(history: pd.DataFrame) -> pd.DataFrame:
    """A run's history in tidy form: one row per (epoch, metric, split).

    Args:
        history: columns ``epoch`` and any of ``loss``, ``accuracy``, ``val_loss``,
            ``val_accuracy`` (``lr`` is ignored here).

    Returns:
        Columns ``epoch``, ``metric`` ("loss"/"accuracy"), ``split`` ("train"/"validation"),
        ``value``; rows with a missing value are dropped.
    """
    rows = []
    for metric, (train_col, val_col) in TRAINING_METRICS.items():
        for split, col in (("train", train_col), ("validation", val_col)):
            if col in history.columns:
                rows.append(pd.DataFrame({"epoch": history["epoch"].to_numpy(), "metric": metric,
                                          "split": split, "value": history[col].to_numpy(dtype=float)}))
    if not rows:
        return pd.DataFrame({"epoch": pd.Series(dtype=int), "metric": pd.Series(dtype=str),
                             "split": pd.Series(dtype=str), "value": pd.Series(dtype=float)})
    return pd.concat(rows, ignore_index=True).dropna(subset=["value"]).reset_index(drop=True)


def best_epoch(history: pd.DataFrame) -> int | None:
    """The epoch of the lowest validation loss (the weights a run keeps), or None without one."""
    if "val_loss" not in history.columns or history["val_loss"].isna().all():
        return None
    return int(history.loc[history["val_loss"].idxmin(), "epoch"])

