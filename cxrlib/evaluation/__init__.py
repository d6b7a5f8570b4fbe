"""Evaluation of a run's predictions: point metrics, curves, calibration, bootstrap CIs.

The public functions of the submodules, in one namespace (``from cxrlib import evaluation``):

- :mod:`.core`: inputs (:func:`label_indices`, :func:`from_predictions`, :func:`decide`,
  :func:`test_rows`);
- :mod:`.metrics`: :func:`point_metrics` (the one accuracy path), :func:`evaluate`,
  :func:`ppv_npv`, :func:`predictive_values`;
- :mod:`.curves`: :func:`roc_curves`, :func:`pr_curves`; :mod:`.calibration`: :func:`calibration`;
- :mod:`.bootstrap`: :func:`bootstrap_ci`, :func:`resample_weights` (patient-level resampling);
- :mod:`.compare`: two runs on the same test films (:func:`compare_runs`: McNemar's exact test,
  paired bootstrap CIs of the accuracy and AUC differences; :class:`NotComparable`);
- :mod:`.history`: :func:`training_curves`, :func:`best_epoch`;
- :mod:`.records`: :func:`sample_records`;
- :mod:`.subgroups`: metrics by manifest column or derived attribute with patient-level CIs
  (``from cxrlib.evaluation.subgroups import subgroup_analysis``);
- :mod:`.predict`: running a trained model on films, files and folders (imports TensorFlow
  only when a model is called).
"""
from cxrlib.evaluation.bootstrap import bootstrap_ci, resample_weights
from cxrlib.evaluation.calibration import calibration
from cxrlib.evaluation.compare import (NotComparable, compare_predictions, compare_runs,
                                       mcnemar_exact, paired_bootstrap, paired_test_predictions)
from cxrlib.evaluation.core import decide, from_predictions, label_indices, test_rows
from cxrlib.evaluation.curves import pr_curves, precision_recall_curve, roc_curve, roc_curves
from cxrlib.evaluation.history import best_epoch, training_curves
from cxrlib.evaluation.metrics import (confusion_counts, evaluate, point_metrics, ppv_npv,
                                       predictive_values)
from cxrlib.evaluation.records import sample_records

__all__ = ["NotComparable", "best_epoch", "bootstrap_ci", "calibration", "compare_predictions",
           "compare_runs", "confusion_counts", "decide", "evaluate", "from_predictions",
           "label_indices", "mcnemar_exact", "paired_bootstrap", "paired_test_predictions", "point_metrics", "ppv_npv", "pr_curves",
           "precision_recall_curve", "predictive_values", "resample_weights", "roc_curve",
           "roc_curves", "sample_records", "test_rows", "training_curves"]
