"""A film's manifest row: its ids and source (from manifest.csv, else the file name), its
header facts, and the extra columns a user's manifest.csv brings."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from cxrlib.core.classes import canonical_class
from cxrlib.data.identity import patient_id_from_name
from cxrlib.data.imageio import IMAGE_SUFFIXES, ImageMeta
from cxrlib.data.layouts import CONFLICT, Candidate
from cxrlib.data.roots import DatasetFolder, printable

MANIFEST_COLUMNS = ["path", "rel_path", "label", "patient_id", "group_id", "source", "width",
                    "height", "channels", "bit_depth", "format", "mask_path", "folder_split",
                    "file_bytes", "digest"]
"""The columns every scanned manifest has, in this order (extra manifest.csv columns follow)."""


def _rel(path: str, folder: Path | str) -> str:
    """``path`` relative to ``folder`` with ``/`` separators (``path`` itself when outside it)."""
    prefix = os.path.join(str(folder), "")
    if not path.startswith(prefix):
        return path
    return path[len(prefix):].replace(os.sep, "/")



def manifest_row(c: Candidate, rel: str, meta: ImageMeta, base: Path,
         table: dict[str, dict[str, str]] | None, layout: str) -> dict:
    info: dict[str, str] = {}
    if table:
        info = table.get(_rel(c.path, base), {})
    name = os.path.basename(c.path)
    patient = info.get("patient_id") or patient_id_from_name(name) or os.path.splitext(name)[0]
    row = {"path": c.path, "rel_path": rel, "label": c.label, "patient_id": patient,
           "group_id": info.get("group_id") or patient,
           "source": info.get("source") or info.get("source_repo") or layout,
           "width": meta.width, "height": meta.height, "channels": meta.channels,
           "bit_depth": meta.bit_depth, "format": meta.format, "mask_path": c.mask,
           "folder_split": c.split}
    if layout == "kermany":
        row["kermany_split"] = c.split
    return row


_CONSUMED_COLUMNS = ("file", "label", "patient_id", "group_id", "source", "mask_path", CONFLICT)


def manifest_masks(candidates: list[Candidate], manifest_folder: Path,
                   table: dict[str, dict[str, str]] | None, inside: DatasetFolder,
                   warnings: list[str]) -> None:
    """Give each film without a mask of its layout's own the ``mask_path`` its manifest.csv row
    names (relative to the manifest's folder, as its ``file`` is), when that is an image file
    inside the dataset folder.

    A path that leads outside (absolute, ``../``, a link) is refused before it is looked at; it,
    a path to no file and a file that is not an image are counted in one warning, and those
    films' lungs are predicted.
    """
    if not table or not any(info.get("mask_path") for info in table.values()):
        return
    refused = 0
    for c in candidates:
        named = (table.get(_rel(c.path, manifest_folder), {}).get("mask_path") or "").strip()
        if c.mask or not named:
            continue
        path = os.path.normpath(os.path.join(manifest_folder, named.replace("\\", "/")))
        if path.lower().endswith(IMAGE_SUFFIXES) and inside.regular_file(path):
            c.mask = path
        else:
            refused += 1
    if refused:
        warnings.append(f"{refused} manifest.csv mask paths name no image file inside the "
                        "dataset folder; those films' lungs are predicted")


def extra_manifest_columns(table: dict[str, dict[str, str]] | None) -> dict[str, str]:
    """The other columns of a manifest.csv, carried into the manifest: ``{csv name: column}``.

    Every column a user's manifest.csv brings (cxr3's ``view``, ``notes``, ``source_repo``,
    ``license``...) becomes a manifest column of the same name, so subgroup analysis can use
    it; a name the scan itself fills (``width``, ``format``...) is kept as ``manifest_<name>``.
    ``file``, ``label``, ``patient_id``, ``group_id``, ``source`` and ``mask_path`` are already
    used.
    """
    if not table:
        return {}
    names = dict.fromkeys(k for info in table.values() for k in info)
    return {k: (f"manifest_{k}" if k in MANIFEST_COLUMNS or k == "kermany_split" else k)
            for k in names if k and k not in _CONSUMED_COLUMNS}


def extra_values(c: Candidate, base: Path, table: dict[str, dict[str, str]] | None,
                  extra: dict[str, str]) -> dict[str, str]:
    info = table.get(_rel(c.path, base), {}) if table and extra else {}
    return {column: info.get(name, "") for name, column in extra.items()}


def check_labels(manifest: pd.DataFrame, table: dict[str, dict[str, str]], base: Path,
                  warnings: list[str]) -> None:
    listed = {f: canonical_class(info["label"]) for f, info in table.items()}
    clash = sum(1 for p, lab in zip(manifest["path"], manifest["label"])
                if listed.get(_rel(p, base), lab) != lab)
    if clash:
        warnings.append(f"{clash} files have a different label in manifest.csv than their "
                        "folder; the folder's class is used")


def check_copies(manifest: pd.DataFrame, warnings: list[str]) -> None:
    """Films whose bytes are identical (the same content digest) under two labels: one picture
    taught as two classes. Named once, with one example; copies under one label are left to the
    near-duplicate clusters (they share a group, so never cross a split)."""
    known = manifest[manifest["digest"] != ""]
    labels = known.groupby("digest")["label"].nunique()
    clashing = sorted(labels.index[labels > 1])
    if not clashing:
        return
    first = known[known["digest"] == clashing[0]].sort_values(["label", "rel_path"])
    example = " and ".join(f"{printable(rel)} ({label})"
                           for rel, label in zip(first["rel_path"], first["label"]))
    films = f"{len(clashing)} film{' is' if len(clashing) == 1 else 's are'}"
    warnings.append(f"{films} in the dataset as byte-identical copies under two labels, e.g. "
                    f"{example}: each copy counts in its class")
