"""Tensor cache: a hit decodes nothing, keys follow data and settings, writes are atomic,
bad films become zero rows with a recorded problem."""
from __future__ import annotations

import subprocess
import sys
import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrlib.data import imageio

from cxrlib.core import paths

from cxrlib.preprocessing import tensor_cache
from cxrlib.core.config import PreprocessConfig
from cxrlib.data.datasets import scan_dataset
from cxrlib.preprocessing.pipeline import preprocess_film
from cxrlib.data.synthetic import make_synthetic_dataset

CFG = PreprocessConfig(steps=("white_balance", "clahe"), size=32)


class Crash(BaseException):
    """Stands for the process dying mid-fill (not an ordinary decode error)."""


@pytest.fixture
def dataset(tmp_path, workspace):
    root = make_synthetic_dataset(tmp_path / "films", n_per_class=4, size=48, seed=3)
    return scan_dataset(root)


@pytest.fixture
def read_calls(monkeypatch):
    """Counts imageio.read_film calls (from any thread)."""
    calls: list[str] = []
    lock = threading.Lock()
    real = imageio.read_film

    def counting(path, **kwargs):
        with lock:
            calls.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(imageio, "read_film", counting)
    return calls


def _expected(dataset, cfg):
    return np.stack([preprocess_film(cv2.imread(p, cv2.IMREAD_GRAYSCALE), cfg)
                     for p in dataset.manifest["path"]])


def test_miss_then_hit_decodes_nothing(dataset, read_calls):
    n = len(dataset.manifest)
    first = tensor_cache.load_tensors(dataset, CFG, workers=2)
    assert not first.hit and len(read_calls) == n
    assert first.rel_paths == list(dataset.manifest["rel_path"])
    np.testing.assert_array_equal(first.images, _expected(dataset, CFG))

    second = tensor_cache.load_tensors(dataset, CFG, workers=2)
    assert second.hit and len(read_calls) == n  # nothing decoded
    assert second.key == first.key and second.problems == []
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    np.testing.assert_array_equal(second.images, first.images)
    assert second.folder == paths.cache_dir("tensors") / first.key


def test_key_follows_config_fingerprint_and_rows(dataset):
    rel = list(dataset.manifest["rel_path"])
    key = tensor_cache.tensor_key(dataset.fingerprint, CFG, rel)
    assert key == tensor_cache.tensor_key(dataset.fingerprint, PreprocessConfig(
        steps=("white_balance", "clahe"), size=32), rel)
    others = {
        tensor_cache.tensor_key(dataset.fingerprint, CFG.replace(size=48), rel),
        tensor_cache.tensor_key(dataset.fingerprint, CFG.replace(steps=("clahe",)), rel),
        tensor_cache.tensor_key(dataset.fingerprint, CFG.replace(clahe_clip_limit=3.0), rel),
        tensor_cache.tensor_key("0" * 16, CFG, rel),
        tensor_cache.tensor_key(dataset.fingerprint, CFG, rel[:-1]),
        tensor_cache.tensor_key(dataset.fingerprint, CFG, rel[::-1]),
    }
    assert key not in others and len(others) == 6
    # Through load_tensors: another task's subset and another fingerprint are other entries.
    full = tensor_cache.load_tensors(dataset, CFG)
    binary = tensor_cache.load_tensors(dataset.for_task("binary"), CFG)
    assert not binary.hit and binary.key != full.key
    assert len(binary.rel_paths) == len(full.rel_paths) * 2 // 3
    renamed = SimpleNamespace(manifest=dataset.manifest, fingerprint="f" * 16)
    assert not tensor_cache.load_tensors(renamed, CFG).hit


def test_changed_file_changes_fingerprint_and_entry(dataset, read_calls):
    first = tensor_cache.load_tensors(dataset, CFG)
    target = dataset.manifest["path"].iloc[0]
    cv2.imwrite(target, np.full((48, 48), 200, np.uint8))
    rescanned = scan_dataset(dataset.root)
    assert rescanned.fingerprint != dataset.fingerprint
    again = tensor_cache.load_tensors(rescanned, CFG)
    assert not again.hit and again.key != first.key
    np.testing.assert_array_equal(again.images[0], preprocess_film(cv2.imread(target, 0), CFG))


def test_crash_mid_fill_leaves_no_entry_and_next_call_rebuilds(dataset, read_calls, monkeypatch):
    counting = imageio.read_film

    def dies_on_fifth(path, **kwargs):
        if len(read_calls) >= 4:
            raise Crash()
        return counting(path, **kwargs)

    monkeypatch.setattr(imageio, "read_film", dies_on_fifth)
    with pytest.raises(Crash):
        tensor_cache.load_tensors(dataset, CFG, workers=1)
    root = paths.cache_dir("tensors")
    assert [p.name for p in root.iterdir()] == []  # neither an entry nor a partial folder

    monkeypatch.setattr(imageio, "read_film", counting)
    read_calls.clear()
    rebuilt = tensor_cache.load_tensors(dataset, CFG)
    assert not rebuilt.hit and len(read_calls) == len(dataset.manifest)
    np.testing.assert_array_equal(rebuilt.images, _expected(dataset, CFG))


