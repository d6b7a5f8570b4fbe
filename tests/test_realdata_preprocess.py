"""Real-data tier: on real chest films the fast preprocessing is the published one, bit for bit."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cxrlib import preprocessing as pp
from cxrlib.preprocessing import tensor_cache
from cxrlib.core.config import PreprocessConfig
from cxrlib.data.imageio import read_film

pytestmark = pytest.mark.realdata

WB_CLAHE = PreprocessConfig(steps=("white_balance", "clahe"))


def _table(root, every: int = 1) -> pd.DataFrame:
    table = pd.read_csv(root / "manifest.csv").sort_values("file").iloc[::every]
    return table.assign(path=[str(root / f) for f in table["file"]], rel_path=table["file"])


def _check_film(film: np.ndarray, name: str, cfg: PreprocessConfig) -> np.ndarray:
    np.testing.assert_array_equal(pp.white_balance(film, 0.05), pp.white_balance_reference(film, 0.05),
                                  err_msg=name)
    ours = pp.preprocess_film(film, cfg)
    np.testing.assert_array_equal(ours, pp.preprocess_reference(film, cfg), err_msg=name)
    return ours


def test_fast_equals_reference_on_a_sample_of_cxr3(cxr3, workspace):
    table = _table(cxr3, every=36)  # 50 films across the three classes and all sources
    assert len(table) == 50 and table["label"].nunique() == 3
    expected = np.stack([_check_film(read_film(p).pixels, p, WB_CLAHE) for p in table["path"]])
    assert expected.std() > 20  # real content, not blank frames
    # The tensor cache holds exactly these bytes.
    stand_in = SimpleNamespace(manifest=table.reset_index(drop=True), fingerprint="cxr3-sample")
    entry = tensor_cache.load_tensors(stand_in, WB_CLAHE)
    assert entry.problems == []
    np.testing.assert_array_equal(entry.images, expected)
    assert tensor_cache.load_tensors(stand_in, WB_CLAHE).hit


@pytest.mark.slow
def test_fast_equals_reference_on_all_fullres_films(cxr3_fullres):
    table = _table(cxr3_fullres)
    assert len(table) == 30
    sides = []
    for path in table["path"]:
        film = read_film(path).pixels
        sides.append(max(film.shape[:2]))
        published = pp.white_balance_reference(film, 0.05)  # ~1 s on a 4000 px colour film
        np.testing.assert_array_equal(pp.white_balance(film, 0.05), published, err_msg=path)
        expected = pp.resize_square(pp.clahe(pp.to_grey(published), 2.0, 8), WB_CLAHE.size)
        np.testing.assert_array_equal(pp.preprocess_film(film, WB_CLAHE), expected, err_msg=path)
    assert max(sides) > 4000 and min(sides) >= 1024
