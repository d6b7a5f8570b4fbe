"""The fine-tune recipe's pieces: config, layer freezing, schedule, test-time augmentation,
the per-epoch order of the input pipeline, the cluster description and the CLI flags."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cxrlib.core import cluster
from cxrlib.core.config import RunConfig, TrainConfig
from cxrlib.models import tta
from cxrlib.training.finetune import cosine_rate, prepare_finetune
from cxrlib.training.input_pipeline import epoch_order, input_pipeline


# ------------------------------------------------------------------------------------ config
def test_head_mode_ignores_fine_tune_settings_so_equal_training_shares_an_id():
    plain = TrainConfig(mode="head")
    odd = TrainConfig(mode="head", schedule="cosine", warmup_epochs=2, freeze_batchnorm=True,
                      finetune_from="block_13_expand", init_from_head=True)
    assert odd == plain and odd.hash() == plain.hash()
    assert TrainConfig(mode="head", tta="shift") != plain  # TTA changes head-mode predictions
    ft = TrainConfig(mode="finetune", schedule="cosine", warmup_epochs=2)
    assert ft.schedule == "cosine" and ft != TrainConfig(mode="finetune")


def test_recipe_is_a_fine_tune_from_the_head_and_round_trips():
    r = TrainConfig.finetune_recipe()
    assert (r.mode, r.init_from_head, r.freeze_batchnorm, r.schedule) == ("finetune", True, True, "cosine")
    assert r.learning_rate < TrainConfig().learning_rate and r.early_stopping
    assert TrainConfig.finetune_recipe(learning_rate=3e-5).learning_rate == 3e-5
    cfg = RunConfig(train=r)
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("bad", [dict(schedule="step"), dict(tta="flip"),
                                 dict(epochs=3, warmup_epochs=3), dict(warmup_epochs=-1)])
def test_invalid_recipe_settings_raise(bad):
    with pytest.raises(ValueError):
        TrainConfig(mode="finetune", **bad)


# ---------------------------------------------------------------------------------- schedule
def test_cosine_rate_warms_up_linearly_then_decays_to_zero():
    peak, warm, total = 1e-3, 10, 110
    assert cosine_rate(0, peak, warm, total) == pytest.approx(peak / 10)
    assert cosine_rate(9, peak, warm, total) == pytest.approx(peak)
    assert cosine_rate(10, peak, warm, total) == pytest.approx(peak)
    assert cosine_rate(60, peak, warm, total) == pytest.approx(peak / 2)  # half-way: cos(pi/2)
    assert cosine_rate(35, peak, warm, total) == pytest.approx(peak * (1 + math.cos(math.pi / 4)) / 2)
    assert cosine_rate(110, peak, warm, total) == pytest.approx(0.0, abs=1e-15)
    rates = [cosine_rate(s, peak, warm, total) for s in range(warm, total)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert cosine_rate(0, peak, 0, 10) == pytest.approx(peak)  # no warm-up


# ----------------------------------------------------------------------------------- freezing
def _bn_model():
    from cxrlib.core.tfsetup import keras

    k = keras()
    k.utils.set_random_seed(0)
    inp = k.Input((8, 8, 3))
    x = k.layers.Conv2D(4, 3, name="c0")(inp)
    x = k.layers.BatchNormalization(name="bn0")(x)
    x = k.layers.Conv2D(4, 3, name="c1")(x)
    x = k.layers.BatchNormalization(name="bn1")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(inp, k.layers.Dense(3, activation="softmax", name="out")(x))


def test_prepare_finetune_freezes_the_trunk_and_batchnorm_runs_in_inference_mode():
    from cxrlib.core.tfsetup import keras

    model = _bn_model()
    info = prepare_finetune(model, TrainConfig(mode="finetune", finetune_from="c1",
                                               freeze_batchnorm=True))
    trainable = {layer.name for layer in model.layers if layer.trainable and layer.weights}
    assert trainable == {"c1", "out"}
    assert info["frozen_layers"] == 3 and info["frozen_batchnorm_layers"] == 1  # bn0 was frozen already
    assert info["trainable_parameters"] == sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    # A training step moves the trainable weights only; the frozen BatchNorm keeps its statistics
    # and normalises with them (training=True output == inference output).
    model.compile(keras().optimizers.SGD(0.5), "categorical_crossentropy")
    x = np.random.default_rng(0).normal(3.0, 2.0, (16, 8, 8, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(16) % 3]
    before = {w.path: np.array(w) for w in model.weights}
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), atol=1e-6)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    moved = {w.path for w in model.weights if not np.array_equal(before[w.path], np.array(w))}
    assert moved and all(p.split("/")[0] in ("c1", "out") for p in moved), moved


def test_prepare_finetune_names_an_unknown_layer():
    with pytest.raises(ValueError, match="not a layer"):
        prepare_finetune(_bn_model(), TrainConfig(mode="finetune", finetune_from="block_13_expand"))


# ----------------------------------------------------------------------------------------- TTA
def test_views_are_the_documented_shifts_and_zooms():
    rng = np.random.default_rng(1)
    films = rng.integers(0, 256, (3, 50, 50), dtype=np.uint8)
    assert tta.view(films, 0.0, 0.0, 1.0) is films
    shifted = tta.view(films, tta.SHIFT, 0.0, 1.0)  # 0.04 * 50 = 2 px to the right
    padded = np.pad(films, ((0, 0), (0, 0), (2, 0)), mode="symmetric")  # OpenCV's BORDER_REFLECT
    np.testing.assert_array_equal(shifted, padded[:, :, :50])
    down = tta.view(films, 0.0, -tta.SHIFT, 1.0)  # 2 px up
    np.testing.assert_array_equal(down[:, :48], films[:, 2:])
    zoom = tta.view(np.tile(np.arange(50, dtype=np.uint8) * 5, (1, 50, 1)), 0.0, 0.0, 1.08)
    # Scaled about the centre c = 24.5: output column x shows input column c + (x - c) / 1.08.
    for x in (5, 25, 40):
        assert zoom[0, 25, x] == pytest.approx(5 * (24.5 + (x - 24.5) / 1.08), abs=1)
    assert len(tta.VIEWS["shift"]) == 5 and len(tta.VIEWS["shift_scale"]) == 7
    assert all(v[2] > 0 for v in tta.VIEWS["shift_scale"])  # no flips (no negative scale)


def test_predict_tta_averages_the_views_of_the_one_forward_pass():
    from cxrlib.core.tfsetup import keras
    from cxrlib.models.inference import predict

    k = keras()
    inp = k.Input((24, 24, 3))
    x = k.layers.Conv2D(3, 5, kernel_initializer=k.initializers.GlorotUniform(seed=2))(inp)
    model = k.Model(inp, k.layers.Softmax()(k.layers.GlobalAveragePooling2D()(x)))
    films = np.random.default_rng(3).integers(0, 256, (5, 24, 24), dtype=np.uint8)
    expected = np.mean([predict(model, tta.view(films, *v)) for v in tta.VIEWS["shift_scale"]], axis=0)
    got = tta.predict_tta(model, films, "shift_scale", batch_size=4)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(tta.predict_tta(model, films, "none"), predict(model, films))
    assert not np.allclose(got, predict(model, films))
    with pytest.raises(ValueError):
        tta.predict_tta(model, films, "hflip")


def test_predict_tta_reuses_the_plain_prediction_it_is_given(monkeypatch):
    """The training engine has the test films' plain probabilities already: given them as the
    identity view, TTA runs the model on the other views only, with the same result."""
    from cxrlib.core.tfsetup import keras
    from cxrlib.models import inference

    k = keras()
    inp = k.Input((24, 24, 3))
    x = k.layers.Conv2D(3, 5, kernel_initializer=k.initializers.GlorotUniform(seed=4))(inp)
    model = k.Model(inp, k.layers.Softmax()(k.layers.GlobalAveragePooling2D()(x)))
    films = np.random.default_rng(5).integers(0, 256, (6, 24, 24), dtype=np.uint8)
    plain = inference.predict(model, films)
    expected = tta.predict_tta(model, films, "shift")
    real, seen = inference.predict, []

    def counting(m, images, **kwargs):
        seen.append(len(images))
        return real(m, images, **kwargs)

    monkeypatch.setattr(inference, "predict", counting)
    got = tta.predict_tta(model, films, "shift", identity=plain)
    assert sum(seen) == (len(tta.VIEWS["shift"]) - 1) * len(films)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    with pytest.raises(ValueError, match="identity"):
        tta.predict_tta(model, films, "shift", identity=plain[:2])


# ------------------------------------------------------------------------- per-epoch order
def test_training_pipeline_gives_each_epoch_its_own_seeded_order_in_whole_batches():
    images = (np.arange(7 * 4 * 4) % 251).astype(np.uint8).reshape(7, 4, 4)
    images[:, 0, 0] = np.arange(7)  # film i is recognisable by its first pixel
    onehot = np.eye(3, dtype=np.float32)[np.arange(7) % 3]
    idx = np.array([6, 0, 2, 5, 3])
    tcfg = TrainConfig(mode="finetune", batch_size=2, augment=False, seed=9)
    batches = [x.numpy()[:, 0, 0, 0] * 255 for x, _ in
               input_pipeline(images, idx, onehot, tcfg, training=True, epochs=range(2, 4))]
    assert [len(b) for b in batches] == [2, 2, 1, 2, 2, 1]  # no batch spans two epochs
    seen = np.rint(np.concatenate(batches)).astype(int)
    # the documented order, computed here from NumPy: a permutation drawn from [seed, epoch]
    expected = np.concatenate([idx[np.random.default_rng([9, e]).permutation(5)] for e in (2, 3)])
    np.testing.assert_array_equal(seen, expected)
    for epoch in (seen[:5], seen[5:]):  # every training film once an epoch
        assert sorted(epoch) == sorted(idx)
    assert not np.array_equal(seen[:5], seen[5:])  # each epoch its own order
    assert not np.array_equal(epoch_order(5, 9, 2), epoch_order(5, 10, 2))  # the seed counts


# ------------------------------------------------------------------------------------ cluster
def test_tf_config_from_worker_flags_and_roles():
    config = cluster.tf_config_for(["a:1", "b:2"], 1)
    assert config == {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    role = cluster.role({"TF_CONFIG": json.dumps(config)})
    assert (role.index, role.count, role.chief, role.addresses) == (1, 2, False, ("a:1", "b:2"))
    with_chief = {"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]},
                  "task": {"type": "worker", "index": 0}}
    role = cluster.role({"TF_CONFIG": json.dumps(with_chief)})
    assert (role.index, role.count, role.chief) == (1, 3, False)
    assert cluster.role({}) is None
    assert cluster.role({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}})}) is None
    for bad in (["a:1"], ["a:1", "a:1"], ["a", "b:2"], ["a:1", "b:99999"]):
        with pytest.raises(ValueError):
            cluster.tf_config_for(bad, 0)
    with pytest.raises(ValueError):
        cluster.tf_config_for(["a:1", "b:2"], 2)
    with pytest.raises(ValueError):
        cluster.role({"TF_CONFIG": "{not json"})
    with pytest.raises(ValueError):
        cluster.role({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:2"], "ps": ["p:1"]},
                                                "task": {"type": "worker", "index": 0}})})


# -------------------------------------------------------------------------------------- CLI
def _cfg(*flags):
    import argparse

    from cxrlib.cli import train as cli_train

    parser = argparse.ArgumentParser()
    cli_train._add_train_args(parser)
    return cli_train.config_from_args(parser.parse_args(["--data", "x", *flags]))


def test_cli_finetune_starts_from_the_recipe_and_flags_override_it():
    from cxrlib.core.config import FINETUNE_RECIPE_SIZE

    recipe = _cfg("--mode", "finetune")
    assert recipe.train == TrainConfig.finetune_recipe()
    assert recipe.preprocess.size == FINETUNE_RECIPE_SIZE
    assert _cfg("--mode", "finetune", "--size", "224").preprocess.size == 224
    assert _cfg("--mode", "finetune", "--lr", "3e-5", "--finetune-from", "all",
                "--tta", "shift").train == TrainConfig.finetune_recipe(
        learning_rate=3e-5, finetune_from=None, tta="shift")
    assert not recipe.train.hflip  # a chest film is not left-right symmetric
    assert _cfg("--mode", "finetune", "--hflip").train == TrainConfig.finetune_recipe(hflip=True)
    published = _cfg("--mode", "finetune", "--published-finetune")
    assert published.train == TrainConfig(mode="finetune") and published.preprocess.size == 224
    small = _cfg("--model", "small_cnn", "--mode", "finetune")  # the small CNN's own recipe
    assert small.train == TrainConfig.small_cnn_recipe() and small.preprocess.size == 128
    small = _cfg("--model", "small_cnn", "--published-finetune")
    assert small.train == TrainConfig(mode="finetune") and small.preprocess.size == 224
    # MobileNetV2's head preset carries the remedy the LOSO sweep supports (issue 23)
    from cxrlib.core.config.presets import HEAD_REMEDY
    assert _cfg().train == TrainConfig(**HEAD_REMEDY) and _cfg().preprocess.size == 224
