"""Metadata-only baseline: can acquisition properties alone predict the class?

If a classifier that never sees the body (only size, file format, compression settings and the
intensities of the film's outer border) predicts the label well, the classes differ in
*how the images were made*, and a CNN can score well by learning that instead of the disease.
On ../shared/datasets/cxr3 the Kermany films (all Viral Pneumonia, many Normal) are small
pediatric re-encoded copies, the Normal NIH films are 1024 px PNG originals, and the COVID films
come from web pages and papers.

The features (:data:`FEATURES`, described in :data:`FEATURE_DESCRIPTIONS`) are restricted to
acquisition properties on purpose: size, aspect, channels, format, bit depth, JPEG quality and
the intensities of the outer border. Whole-film statistics are NOT among them: the mean and
spread of a film carry lung density and consolidation, i.e. disease, and so do a lossless
file's bytes per pixel; a baseline using them would call a real signal a confound. The border frame (5 % of each side) lies outside the
lung fields of a chest film. Scores are balanced accuracy (chance: one over the classes) and
accuracy next to the majority-class rate, from :func:`cxrlib.evaluation.metrics.point_metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxrlib.audit.findings import Finding, finding
from cxrlib.data.film_scan import FilmSignatures, scan_films
from cxrlib.evaluation.metrics import point_metrics

FEATURE_DESCRIPTIONS = {
    "width": "width in pixels", "height": "height in pixels", "aspect": "width / height",
    "megapixels": "width x height / 10^6", "format": "file format (JPEG, PNG, DICOM)",
    "bit_depth": "bits per sample (8 or 16)", "channels": "stored channels (grey, RGB, RGBA)",
    "jpeg_quality": "JPEG quality estimated from the quantisation table (-1: not a JPEG)",
    "border_mean": "mean grey of the outer frame (5 % of each side)",
    "border_std": "spread of grey in the outer frame",
    "border_black": "share of outer-frame pixels <= 5 (black padding)",
    "border_white": "share of outer-frame pixels >= 250 (white padding, burnt-in labels)",
}
"""What each feature is, for the Audit page."""
FEATURES = tuple(FEATURE_DESCRIPTIONS)
"""Feature names, all acquisition properties: none looks inside the body."""


@dataclass
class MetadataBaseline:
    """Result of :func:`metadata_baseline`.

    Attributes:
        accuracy: test-split accuracy of the metadata-only classifier.
        balanced_accuracy: its mean per-class recall (chance: ``1 / classes``, whatever the
            class mix); the verdict reads this one.
        majority_rate: accuracy of always predicting the commonest test class (the chance level
            of ``accuracy``).
        per_class_recall: class -> recall on the test split.
        confusion: DataFrame, rows = true class, columns = predicted class (counts).
        importances: DataFrame (``feature``, ``importance``), largest first (impurity-based
            random-forest importances, summing to 1).
        n_train / n_test: films used.
        confounded: balanced accuracy at or above :func:`confounded_level`.
        verdict: the :class:`cxrlib.audit.findings.Finding` for the page (a warning when the
            data is confounded or partly confounded).
        predictions: DataFrame (``rel_path``, ``label``, ``pred``) on the test split.
        features: the features used (:data:`FEATURES`).
    """

    accuracy: float
    balanced_accuracy: float
    majority_rate: float
    per_class_recall: dict[str, float]
    confusion: pd.DataFrame
    importances: pd.DataFrame
    n_train: int
    n_test: int
    confounded: bool
    verdict: Finding
    predictions: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    features: tuple[str, ...] = FEATURES

    @property
    def chance(self) -> float:
        """The chance level of :attr:`accuracy`: the majority-class rate."""
        return self.majority_rate

    def to_dict(self) -> dict:
        """JSON-friendly summary (no DataFrames except as records)."""
        return {"accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy,
                "majority_rate": self.majority_rate, "chance_balanced": 1.0 / max(len(self.per_class_recall), 1),
                "per_class_recall": self.per_class_recall, "n_train": self.n_train,
                "n_test": self.n_test, "confounded": self.confounded, "verdict": self.verdict.text,
                "severity": self.verdict.severity,
                "features": list(self.features), "importances": self.importances.to_dict("records")}


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
    # Never the whole film's mean / std (they carry the lungs' density), nor the bytes per pixel
    # or the colour of the whole film: a lossless file's size and a film's tint follow what it
    # shows (a planted lung-density signal was found through PNG file sizes alone).
    for col in ("jpeg_quality", "border_mean", "border_std", "border_black", "border_white"):
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
    point = point_metrics(truth, pred, classes)
    confusion = pd.DataFrame(point["confusion"], index=pd.Index(classes, name="true"),
                             columns=pd.Index(classes, name="predicted"))
    importances = (pd.DataFrame({"feature": FEATURES, "importance": forest.feature_importances_})
                   .sort_values("importance", ascending=False).reset_index(drop=True))
    confounded, verdict = _verdict(point, len(classes), importances)
    preds = pd.DataFrame({"rel_path": test["rel_path"].to_numpy(), "label": truth, "pred": pred})
    recall = {c: float("nan") if r is None else r for c, r in point["recall"].items()}
    return MetadataBaseline(point["accuracy"], point["balanced_accuracy"], point["majority_rate"],
                            recall, confusion, importances, len(train), len(test), confounded,
                            verdict, preds)


def confounded_level(n_classes: int) -> float:
    """Balanced accuracy from which metadata alone counts as confounding: 70% of the way from
    chance (``1 / n_classes``) to perfect (0.8 for 3 classes, 0.85 for 2)."""
    chance = 1.0 / max(n_classes, 1)
    return chance + 0.7 * (1.0 - chance)


def _verdict(point: dict, n_classes: int, importances: pd.DataFrame) -> tuple[bool, Finding]:
    top = ", ".join(importances["feature"].head(3))
    balanced, chance = point["balanced_accuracy"] or 0.0, 1.0 / max(n_classes, 1)
    scores = (f"balanced accuracy {balanced:.0%} (chance {chance:.0%}); accuracy "
              f"{point['accuracy']:.0%} (majority class {point['majority_rate']:.0%})")
    if balanced >= confounded_level(n_classes):
        return True, finding(True, "metadata", (
            f"The data is confounded: acquisition properties alone (size, format, "
            f"compression, borders) predict the class: {scores}, mostly from {top}. A "
            f"CNN's accuracy on this split does not show it sees disease."))
    if balanced >= chance + 0.3 * (1.0 - chance):
        return False, finding(True, "metadata", f"The data is partly confounded: acquisition "
                                                f"properties alone reach {scores}, mostly from {top}.")
    return False, finding(False, "metadata", f"No strong acquisition shortcut: image properties "
                                             f"alone reach {scores}.")
