"""The shortcut remedies of issue 23 as run settings: intensity standardisation (Nyúl–Udupa),
source balancing and acquisition-style augmentation, checked against independent NumPy
computations and hand counts; their config fields keep earlier run ids."""
from __future__ import annotations

import numpy as np
import pytest

from cxrlib.core.config import NYUL_PERCENTILES, PreprocessConfig, RunConfig, TrainConfig


def _films(n=6, size=48, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):  # different exposure and contrast per film
        base = rng.normal(60 + 20 * i, 15 + 5 * i, (size, size))
        out.append(np.clip(base, 0, 255).astype(np.uint8))
    return out


def test_landmarks_are_numpys_percentiles():
    from cxrlib.preprocessing.standardise import landmarks

    for film in _films():
        assert np.allclose(landmarks(film), np.percentile(film, NYUL_PERCENTILES))


def test_learned_scale_and_mapping_against_a_numpy_reference():
    from cxrlib.preprocessing.standardise import learn_scale, standardise_film

    films = _films()
    # reference: percentiles, each film's 1st..99th stretched onto 0..255, mean over films
    ref = []
    for f in films:
        p = np.percentile(f, NYUL_PERCENTILES)
        ref.append((p - p[0]) / (p[-1] - p[0]) * 255)
    scale = np.mean(ref, axis=0)
    learned = learn_scale(films)
    assert np.allclose(learned, scale, atol=1e-3)
    for f in films:
        p = np.percentile(f, NYUL_PERCENTILES)
        mapped = standardise_film(f, learned)
        # the reference map: np.interp through the landmarks (inside the 1st..99th percentile)
        inside = (f >= p[0]) & (f <= p[-1])
        expect = np.clip(np.rint(np.interp(f.astype(float), p, scale)), 0, 255)
        assert np.array_equal(mapped[inside], expect[inside].astype(np.uint8))
        # the film's own landmarks land on the standard scale (to a grey level of rounding)
        assert np.allclose(np.percentile(mapped, NYUL_PERCENTILES), scale, atol=1.5)


def test_standardisation_removes_a_contrast_difference_between_films():
    from cxrlib.preprocessing.standardise import learn_scale, standardise_film

    film = _films(1)[0]
    darker = np.clip(film.astype(float) * 0.6 + 10, 0, 255).astype(np.uint8)  # another contrast
    scale = learn_scale([film])
    a, b = standardise_film(film, scale), standardise_film(darker, scale)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0
    assert np.abs(film.astype(int) - darker.astype(int)).mean() > 10


def test_pipeline_refuses_an_unlearned_scale_and_applies_a_learned_one():
    from cxrlib.preprocessing import preprocess_film
    from cxrlib.preprocessing.standardise import learn_scale, standardise_film

    film = _films(1, size=64)[0]
    with pytest.raises(ValueError, match="learned scale"):
        preprocess_film(film, PreprocessConfig(steps=(), size=32, standardise="nyul"))
    plain = preprocess_film(film, PreprocessConfig(steps=(), size=32))
    scale = learn_scale([plain])
    cfg = PreprocessConfig(steps=(), size=32, standardise="nyul", standard_scale=scale)
    assert np.array_equal(preprocess_film(film, cfg), standardise_film(plain, scale))


def test_source_balance_weights_by_hand():
    from cxrlib.training.source_balance import cell_weights

    labels = ["A", "A", "A", "B", "B", "A"]
    sources = ["s1", "s1", "s1", "s1", "s2", "s2"]
    # cells: (A,s1) 3 rows, (B,s1) 1, (B,s2) 1, (A,s2) 1; N=6, K=4: weight 6 / (4 n)
    expected = [0.5, 0.5, 0.5, 1.5, 1.5, 1.5]
    assert np.allclose(cell_weights(labels, sources), expected)
    w = np.asarray(expected)
    assert w.mean() == pytest.approx(1.0)  # each cell sums to N / K = 1.5
    assert [w[[0, 1, 2]].sum(), w[3], w[4], w[5]] == pytest.approx([1.5] * 4)


def test_source_balance_repeats_for_feature_copies():
    from cxrlib.training.source_balance import training_weights

    onehot = np.eye(2, dtype=np.float32)[[0, 0, 1, 1]]
    sources = np.array(["x", "y", "x", "x"])
    t = TrainConfig(source_balance=True)
    w = training_weights(t, onehot, sources, np.array([0, 1, 2]), copies=2)
    # rows 0 (A,x), 1 (A,y), 2 (B,x): three cells of one row, N=3: all 1
    assert np.allclose(w, np.ones(6))
    assert training_weights(TrainConfig(), onehot, sources, np.array([0, 1]), 1) is None


