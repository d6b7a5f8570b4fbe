"""Radiologists' reviews of a run's films: the store, the queue and the agreement statistics.

- :mod:`.records`: :class:`Review` (one reviewer's verdict on one film of one run) and the
  answers it may hold (:data:`HEATMAP_LOCATIONS`, :data:`CONFIDENCE_LEVELS`);
- :mod:`.store`: :class:`ReviewStore`, the embedded SQLite database in the workspace
  (append-only, one transaction per review, WAL, versioned schema), :func:`latest_reviews`;
- :mod:`.queue`: :func:`review_queue` (errors first, then CAMs outside the lungs),
  :func:`review_progress`;
- :mod:`.agreement`: Cohen's and Fleiss' kappa with bootstrap CIs (:func:`kappa_tables`),
  agreement with the model (:func:`model_agreement`), heatmaps off target per class
  (:func:`off_target_share`).
"""
from cxrlib.reviews.agreement import (QUESTIONS, cohen_kappa, fleiss_kappa, kappa_tables,
                                      model_agreement, off_target_share, rating_matrix,
                                      wilson_interval)
from cxrlib.reviews.queue import review_progress, review_queue
from cxrlib.reviews.records import (CONFIDENCE_LEVELS, HEATMAP_LOCATIONS, OFF_TARGET,
                                    REVIEW_COLUMNS, Review, clean_reviewer)
from cxrlib.reviews.store import (SCHEMA_VERSION, ReviewStore, ReviewStoreError, default_path,
                                  latest_reviews)

__all__ = ["CONFIDENCE_LEVELS", "HEATMAP_LOCATIONS", "OFF_TARGET", "QUESTIONS", "REVIEW_COLUMNS",
           "Review", "ReviewStore", "ReviewStoreError", "SCHEMA_VERSION", "clean_reviewer",
           "cohen_kappa", "default_path", "fleiss_kappa", "kappa_tables", "latest_reviews",
           "model_agreement", "off_target_share", "rating_matrix", "review_progress",
           "review_queue", "wilson_interval"]
