"""Learning a run's intensity standardisation on its training rows (issue 23).

The Nyúl–Udupa scale (:mod:`cxrlib.preprocessing.standardise`) is learned once, on the films of
the run's own training split, before the run's config (and so its id) is final; the split is the
engine's (:func:`cxrlib.training.data.load_training_data` makes the same one).
"""
from __future__ import annotations

import numpy as np

from cxrlib.preprocessing.standardise import learn_scale


def resolve_standardisation(cfg, *, dataset=None):
    """``cfg`` with ``preprocess.standard_scale`` learned on its TRAINING rows when it asks for
    ``standardise="nyul"`` and has none yet; ``cfg`` itself otherwise.

    The films are the run's own split (:func:`cxrlib.data.splits.split_manifest`, with the
    near-duplicate clusters when the split groups them, as the engine does) preprocessed without
    standardisation (:func:`cxrlib.preprocessing.tensor_cache.load_tensors`: the cache the
    un-standardised run uses too). Deterministic: asking again gives the same config, so the
    same run id.
    """
    pre = cfg.preprocess
    if pre.standardise != "nyul" or pre.standard_scale:
        return cfg
    from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415
    from cxrlib.data.splits import split_manifest  # noqa: PLC0415
    from cxrlib.preprocessing.tensor_cache import load_tensors  # noqa: PLC0415

    ds = dataset or scan_dataset(cfg.data.root, bacterial=cfg.data.bacterial)
    if ds.task != cfg.data.task:
        ds = ds.for_task(cfg.data.task)
    manifest = ds.manifest.reset_index(drop=True)
    if cfg.split.kind == "grouped" and cfg.split.group_duplicates:
        from cxrlib.data.duplicates import duplicate_clusters  # noqa: PLC0415

        clusters = duplicate_clusters(ds)
        manifest["dup_cluster"] = [clusters.get(p, "") for p in manifest["rel_path"]]
    train = np.flatnonzero(split_manifest(manifest, cfg.split).to_numpy() == "train")
    tensors = load_tensors(ds, pre.replace(standardise="none"))
    bad = {p["rel_path"] for p in tensors.problems}
    rows = [i for i in train if manifest["rel_path"].iloc[i] not in bad]
    scale = learn_scale(tensors.images[i] for i in rows)
    return cfg.replace(preprocess=pre.replace(standard_scale=scale))
