"""The app's one service layer: cached wrappers around ``cxrlib`` and widgets returning configs.

Pages only draw; everything they compute comes from here, and everything here that computes calls
``cxrlib``. Caches are keyed on small, exact keys (paths with their mtime and size, sha256 of
uploaded bytes, config hashes, run ids with their status), never on big arrays: Streamlit hashes
large arrays from a sample (see ../shared/NOTES.md). Large read-only objects (films, models) use
``st.cache_resource`` so that a cache hit does not copy them.

One concern per module; pages import the package (``import app_services as svc``):

- :mod:`.core`: which ``cxrlib`` modules exist yet (``need``), session keys, chart and format helpers.
- :mod:`.data`: the sidebar's dataset (validation, the synthetic demo), films, thumbnails, grids.
- :mod:`.preprocessing`: live previews and ``preprocess_ui`` -> ``PreprocessConfig``.
- :mod:`.runs`: registry access, the current-run picker, ``training_ui`` -> ``RunConfig``, progress.
- :mod:`.evaluation`: metrics, curves and bootstrap intervals of a run.
- :mod:`.explaining`: CAMs, overlays, faithfulness and ``explain_ui`` -> ``ExplainConfig``.
- :mod:`.auditing`: the trust audit of a run.
"""
from .core import (DATA_DIR, DISPLAY_MAX_SIDE, RUN_ID, TASK, TASK_LABELS, TRAIN_PREPROCESS, chart,
                   plain_table,
                   file_stamp, fmt, safe)
from .data import (DataStatus, build_demo_dataset, crosstab, data_config, dataset_stats,
                   dataset_status, demo_folder, display_pixels, film, film_meta_table,
                   image_grid, init_state, is_demo, path_of, require_dataset, sample_rows,
                   thumbnail, upload_film)
from .evaluation import bootstrap, ci_table, evaluation, report_table, test_predictions
from .explaining import cam_layers, explain_ui, explanation
from .preprocessing import (apply_preset, describe_preprocess, preprocess_preview, preprocess_ui,
                            preview_films, reshuffle_preview_films)
from .runs import (FAMILY_LABELS, active_runs, current_run_ui, dataset_runs, get_run, leakage,
                   leakage_text, list_runs, model, predictions, progress_text, require_run,
                   run_label, run_stamp, run_title, runs_table, training_ui)
from .auditing import cached_audit, mask_and_cam, run_audit
