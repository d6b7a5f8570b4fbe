"""The audit's "heatmap trust" step: every CAM method measured on a run's validation films.

The measurement ranks the methods and feeds the rule that picks the default method
(:func:`cxrlib.explain.trust.choose_default`), so it reads the run's **validation** films by
default, never its test films (choices are made on validation data); ``split="test"`` measures
the test films, e.g. as a check that is not used for any choice.

Loads the films as the other audit steps do (the tensor cache, a seeded sample,
films that no longer decode left out), their lung fields (:func:`cxrlib.audit.attention.lung_fields_of`;
flagged masks left out of the in-lung share), and the split's group key for the patient
bootstrap, then runs :func:`cxrlib.explain.trust.heatmap_trust` and stores the result in the
run folder (:func:`cxrlib.explain.trust.save_trust`), where the Explain page finds it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np


def trust_films(run, dataset, films: int | None, seed: int = 0,
                progress: Callable[[str, int, int], None] | None = None, split: str = "val"):
    """``(model inputs (N, S, S, 3), groups, rel_paths, lung masks or None per film)`` of up to
    ``films`` films of ``run``'s ``split`` (``"val"`` or ``"test"``; a seeded sample; ``None``:
    all)."""
    from cxrlib.audit.attention import lung_fields_of  # noqa: PLC0415
    from cxrlib.audit.report import split_images  # noqa: PLC0415
    from cxrlib.preprocessing.pipeline import to_model_input  # noqa: PLC0415

    note = progress or (lambda *a: None)
    table = run.split_table()
    unreadable = SimpleNamespace(skipped=[])  # split_images lists films it leaves out here
    images, _, rel_paths = split_images(dataset, run, table, films, seed, note, unreadable, split)
    by_path = table.set_index(table["rel_path"].astype(str))
    column = "group" if "group" in by_path.columns else "patient_id"
    groups = by_path.loc[[str(p) for p in rel_paths], column].astype(str).tolist()
    segs = lung_fields_of(dataset.manifest.reset_index(drop=True), rel_paths, images,
                          run.config.preprocess, progress=lambda d, n: note("lung masks", d, n))
    masks = [None if s.flagged else s.mask for s in segs]
    return to_model_input(np.asarray(images)), groups, list(rel_paths), masks


def run_heatmap_trust(run, dataset=None, *, films: int | None = 120,
                      methods: Sequence[str] | None = None, default: str | None = None,
                      seed: int = 0, save: bool = True, split: str = "val",
                      progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Measure every method (or ``methods``) on ``films`` validation films of a finished run.

    Args:
        run: a done :class:`cxrlib.runs.run.Run`.
        dataset: its dataset (default: scanned from the run's config).
        films: films of ``split`` (a seeded sample), ``None`` for all.
        methods: registry names (default: every registered method).
        default: the method the Explain page preselects (default: ``ExplainConfig().method``).
        seed: of the sample, the bootstrap and ROAD's noise.
        save: store the result in the run folder.
        split: ``"val"`` (the default: the ranking may pick the default method) or ``"test"``.
        progress: ``progress(step, done, total)``.

    Returns:
        The dict of :func:`cxrlib.explain.trust.heatmap_trust`, with ``run_id`` and ``split``.
    """
    from cxrlib.core.config import ExplainConfig  # noqa: PLC0415
    from cxrlib.explain.methods import CAM_METHODS  # noqa: PLC0415
    from cxrlib.explain.trust import heatmap_trust, save_trust  # noqa: PLC0415

    if dataset is None:
        from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415

        dataset = scan_dataset(run.config.data.root, bacterial=run.config.data.bacterial)
        dataset = dataset.for_task(run.config.data.task)
    x, groups, _, masks = trust_films(run, dataset, films, seed, progress, split)
    methods = list(methods or CAM_METHODS)
    note = progress or (lambda *a: None)
    trust = heatmap_trust(run.load_model(), x, methods, groups=groups, lung_masks=masks,
                          default=default or ExplainConfig().method, seed=seed,
                          progress=lambda name, d, n: note(f"heatmap trust ({name})", d, n))
    trust["run_id"], trust["split"] = run.id, split
    if save:
        save_trust(run.folder, trust)
    return trust
