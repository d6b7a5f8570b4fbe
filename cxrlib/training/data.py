"""What a training run reads: its task's films, their split and their preprocessed tensors."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxrlib.core.config import RunConfig


class DatasetChanged(RuntimeError):
    """The dataset on disk no longer matches the fingerprint the run was made for."""


@dataclass
class TrainingData:
    """A run's films, in the tensor cache's order.

    Attributes:
        manifest: the task's rows with a ``split`` column (``train`` / ``val`` / ``test``, or
            ``excluded`` for films that could not be decoded).
        images: ``uint8 (N, S, S)`` preprocessed grey films (memory-mapped), row i = manifest row i.
        fingerprint: the task's content fingerprint.
        info: facts for metrics.json (leakage, cache hits, excluded films).
    """

    manifest: pd.DataFrame
    images: np.ndarray
    fingerprint: str
    info: dict = field(default_factory=dict)

    def indices(self, side: str) -> np.ndarray:
        """Row positions of one side of the split."""
        return np.flatnonzero(self.manifest["split"].to_numpy() == side)


def load_training_data(cfg: RunConfig, run, *, status, progress) -> TrainingData:
    """Scan, check, split and preprocess the data of ``run`` (see :mod:`cxrlib.training.engine`).

    With ``cfg.split.group_duplicates`` the audit's near-duplicate clusters
    (:func:`cxrlib.data.duplicates.duplicate_clusters`, cached per dataset) join the group key,
    so no near-duplicate pair straddles the split.

    Args:
        cfg: the run's configuration.
        run: the :class:`cxrlib.runs.run.Run` (its fingerprint is checked; its split.csv written).
        status: ``status(**fields)`` writes progress into status.json.
        progress: ``progress(what)`` returns a ``(done, total)`` callback.

    Raises:
        DatasetChanged: the data's fingerprint is not the run's any more.
    """
    from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415
    from cxrlib.data.splits import split_manifest, split_table  # noqa: PLC0415
    from cxrlib.preprocessing.tensor_cache import load_tensors  # noqa: PLC0415

    ds = scan_dataset(cfg.data.root, bacterial=cfg.data.bacterial).for_task(cfg.data.task)
    expected = getattr(run, "fingerprint", None)
    if expected and ds.fingerprint != expected:
        raise DatasetChanged(f"dataset {cfg.data.root} changed since run {run.id} was made "
                             f"(fingerprint {ds.fingerprint} != {expected})")
    manifest = ds.manifest.reset_index(drop=True)
    info: dict = {}
    if cfg.split.kind == "grouped" and cfg.split.group_duplicates:
        from cxrlib.data.duplicates import duplicate_clusters  # noqa: PLC0415

        status(message="near-duplicate search")
        clusters = duplicate_clusters(ds, progress=progress("near-duplicate search"))
        manifest["dup_cluster"] = [clusters.get(p, "") for p in manifest["rel_path"]]
        info["duplicate_clusters"] = int(manifest.loc[manifest["dup_cluster"] != "", "dup_cluster"].nunique())
    split = split_manifest(manifest, cfg.split)
    info["leakage"] = run.write_split(split_table(manifest, split))
    manifest = manifest.assign(split=split.to_numpy())
    status(message="preprocessing films (tensor cache)")
    tensors = load_tensors(ds, cfg.preprocess, progress=progress("preprocessing"))
    if list(tensors.rel_paths) != manifest["rel_path"].tolist():
        raise RuntimeError("tensor cache order does not match the dataset manifest")
    info["tensor_cache_hit"] = bool(tensors.hit)
    undecodable = {p["rel_path"] for p in tensors.problems}
    if undecodable:  # their tensor rows are zeros: keep them out of every split
        manifest.loc[manifest["rel_path"].isin(undecodable), "split"] = "excluded"
    info["excluded_undecodable"] = len(undecodable)
    info["undecodable"] = list(tensors.problems)  # rel_path and reason of each, kept with the run
    return TrainingData(manifest, tensors.images, ds.fingerprint, info)
