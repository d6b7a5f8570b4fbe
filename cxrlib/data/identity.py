"""Who a film belongs to: patient ids from file names, the one group key every split uses, and
the one rule that names a film's source (:func:`film_sources`).

A *group* is what must never be split across train / validation / test: every film connected
to another by a shared ``patient_id``, ``group_id`` (a source's own patient / duplicate groups,
e.g. cxr3's) or near-duplicate cluster (``dup_cluster``, from the audit's duplicate search) is in
the same group. :func:`group_keys` computes those connected components; the grouped split and
the leakage report (:mod:`cxrlib.data.splits`) both use it, so they can never disagree.
"""
from __future__ import annotations

import os
import re
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

ID_COLUMNS = ("patient_id", "group_id", "dup_cluster")
"""Manifest columns whose shared values put films in one group (missing columns are skipped)."""

_PATIENT_PATTERNS = [
    re.compile(r"(?:^|[_\-])(person\d+)(?=_|$)", re.IGNORECASE),  # Kermany person1661_virus_2872
    re.compile(r"^(\d{8})_\d{3}$"),                                # NIH ChestX-ray14 00000013_005
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+$", re.IGNORECASE),     # Kermany normal IM-0115-0001
]


def patient_id_from_name(filename: str) -> str | None:
    """Patient id from a known file-name pattern, else ``None``.

    Kermany ``person1661_virus_2872.jpeg`` (also with a prefix, ``kermany_person300_virus_621``)
    -> ``person1661``; Kermany normal ``IM-0115-0001.jpeg`` -> ``IM-0115`` (``NORMAL2-IM-1427-0001``
    -> ``NORMAL2-IM-1427``); NIH ChestX-ray14 ``00000013_005.png`` -> ``00000013``.
    """
    stem = os.path.splitext(os.path.basename(filename))[0]
    for pattern in _PATIENT_PATTERNS:
        match = pattern.search(stem)
        if match:
            return match.group(1)
    return None


def _ids(manifest: pd.DataFrame, column: str) -> pd.Series:
    values = manifest[column].astype("string").str.strip()
    return values.where(values.notna() & (values != ""), None).astype(object)


def group_keys(manifest: pd.DataFrame) -> pd.Series:
    """The group of every film: connected components of shared :data:`ID_COLUMNS` values.

    Two films are in one group when they share any id (a patient with two ``group_id`` values
    joins both groups into one). A group's key is its smallest id, as ``"<column>:<value>"``
    (e.g. ``"group_id:g00012"``), so keys do not depend on the row order; a film with no id at
    all is a group of its own, ``"image:<rel_path>"`` (or its row position without ``rel_path``).

    Args:
        manifest: a dataset manifest or split table (any of :data:`ID_COLUMNS`).

    Returns:
        A string Series aligned with ``manifest.index``.
    """
    from scipy.sparse import coo_matrix  # noqa: PLC0415 (keeps `import cxrlib.data` light)
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

    n = len(manifest)
    rows, nodes, names = [], [], []
    for column in ID_COLUMNS:
        if column not in manifest.columns:
            continue
        ids = _ids(manifest, column)
        present = np.flatnonzero(ids.notna().to_numpy())
        codes, uniques = pd.factorize(ids.iloc[present])
        rows.append(present)
        nodes.append(n + len(names) + codes)
        names.extend(f"{column}:{u}" for u in uniques)
    if names:
        r, c = np.concatenate(rows), np.concatenate(nodes)
        graph = coo_matrix((np.ones(r.size, np.int8), (r, c)), shape=(n + len(names),) * 2)
        _, component = connected_components(graph, directed=False)
    else:
        component = np.arange(n)
    best: dict[int, str] = {}
    for node, name in enumerate(names, start=n):
        k = component[node]
        if k not in best or name < best[k]:
            best[k] = name
    lonely = (manifest["rel_path"].astype(str).tolist() if "rel_path" in manifest.columns
              else [str(i) for i in range(n)])
    keys = [best.get(component[i]) or f"image:{lonely[i]}" for i in range(n)]
    return pd.Series(keys, index=manifest.index, dtype=object)


def film_sources(films: pd.DataFrame) -> pd.Series:
    """The source (hospital, repository) of every film: one rule for the per-source table and
    leave-one-source-out, so the audit's steps always name the same sources.

    The ``source`` column when it names two or more; else the top-level folder of ``rel_path``
    when every film lies in one, there are two or more, and they are neither the class folders
    (one folder per label) nor split folders (``train/``, ``test/``...: the names the layouts
    recognise, :data:`cxrlib.data.layouts.SPLIT_FOLDERS`, which record how the set was split, not
    where its films came from: when any top-level folder is one, the top level is the split's
    and names no sources); else the one named source (``""`` when there is none). Name the
    sources on the whole dataset, then choose rows: a subset may not tell its sources apart.

    Args:
        films: ``rel_path`` and ``label`` per film, optionally ``source``.

    Returns:
        A string Series on ``films``' index.
    """
    from cxrlib.data.layouts import SPLIT_FOLDERS  # noqa: PLC0415 (layouts imports OpenCV)

    if "source" in films:
        source = films["source"].fillna("").astype(str)
    else:
        source = pd.Series("", index=films.index, dtype=object)
    if source.nunique() >= 2:
        return source
    parts = films["rel_path"].astype(str).map(lambda p: PurePosixPath(p).parts)
    if len(parts) and (parts.map(len) >= 2).all():
        top = parts.map(lambda p: p[0])
        split_level = top.str.lower().isin(list(SPLIT_FOLDERS)).any()
        by_class = (top.groupby(films["label"]).nunique() == 1).all()
        if top.nunique() >= 2 and not by_class and not split_level:
            return top
    return source
