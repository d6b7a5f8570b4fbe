"""Dataset services: open and validate the sidebar's folder, the synthetic demo, films, grids."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from cxrlib.data import datasets, roots, stats

from cxrlib.data import imageio

from cxrlib.core import paths
from cxrlib.core.classes import task_classes
from cxrlib.core.config import DataConfig
from cxrlib.data.synthetic import DEMO_README, make_synthetic_dataset

from .bytecache import byte_cached
from .core import DATA_DIR, DISPLAY_MAX_SIDE, TASK, TASK_LABELS, file_stamp, md_literal, shrink


@dataclass(frozen=True)
class DataStatus:
    """Outcome of opening the sidebar's dataset folder.

    Attributes:
        level: ``"ok"``, ``"empty"`` (nothing to read: offer the demo), or ``"error"``
            (``cxrlib.data.datasets`` not written yet).
        message: what to tell the user.
        dataset: the scanned dataset restricted to the task's classes (``ok`` only).
        full: the scanned dataset with every class found (``ok`` only).
    """

    level: str
    message: str
    dataset: Any = None
    full: Any = None


def init_state() -> None:
    """Default values of the shared session state: the dataset folder from the address
    (``?data=``: a reload or a shared link keeps it, and so its run), else ``CXR_DATA_DIR``. The
    folder is checked against ``CXR_DATA_ROOTS`` when opened, wherever it came from."""
    from .address import from_address  # noqa: PLC0415

    from_address("data", DATA_DIR)
    st.session_state.setdefault(DATA_DIR, str(paths.default_data_dir()))
    from_address("task", TASK, valid=TASK_LABELS)  # a reload or a shared link keeps its task
    st.session_state.setdefault(TASK, "3class")
    # Streamlit sends a keyed widget's value to the browser only in a run that set it; a browser
    # that missed that run's output (a click before the first page had drawn, under load) drew
    # the box at its empty default and sent it back, and the session lost its dataset (issue 22).
    # Setting both values in every run sends them with every run.
    for key in (DATA_DIR, TASK):
        st.session_state[key] = st.session_state[key]


def data_config() -> DataConfig:
    """The sidebar's dataset folder (absolute, so a background run finds it) and task."""
    root = str(st.session_state.get(DATA_DIR, "")).strip()
    try:  # os.path's, not pathlib's: an unknown ~user stays as typed, and is said not to exist
        root = os.path.realpath(os.path.expanduser(root)) if root else ""
    except ValueError:  # a NUL: kept as typed, for open_dataset to say why
        pass
    return DataConfig(root=root, task=st.session_state.get(TASK, "3class"))