KILLED_CHILD = """
import os, sys
sys.path.insert(0, sys.argv[1])
from cxrlib.data import imageio
from cxrlib.preprocessing import tensor_cache
from cxrlib.core.config import PreprocessConfig
from cxrlib.data.datasets import scan_dataset
real, calls = imageio.read_film, []
def dies(path, **kw):
    calls.append(path)
    if len(calls) == 5:
        os._exit(9)  # killed mid-fill: no exception handler, no clean-up runs
    return real(path, **kw)
imageio.read_film = dies
tensor_cache.load_tensors(scan_dataset(sys.argv[2]), PreprocessConfig(
    steps=("white_balance", "clahe"), size=32), workers=1)
"""


def test_process_killed_mid_fill_leaves_nothing_valid(dataset, read_calls):
    child = subprocess.run([sys.executable, "-c", KILLED_CHILD, str(paths.PROJECT_ROOT),
                            str(dataset.root)], capture_output=True, text=True)
    assert child.returncode == 9, child.stderr
    key = tensor_cache.tensor_key(dataset.fingerprint, CFG, list(dataset.manifest["rel_path"]))
    root = paths.cache_dir("tensors")
    leftovers = [p.name for p in root.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{key}.partial-")  # half-built
    entry = tensor_cache.load_tensors(dataset, CFG)
    assert not entry.hit and len(read_calls) == len(dataset.manifest)
    np.testing.assert_array_equal(entry.images, _expected(dataset, CFG))
    assert [p.name for p in root.iterdir()] == [key]  # the dead process's folder is gone


def test_leftovers_of_a_killed_process_are_never_read_as_valid(dataset, read_calls):
    rel = list(dataset.manifest["rel_path"])
    key = tensor_cache.tensor_key(dataset.fingerprint, CFG, rel)
    root = paths.cache_dir("tensors")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    partial = root / f".{key}.partial-{int(dead.stdout)}-deadbeef"
    partial.mkdir(parents=True)
    np.save(partial / "images.npy", np.ones((len(rel), 32, 32), np.uint8))
    # A final folder whose array was cut short (as a copy interrupted by a crash would leave it).
    folder = root / key
    folder.mkdir()
    full = np.ones((len(rel), 32, 32), np.uint8)
    np.save(folder / "images.npy", full)
    data = (folder / "images.npy").read_bytes()
    (folder / "images.npy").write_bytes(data[: len(data) // 2])
    (folder / "index.json").write_text(
        f'{{"key": "{key}", "rel_paths": {pd.Series(rel).to_json(orient="values")}}}')

    entry = tensor_cache.load_tensors(dataset, CFG)
    assert not entry.hit and len(read_calls) == len(rel)
    np.testing.assert_array_equal(entry.images, _expected(dataset, CFG))
    assert not partial.exists()
    assert tensor_cache.load_tensors(dataset, CFG).hit


def test_bad_film_becomes_zeros_and_a_problem(dataset):
    bad = dataset.manifest["rel_path"].iloc[2]
    with open(dataset.manifest["path"].iloc[2], "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)
    seen: list[tuple[int, int]] = []
    entry = tensor_cache.load_tensors(dataset, CFG, progress=lambda d, t: seen.append((d, t)))
    assert [p["rel_path"] for p in entry.problems] == [bad]
    assert entry.problems[0]["reason"]
    assert not entry.images[2].any()
    assert all(entry.images[i].any() for i in range(len(entry.rel_paths)) if i != 2)
    n = len(entry.rel_paths)
    assert [d for d, _ in seen] == list(range(1, n + 1)) and {t for _, t in seen} == {n}
    again = tensor_cache.load_tensors(dataset, CFG)
    assert again.hit and again.problems == entry.problems


def test_process_pool_gives_the_same_images(dataset):
    threads = np.array(tensor_cache.load_tensors(dataset, CFG, workers=2).images)
    tensor_cache.clear_cache()
    processes = tensor_cache.load_tensors(dataset, CFG, workers=2, executor="process")
    assert not processes.hit
    np.testing.assert_array_equal(processes.images, threads)


def test_empty_dataset(workspace):
    empty = SimpleNamespace(manifest=pd.DataFrame(columns=["path", "rel_path"]), fingerprint="x")
    entry = tensor_cache.load_tensors(empty, CFG)
    assert entry.images.shape == (0, 32, 32) and entry.rel_paths == [] and entry.folder is None