def test_acquisition_augmentation_is_seeded_varied_and_never_flips():
    from cxrlib.preprocessing.acquisition import acquisition_augment

    film = np.zeros((64, 64), np.uint8)
    film[:, :20] = 220  # a bright left side: a flip would move it right
    films = np.stack([film] * 12)
    a = acquisition_augment(films, 1.0, np.random.default_rng(5))
    b = acquisition_augment(films, 1.0, np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert a.shape == films.shape and a.dtype == np.uint8
    assert len({x.tobytes() for x in a}) > 6  # the copies differ from one another
    assert (a[:, :, :16].mean(axis=(1, 2)) > a[:, :, -16:].mean(axis=(1, 2)) + 50).all()


def test_remedy_fields_keep_earlier_ids_and_canonicalise():
    base = RunConfig()
    assert "acquisition" not in base.identity()["train"]
    assert "standardise" not in base.identity()["preprocess"]
    assert PreprocessConfig().hash() == PreprocessConfig(standard_scale=()).hash()
    # no feature copies in head mode: nothing to augment, one run id
    assert TrainConfig(acquisition=0.5) == TrainConfig()
    on = TrainConfig(feature_augment_copies=2, acquisition=0.5)
    assert on.identity_dict()["acquisition"] == 0.5
    assert TrainConfig(source_balance=True).identity_dict()["source_balance"] is True
    with pytest.raises(ValueError, match="head-mode"):
        TrainConfig(mode="finetune", source_balance=True)
    with pytest.raises(ValueError, match="standard_scale"):
        PreprocessConfig(standardise="nyul", standard_scale=(1.0, 2.0))
    assert PreprocessConfig(standardise="none", standard_scale=tuple(range(10))).standard_scale == ()


def test_unit_weights_train_the_head_exactly_as_no_weights():
    """The weighted-loss hook of the compiled head loop: all-ones weights change nothing."""
    from cxrlib.core.tfsetup import keras
    from cxrlib.training.finetune import compile_classifier
    from cxrlib.training.head_fit import fit_head_compiled

    k = keras()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    outs = []
    for w in (None, np.ones(40, np.float32), np.linspace(0.2, 2, 40).astype(np.float32)):
        k.utils.set_random_seed(1)
        head = k.Sequential([k.Input((8,)), k.layers.Dense(3, activation="softmax")])
        compile_classifier(head, 1e-2)
        fit_head_compiled(head, x, y, x[:10], y[:10], epochs=3, batch_size=8, seed=0,
                          callbacks=[], sample_weight=w)
        outs.append(head.get_weights()[0])
    assert np.allclose(outs[0], outs[1], atol=1e-6)
    assert not np.allclose(outs[0], outs[2], atol=1e-4)


def test_acquisition_strengths_switch_their_transforms_off():
    from cxrlib.preprocessing.acquisition import acquisition_augment

    rng = np.random.default_rng(0)
    films = rng.integers(30, 220, (8, 32, 32)).astype(np.uint8)
    assert np.array_equal(acquisition_augment(films, 0.0, np.random.default_rng(1), 0.0), films)
    contrast = acquisition_augment(films, 0.0, np.random.default_rng(1), 1.0)
    changed = [not np.array_equal(a, b) for a, b in zip(contrast, films)]
    assert any(changed)
    # intensity only: a monotone map of each film, so the pixel order is kept where it changed
    for a, b in zip(contrast, films):
        order = np.argsort(b.ravel(), kind="stable")
        assert (np.diff(a.ravel()[order].astype(int)) >= 0).all()


def test_train_flags_set_the_remedies():
    from cxrlib.cli import build_parser
    from cxrlib.cli.train import config_from_args

    args = build_parser().parse_args(
        ["train", "--data", "/d", "--feature-augment-copies", "3", "--no-augment", "--acquisition", "0.8",
         "--acquisition-contrast", "0.2", "--source-balance", "--standardise", "nyul"])
    cfg = config_from_args(args)
    assert (cfg.train.feature_augment_copies, cfg.train.acquisition, cfg.train.acquisition_contrast,
            cfg.train.source_balance, cfg.preprocess.standardise) == (3, 0.8, 0.2, True, "nyul")
    assert cfg.preprocess.standard_scale == ()  # learned by `train` on the training rows, not here
    plain = config_from_args(build_parser().parse_args(["train", "--data", "/d"]))
    # the head preset's remedy (issue 23's sweep): 2 acquisition-style copies, no rotation or flip
    assert (plain.train.feature_augment_copies, plain.train.acquisition, plain.train.augment,
            plain.train.source_balance, plain.preprocess.standardise) == (2, 1.0, False, False, "none")
    bare = config_from_args(build_parser().parse_args(
        ["train", "--data", "/d", "--feature-augment-copies", "0"]))
    assert bare.train.feature_augment_copies == 0 and bare.model == RunConfig().model