def folder_stamp(root: Path) -> str:
    """A cheap change detector: mtimes of the folder, its sub-folders and its manifest."""
    parts = [f"{root}:{root.stat().st_mtime_ns}"]
    for child in sorted(root.iterdir()):
        if child.is_dir() or child.name == "manifest.csv":
            parts.append(f"{child.name}:{child.stat().st_mtime_ns}:{child.stat().st_size}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@st.cache_resource(show_spinner="Scanning the dataset folder…", max_entries=6)
def _scan(root: str, bacterial: str, stamp: str):
    return datasets.scan_dataset(root, bacterial=bacterial)


@byte_cached(0.05)
def _for_task(root: str, bacterial: str, stamp: str, task: str, _full):
    """The task's rows of a scanned dataset, with their fingerprint (a hash over every row:
    about 50 ms for 1800 films, and the sidebar and the page each asked on every rerun)."""
    return _full.for_task(task)


def _precheck(root: Path) -> DataStatus | None:
    """Friendly messages for folders that cannot hold a dataset, before any scanning."""
    if not root.exists():
        return DataStatus("error", f"The folder `{root}` does not exist. Type the path of a dataset "
                                   "folder, or build the synthetic demo on the Home page.")
    if not root.is_dir():
        return DataStatus("error", f"`{root}` is a file, not a folder. Give the folder that holds "
                                   "one sub-folder per class (or a manifest.csv).")
    if not os.access(root, os.R_OK | os.X_OK):
        return DataStatus("error", f"The folder `{root}` cannot be read (permission denied).")
    try:
        entries = [e for e in root.iterdir() if not e.name.startswith(".")]
    except OSError as exc:
        return DataStatus("error", f"The folder `{root}` cannot be read: {exc.strerror or exc}.")
    useful = [e for e in entries if e.is_dir() or e.name == "manifest.csv"
              or e.suffix.lower() in imageio.IMAGE_SUFFIXES]
    if not useful:
        return DataStatus("empty", f"The folder `{root}` holds no images and no class folders yet.")
    return None


def dataset_status() -> DataStatus:
    """Open (and cache) the sidebar's dataset; never raises."""
    return open_dataset(data_config())


def open_dataset(cfg: DataConfig) -> DataStatus:
    """Open (and cache) the dataset of ``cfg`` (its folder and task); never raises."""
    if not cfg.root:
        return DataStatus("empty", "No dataset folder is given yet.")
    root = Path(cfg.root)
    try:  # before anything looks at the folder: a refused path reveals nothing, not even existence
        roots.check_allowed(root)
    except roots.FolderNotAllowed as exc:
        return DataStatus("error", f"{exc}. Give a folder inside one of them.")
    except roots.UnusablePath as exc:
        return DataStatus("error", f"{exc}.")
    early = _precheck(root)
    if early is not None:
        return early
    try:
        key = (str(root.resolve()), cfg.bacterial, folder_stamp(root))
        full = _scan(*key)
    except datasets.DatasetError as exc:
        return DataStatus("error", f"`{root}` is not a dataset CXR Explorer can read: {exc}")
    except OSError as exc:
        return DataStatus("error", f"`{root}` could not be read: {exc}")
    try:
        ds = _for_task(*key, cfg.task, full)
    except (ValueError, KeyError) as exc:
        return DataStatus("error", str(exc))
    if len(ds.manifest) == 0:
        return DataStatus("error", f"`{root}` has no images of the classes of the task "
                                   f"({', '.join(task_classes(cfg.task))}).")
    n_cls = ds.manifest["label"].nunique()
    return DataStatus("ok", f"{len(ds.manifest):,} images · {n_cls} classes · layout: {ds.layout}",
                      ds, full)


def require_dataset(*, full: bool = False):
    """The current dataset for a page, or a warning pointing to the sidebar / Home and a stop."""
    status = dataset_status()
    if status.level == "ok":
        return status.full if full else status.dataset
    st.warning(f"No dataset is open. {status.message}", icon=":material/folder_off:")
    st.page_link("views/home.py", label="Home: accepted layouts and the synthetic demo",
                 icon=":material/home:")
    st.stop()


def demo_folder() -> Path:
    """Where the demo dataset goes: ``data/synthetic-demo`` of the workspace, never a user folder."""
    base = paths.workspace() / "data"
    for i in range(1, 100):
        folder = base / ("synthetic-demo" if i == 1 else f"synthetic-demo-{i}")
        readme = folder / "README.txt"
        if not folder.exists():
            return folder
        if readme.exists() and readme.read_text(encoding="utf-8", errors="replace") == DEMO_README:
            return folder  # ours from an earlier click: reuse it, do not rewrite
    raise RuntimeError(f"no free demo folder name under {base}")


def build_demo_dataset() -> None:
    """Button callback: write (or reuse) the synthetic demo dataset and switch the sidebar to it."""
    folder = demo_folder()
    if not (folder / "manifest.csv").exists():
        make_synthetic_dataset(folder, n_per_class=40, size=256, seed=0)
    st.session_state[DATA_DIR] = str(folder)
    st.session_state["demo_built"] = str(folder)


def is_demo(ds) -> bool:
    """Whether a dataset is the synthetic demo (its README says so)."""
    readme = Path(ds.root) / "README.txt"
    return readme.exists() and readme.read_text(encoding="utf-8", errors="replace") == DEMO_README


@byte_cached(0.2)  # films: 20 % of CXR_CACHE_MB
def _read_film(stamp: str, path: str):
    return imageio.read_film(path)


def film(path: str | Path):
    """Decoded :class:`cxrlib.data.imageio.Film` of a file (cached; raises ``ImageReadError``)."""
    return _read_film(file_stamp(path), str(path))


@byte_cached(0.05, spinner="Decoding the upload…")
def _decode_upload(digest: str, name: str, _data: bytes):
    return imageio.decode_film(_data, name)


def upload_film(uploaded) -> tuple[Any, str]:
    """Decode a ``st.file_uploader`` file; returns the film and a content key (sha256)."""
    data = uploaded.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    return _decode_upload(digest, uploaded.name, data), digest


@byte_cached(0.05)
def display_copy(key: str, _pixels):
    """``_pixels`` downscaled for display, cached under ``key`` (the file's stamp)."""
    return shrink(_pixels, DISPLAY_MAX_SIDE)


def display_pixels(path: str | Path):
    """The film of ``path`` downscaled to at most :data:`DISPLAY_MAX_SIDE` (for previews)."""
    return display_copy(file_stamp(path), film(path).pixels)


@st.cache_data(max_entries=8, show_spinner=False)
def _stats(fingerprint: str, task: str | None, _ds):
    return stats.dataset_stats(_ds)


def dataset_stats(ds):
    """Per-class statistics of a dataset (cached on its fingerprint and task)."""
    return _stats(ds.fingerprint, ds.task, ds)


def crosstab(ds, column: str):
    """Images per ``column`` value (rows, e.g. source or format) and class (columns)."""
    import pandas as pd

    m = ds.manifest
    values = m[column].fillna("").astype(str).replace("", "(unknown)")
    table = pd.crosstab(values.rename(column), m["label"], margins=True, margins_name="total")
    return table.rename_axis(columns=None)


def sample_rows(ds, label: str, n: int, seed: int):
    """``n`` random manifest rows of one class (seeded, so a reshuffle is a new seed)."""
    rows = ds.manifest[ds.manifest["label"] == label]
    return rows.sample(min(n, len(rows)), random_state=seed) if len(rows) else rows


@byte_cached(0.05)  # grids' thumbnails
def _thumb(stamp: str, path: str, side: int):
    """A film shrunk to ``side`` px (cached under the file's stamp)."""
    return shrink(film(path).pixels, side)


def thumbnail(path: str, side: int = 192):
    """A small copy of a film for grids; ``None`` when the file cannot be read."""
    try:
        return _thumb(file_stamp(path), str(path), side)
    except Exception:  # noqa: BLE001 - a grid shows a placeholder for an unreadable file
        return None


def image_grid(rows, captions: list[str], *, per_row: int = 6, side: int = 192) -> None:
    """Films of ``rows`` (a frame with ``path``) in a grid of ``per_row`` columns.

    Captions are Markdown (``:orange[...]`` highlights an error) and sit under each film: the
    caller escapes what users named in them (:func:`~app_services.core.md_literal`).
    """
    items = list(zip(rows["path"].tolist(), captions))
    for start in range(0, len(items), per_row):
        cols = st.columns(per_row)
        for col, (path, caption) in zip(cols, items[start:start + per_row]):
            thumb = thumbnail(path, side)
            if thumb is None:
                col.warning(f"unreadable: {md_literal(Path(path).name)}")
            else:
                col.image(thumb, width="stretch")
                col.caption(caption)


def path_of(ds, rel_path: str) -> str:
    """Absolute path of a manifest row given its ``rel_path``."""
    match = ds.manifest.loc[ds.manifest["rel_path"] == rel_path, "path"]
    if match.empty:
        raise KeyError(f"{rel_path} is not in the dataset")
    return str(match.iloc[0])
