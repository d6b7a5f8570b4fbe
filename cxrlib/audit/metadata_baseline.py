"""Metadata-only baseline: can non-clinical image properties alone predict the class?

If a classifier that never sees anatomy (only size, file format, compression, brightness and the
film's border) predicts the label well, the classes differ in *how the images were made*, and a
CNN can score well by learning that instead of the disease. On ../shared/datasets/cxr3 the
Kermany films (all Viral Pneumonia, many Normal) are small pediatric re-encoded copies, the
Normal NIH films are 1024 px PNG originals, and the COVID films come from web pages and papers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxrlib.audit.film_scan import FilmSignatures, scan_films

FEATURES = ("width", "height", "aspect", "megapixels", "format", "bit_depth", "channels",
            "jpeg_quality", "bytes_per_pixel", "mean", "std", "border_mean", "border_std",
            "border_black", "border_white", "colour")
"""Feature names, all non-clinical: none depends on what the film shows inside the body."""


@dataclass
class MetadataBaseline:
    """Result of :func:`metadata_baseline`.

    Attributes:
        accuracy: test-split accuracy of the metadata-only classifier.
        chance: accuracy of always predicting the commonest training class (on the test split).
        per_class_recall: class -> recall on the test split.
        confusion: DataFrame, rows = true class, columns = predicted class (counts).
        importances: DataFrame (``feature``, ``importance``), largest first (impurity-based
            random-forest importances, summing to 1).
        n_train / n_test: films used.
        confounded: accuracy at or above the ``confounded_at`` level.
        verdict: one plain-language sentence for the page.
        predictions: DataFrame (``rel_path``, ``label``, ``pred``) on the test split.
    """

    accuracy: float
    chance: float
    per_class_recall: dict[str, float]
    confusion: pd.DataFrame
    importances: pd.DataFrame
    n_train: int
    n_test: int
    confounded: bool
    verdict: str
    predictions: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def to_dict(self) -> dict:
        """JSON-friendly summary (no DataFrames except as records)."""
        return {"accuracy": self.accuracy, "chance": self.chance,
                "per_class_recall": self.per_class_recall, "n_train": self.n_train,
                "n_test": self.n_test, "confounded": self.confounded, "verdict": self.verdict,
                "importances": self.importances.to_dict("records")}


def metadata_features(manifest: pd.DataFrame, signatures: FilmSignatures | None = None, *,
                      fingerprint: str | None = None) -> pd.DataFrame:
    """The :data:`FEATURES` of every film, one row per manifest row (plus ``rel_path``).

    Args:
        manifest: a dataset manifest; ``width``, ``height``, ``format``, ``bit_depth`` and
            ``channels`` are used when present (else measured or left constant).
        signatures: a precomputed :func:`scan_films` result (else computed and cached).
        fingerprint: the dataset fingerprint, cache key of the decoding pass.
    """
    manifest = manifest.reset_index(drop=True)
    sig = signatures or scan_films(manifest, fingerprint=fingerprint)
    props = sig.properties.reset_index(drop=True)
    out = pd.DataFrame({"rel_path": manifest["rel_path"].astype(str)})
    for col in ("width", "height", "bit_depth", "channels"):
        out[col] = pd.to_numeric(manifest[col], errors="coerce") if col in manifest else np.nan
    out["width"] = out["width"].fillna(0.0)
    out["height"] = out["height"].fillna(0.0)
    out["aspect"] = out["width"] / out["height"].replace(0, np.nan)
    out["megapixels"] = out["width"] * out["height"] / 1e6
    fmt = manifest["format"].astype(str).str.upper() if "format" in manifest else pd.Series([""] * len(out))
    out["format"] = fmt.map({f: i for i, f in enumerate(sorted(set(fmt)))}).astype(float)
    out["bytes_per_pixel"] = props["file_bytes"] / (out["width"] * out["height"]).replace(0, np.nan)
    for col in ("jpeg_quality", "mean", "std", "border_mean", "border_std", "border_black",
                "border_white", "colour"):
        out[col] = props[col].to_numpy()
    # Missing values (a PNG has no JPEG quality) become -1: trees split them off cleanly.
    out[list(FEATURES)] = out[list(FEATURES)].astype(float).fillna(-1.0)
    return out


def metadata_baseline(manifest: pd.DataFrame, split_table: pd.DataFrame, *,
                      classes: tuple[str, ...] | None = None,
                      signatures: FilmSignatures | None = None, fingerprint: str | None = None,
                      seed: int = 0, features: pd.DataFrame | None = None) -> MetadataBaseline:
    """Train a random forest on metadata of the run's training films, test it on its test films.

    The training side is every film whose split is not ``"test"`` (train and validation: the
    forest needs no early stopping). A forest, not boosting: with a few hundred films and
    heterogeneous features it needs no tuning and gives importances for free.

    Args:
        manifest: the dataset manifest the run was trained on.
        split_table: ``Run.split_table()`` (``rel_path``, ``split``, ``label``).
        classes: class order for the report (default: sorted labels).
        signatures / fingerprint: see :func:`metadata_features`.
        seed: the forest's random state.
        features: precomputed :func:`metadata_features` (else computed).

    Returns:
        A :class:`MetadataBaseline`.

    Raises:
        ValueError: when the split table has no training or no test films in the manifest.
    """
    from sklearn.ensemble import RandomForestClassifier  # noqa: PLC0415

    feats = features if features is not None else metadata_features(manifest, signatures,
                                                                      fingerprint=fingerprint)
    st = split_table[["rel_path", "split"]].astype(str)
    data = feats.merge(st, on="rel_path", how="inner")
    data["label"] = data["rel_path"].map(dict(zip(manifest["rel_path"].astype(str),
                                                  manifest["label"].astype(str))))
    train, test = data[data["split"] != "test"], data[data["split"] == "test"]
    if train.empty or test.empty:
        raise ValueError("metadata baseline needs films in both the training and the test split")
    classes = tuple(classes) if classes else tuple(sorted(set(data["label"])))
    forest = RandomForestClassifier(n_estimators=300, min_samples_leaf=2, random_state=seed, n_jobs=1)
    forest.fit(train[list(FEATURES)].to_numpy(), train["label"].to_numpy())
    pred = forest.predict(test[list(FEATURES)].to_numpy())
    truth = test["label"].to_numpy()
    accuracy = float((pred == truth).mean())
    majority = train["label"].value_counts().idxmax()
    chance = float((truth == majority).mean())
    recall = {c: float((pred[truth == c] == c).mean()) if (truth == c).any() else float("nan")
              for c in classes}
    confusion = pd.crosstab(pd.Categorical(truth, classes), pd.Categorical(pred, classes),
                            rownames=["true"], colnames=["predicted"], dropna=False)
    importances = (pd.DataFrame({"feature": FEATURES, "importance": forest.feature_importances_})
                   .sort_values("importance", ascending=False).reset_index(drop=True))
    confounded, verdict = _verdict(accuracy, len(classes), importances)
    preds = pd.DataFrame({"rel_path": test["rel_path"].to_numpy(), "label": truth, "pred": pred})
    return MetadataBaseline(accuracy, chance, recall, confusion, importances, len(train), len(test),
                            confounded, verdict, preds)


def confounded_level(n_classes: int) -> float:
    """Accuracy from which metadata alone counts as confounding: 70% of the way from uniform
    chance to perfect (0.8 for 3 classes, 0.85 for 2)."""
    chance = 1.0 / max(n_classes, 1)
    return chance + 0.7 * (1.0 - chance)


def _verdict(accuracy: float, n_classes: int, importances: pd.DataFrame) -> tuple[bool, str]:
    top = ", ".join(importances["feature"].head(3))
    chance = 1.0 / max(n_classes, 1)
    if accuracy >= confounded_level(n_classes):
        return True, (f"The data is confounded: image properties alone (size, format, compression, "
                      f"brightness, borders) predict the class with {accuracy:.0%} accuracy, mostly "
                      f"from {top}. A CNN's accuracy on this split does not show it sees disease.")
    if accuracy >= chance + 0.3 * (1.0 - chance):
        return False, (f"The data is partly confounded: image properties alone reach {accuracy:.0%} "
                       f"accuracy (chance {chance:.0%}), mostly from {top}.")
    return False, (f"No strong metadata shortcut: image properties alone reach {accuracy:.0%} "
                   f"accuracy (chance {chance:.0%}).")
