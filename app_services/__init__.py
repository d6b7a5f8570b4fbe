"""The app's one service layer: cached wrappers around ``cxrlib`` and widgets returning configs.

Pages only draw; everything they compute comes from here, and everything here that computes calls
``cxrlib``. Caches are keyed on small, exact keys (paths with their mtime and size, sha256 of
uploaded bytes, config hashes, run ids with their status), never on big arrays: Streamlit hashes
large arrays from a sample (see ../shared/NOTES.md). Large read-only objects (films, models) use
``st.cache_resource`` so that a cache hit does not copy them.

One concern per module; pages import the package (``import app_services as svc``):

- :mod:`.core`: session keys, chart and format helpers, notices for the page the user is on.
- :mod:`.data`: the sidebar's dataset (validation, the synthetic demo), films, thumbnails, grids.
- :mod:`.film_meta`: one film's header and manifest facts, patient data behind a toggle.
- :mod:`.preprocessing`: live previews and ``preprocess_ui`` -> ``PreprocessConfig``.
- :mod:`.runs`: registry access, the current-run picker (which says when the run shown was
  deleted meanwhile), progress.
- :mod:`.training_form`: the Training page's form, ``training_ui`` -> ``RunConfig``.
- :mod:`.evaluation`: metrics, curves and bootstrap intervals of a run.
- :mod:`.explaining`: CAMs, overlays, faithfulness and ``explain_ui`` -> ``ExplainConfig``.
- :mod:`.auditing`: the trust audit of a run (one per run and options for the server, resumed
  after a restart); :mod:`.audit_view`: the Audit page's components (options, the report run on
  request, one section per check); :mod:`.work`: long work below the pages (``Work``).
- :mod:`.heatmap_trust`: a map's resolution and ROAD score, the method's standing on the run,
  the audit's heatmap-trust table.
- :mod:`.lungs`: a film's lung fields, the lung outline, the CAM's share inside the lungs.
- :mod:`.generalising`: subgroups of a run's test split; the audit's LOSO and probe views.
- :mod:`.reviewing`, :mod:`.review_queue`, :mod:`.review_stats`: radiologists' reviews (store,
  reviewer name and form; queue, film picker and link from Evaluation; agreement statistics);
  :mod:`.identity`: the logged-in reviewer (``st.login``) and the ``CXR_REVIEWERS`` allow-list.
- :mod:`.comparing`: two runs on the same test films (McNemar, paired bootstrap) for Evaluation.
- :mod:`.pacs`: the Explain page's PACS source (search, study, film) and "Send to PACS".
- :mod:`.evaluation_view`: the Evaluation page's components (current run and one to compare,
  figures on shared axes, every number naming its run).
- :mod:`.viewer`: the film viewer of Explain and Review (window / level, synchronised heatmap
  panels, previous / next, scores with their caveat, the overlay download).
- :mod:`.explain_view`: the Explain page's components (the film's source and picker, the viewer's
  caption, the in-lung share, the verdict and review form).
- :mod:`.address`: the run, film, reviewer and key choices kept in ``st.query_params``.
- :mod:`.sweeping`: the Training page's Sweeps section (:mod:`cxrlib.sweep`);
  :mod:`.search_findings`: the Audit page's "what the search found" (LOSO gains with CIs).
- :mod:`.training_view`: the Training page's components (the configured run's state, start,
  live progress, the runs and the damaged ones).
- :mod:`.serving`: what Streamlit does after every script run, fit for a shared server.
"""
from .core import (DATA_DIR, TASK, TASK_LABELS, TRAIN_PREPROCESS, chart, for_display, kept_tabs,
                   md_literal, show_notices, table)
from .data import (build_demo_dataset, crosstab, data_config, dataset_stats, dataset_status,
                   display_pixels, image_grid, init_state, is_demo, path_of, require_dataset,
                   sample_rows)
from .film_meta import film_meta_table, patient_data_toggle
from .explaining import (cam_layers, explain_ui, explanation, faithfulness_ui, flat_map_notice,
                         method_layers)
from .preprocessing import (apply_preset, describe_preprocess, lung_crop_ui, preprocess_preview,
                            preprocess_ui, preview_films, reshuffle_preview_films)
from .runs import (current_run_ui, find_run, progress_text, require_run, run_label, run_status,
                   start_run)
from .training_form import training_ui
from .auditing import resume_audits
from .audit_view import (attention_section, audit_headline, audit_options_ui, audit_report,
                         external_section, generalisation_section, leakage_section,
                         masked_section, metadata_section)
from .heatmap_trust import heatmap_trust_panel, heatmap_trust_section
from .lungs import explanation_lungs, with_outline
from .comparing import comparison_ui
from .evaluation_view import (figure_rows, headline, predictive_values_ui, runs_shown, sample_grid,
                              subgroups_ui)
from .address import from_address, to_address
from .viewer import (explain_panels, film_nav, film_viewer, look, methods_ui, overlay_download,
                     scores, window_ui)
from .reviewing import film_reviews_table, has_reviewed, review_form, reviewer_ui, run_reviews
from .review_queue import film_picker, review_progress, review_queue, review_viewer, sync_film
from .review_stats import (agreement, kappa_display, model_agreement_display, off_target_display,
                           reviews_csv)
from .explain_view import explain_film_ui, lung_share_ui, verdict_ui, viewer_caption
from .firstrun import is_bundled_sample, quick_run_config
from .pacs import send_results_ui
from .sweeping import sweeps_ui
from .training_view import (damaged_runs_ui, live_progress_ui, run_state_ui, runs_list_ui,
                            start_button)
from .serving import keep_keras_state

# What pages draw with but never compute: the figure builders and the configs the widgets
# return. (The package gives the pages what they use, nothing more: tests and helpers import a
# module's own names from the module.)
from cxrlib.core.config import PreprocessConfig  # noqa: E402
from cxrlib.viz import figures  # noqa: E402
from cxrlib.viz import dataset as dataset_figures  # noqa: E402
