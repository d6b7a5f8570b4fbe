"""Config round-trips and run identity."""
import pytest

from cxrlib.core.config import (DataConfig, ModelConfig, PreprocessConfig, RunConfig, SplitConfig,
                           TrainConfig, config_hash)


def test_round_trip_every_section():
    cfg = RunConfig(preprocess=PreprocessConfig(steps=("clahe", "gamma"), gamma=0.8),
                    model=ModelConfig(family="small_cnn"), split=SplitConfig(kind="random"),
                    train=TrainConfig(mode="finetune", epochs=3))
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_int_and_float_spellings_hash_alike():
    a = PreprocessConfig(wb_percentile=0, gamma=1)
    b = PreprocessConfig(wb_percentile=0.0, gamma=1.0)
    assert config_hash(a) == config_hash(b)
    assert config_hash(ModelConfig(head_dropout=(1, 0, 0, 0))) == config_hash(
        ModelConfig(head_dropout=(1.0, 0.0, 0.0, 0.0)))


def test_a_field_added_later_keeps_every_earlier_run_id():
    """Ids pinned before ModelConfig.cnn_arch existed (stop 18): at its default the field is left
    out of the identity, but it is stored, and any other value is a new run."""
    from cxrlib.runs.registry import run_id

    small = RunConfig(data=DataConfig(task="binary"), preprocess=PreprocessConfig.published_clahe(),
                      model=ModelConfig(family="small_cnn"), train=TrainConfig(mode="finetune"))
    assert run_id(RunConfig(), "f" * 16) == "9c435b176d2b69ae"
    assert run_id(small, "f" * 16) == "642c89ed3f28bc69"
    assert small.to_dict()["model"]["cnn_arch"] == "published"
    bn = small.replace(model=small.model.replace(cnn_arch="bn_gap"))
    assert run_id(bn, "f" * 16) != run_id(small, "f" * 16)
    assert RunConfig.from_dict(bn.to_dict()) == bn
    assert (small.model.label, bn.model.label) == ("small_cnn", "small_cnn[bn_gap]")
    # no small CNN, no effect: one id
    assert ModelConfig(cnn_arch="bn_gap") == ModelConfig()
    with pytest.raises(ValueError, match="cnn_arch"):
        ModelConfig(family="small_cnn", cnn_arch="resnet")


def test_identity_ignores_dataset_location_but_not_task():
    a = RunConfig(data=DataConfig(root="/a"))
    b = RunConfig(data=DataConfig(root="/b"))
    c = RunConfig(data=DataConfig(root="/a", task="binary"))
    assert config_hash(a.identity()) == config_hash(b.identity())
    assert config_hash(a.identity()) != config_hash(c.identity())


@pytest.mark.parametrize("bad", [
    lambda: PreprocessConfig(steps=("sharpen",)),
    lambda: PreprocessConfig(steps=("clahe", "clahe")),
    lambda: PreprocessConfig(wb_percentile=60),
    lambda: ModelConfig(family="resnet"),
    lambda: ModelConfig(weights="pretrained"),
    lambda: ModelConfig(head_units=(32, 16), head_dropout=(0.5,)),
    lambda: SplitConfig(test_fraction=0.6, val_fraction=0.5),
    lambda: TrainConfig(mode="scratch"),
    lambda: RunConfig.from_dict({"nonsense": {}}),
    lambda: PreprocessConfig.from_dict({"sizee": 3}),
])
def test_invalid_configs_raise(bad):
    with pytest.raises(ValueError):
        bad()


def test_reordered_steps_and_an_identity_gamma_give_one_run_id():
    from cxrlib.runs.registry import run_id

    listed = PreprocessConfig(steps=("clahe", "white_balance"))
    canonical = PreprocessConfig(steps=("white_balance", "clahe"))
    assert listed == canonical and listed.steps == ("white_balance", "clahe")
    with_gamma_one = PreprocessConfig(steps=("white_balance", "gamma"), gamma=1.0)
    assert with_gamma_one == PreprocessConfig(steps=("white_balance",))
    # Settings of a step that does not run change no pixel, so they do not change the id.
    assert PreprocessConfig(steps=("clahe",), wb_percentile=2.0, gamma=0.7) == PreprocessConfig(steps=("clahe",))
    ids = {run_id(RunConfig(preprocess=p), "fp") for p in (listed, canonical)}
    assert len(ids) == 1
    # ...while steps that do run, in an order that matters, stay distinct.
    assert (PreprocessConfig(steps=("clahe", "gamma"), gamma=0.8)
            != PreprocessConfig(steps=("gamma", "clahe"), gamma=0.8))
    assert PreprocessConfig(steps=("gamma",), gamma=0.8) != PreprocessConfig(steps=("gamma",), gamma=0.9)



def test_augmentation_settings_that_augment_nothing_do_not_change_the_run_id():
    from cxrlib.runs.registry import run_id
    from cxrlib.training.engine import head_run_config

    # Head mode without augmented feature copies never rotates or flips anything.
    assert TrainConfig(mode="head", hflip=False, rotation=0.2) == TrainConfig(mode="head")
    # A fine-tune without augmentation ignores the rotation and the flip.
    assert (TrainConfig(mode="finetune", augment=False, hflip=False)
            == TrainConfig(mode="finetune", augment=False, rotation=0.1))
    # Augmentation with neither rotation nor flip is no augmentation.
    assert (TrainConfig(mode="finetune", rotation=0.0, hflip=False)
            == TrainConfig(mode="finetune", augment=False))
    # So a recipe with and without the flip starts from one head run, trained once.
    flip, no_flip = (RunConfig(train=TrainConfig.finetune_recipe(hflip=h)) for h in (True, False))
    assert run_id(head_run_config(flip), "fp") == run_id(head_run_config(no_flip), "fp")
    # ...while augmentation that does happen keeps its settings apart.
    assert run_id(flip, "fp") != run_id(no_flip, "fp")
    assert (TrainConfig(mode="head", feature_augment_copies=2, hflip=False)
            != TrainConfig(mode="head", feature_augment_copies=2))


def test_a_small_cnn_config_is_always_a_finetune_config():
    """The small CNN has no head mode: asking for one is refused (a head-mode TrainConfig has
    already dropped fine-tune settings such as augment=False), and an older run's config.json
    that spelled it so loads as what the engine trained: every layer, finetune."""
    with pytest.raises(ValueError, match="small CNN"):
        RunConfig(model=ModelConfig(family="small_cnn"), train=TrainConfig(mode="head"))
    fine = RunConfig(model=ModelConfig(family="small_cnn"), train=TrainConfig(mode="finetune", epochs=3))
    old = fine.to_dict()
    old["train"]["mode"] = "head"
    assert RunConfig.from_dict(old) == fine
    old["train"]["augment"] = False  # kept: the file is read as finetune, not head, mode
    assert RunConfig.from_dict(old).train.augment is False
    assert RunConfig(train=TrainConfig(mode="head")).train.mode == "head"  # MobileNetV2 keeps it


def test_head_only_settings_do_not_change_a_finetune_run_id():
    """Cached-feature copies exist only in head mode (and in the head a fine-tune starts from):
    a fine-tune config from scratch with them is the same run."""
    assert TrainConfig(mode="finetune", feature_augment_copies=2) == TrainConfig(mode="finetune")
    assert TrainConfig(mode="head", feature_augment_copies=2) != TrainConfig(mode="head")
    assert TrainConfig(mode="finetune", init_from_head=True, feature_augment_copies=2) != \
        TrainConfig(mode="finetune", init_from_head=True)


def test_numpy_scalars_become_plain_values_and_absurd_numbers_are_refused():
    """A numpy integer hashed as the string "3" (another run id than 3), a float32 could not be
    written to config.json, and 10**400 raised OverflowError (a traceback in the CLI)."""
    import json

    import numpy as np

    cfg = TrainConfig(epochs=np.int64(3), learning_rate=np.float32(0.5), augment=np.bool_(False),
                      mode="finetune")
    assert cfg == TrainConfig(epochs=3, learning_rate=0.5, augment=False, mode="finetune")
    assert cfg.hash() == TrainConfig(epochs=3, learning_rate=0.5, augment=False, mode="finetune").hash()
    json.dumps(cfg.to_dict())
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=10 ** 400)
    with pytest.raises(ValueError, match="hflip"):
        TrainConfig(hflip=np.array([True, False]))


def test_a_config_section_that_is_not_an_object_is_a_value_error():
    """A damaged config.json must stay a broken row of the runs table (ValueError), not stop it."""
    for bad in ({"model": "mobilenetv2"}, {"train": [1, 2]}, {"data": None}):
        with pytest.raises(ValueError, match="section"):
            RunConfig.from_dict(bad)


def test_one_preset_per_family_and_mode_for_the_cli_and_the_training_page():
    """run_preset is where a family and a mode become a run: the CLI's flags without --config
    give exactly it (the Training page starts from it too); the tiny preset is no longer the
    app's alone."""
    import argparse

    from cxrlib.cli.train import _add_train_args, config_from_args
    from cxrlib.core.config import (FINETUNE_RECIPE_SIZE, PRESET_MODES, SMALL_CNN_RECIPE_ARCH,
                                    SMALL_CNN_RECIPE_SIZE, preset_mode, run_preset)

    parser = argparse.ArgumentParser()
    _add_train_args(parser)
    flags = {("mobilenetv2", "head"): [], ("mobilenetv2", "recipe"): ["--mode", "finetune"],
             ("mobilenetv2", "finetune"): ["--mode", "finetune", "--published-finetune"],
             ("tiny", "head"): ["--model", "tiny"], ("tiny", "finetune"): ["--model", "tiny", "--mode", "finetune"],
             ("small_cnn", "recipe"): ["--model", "small_cnn"],
             ("small_cnn", "finetune"): ["--model", "small_cnn", "--published-finetune"]}
    assert set(flags) == {(f, m) for f, modes in PRESET_MODES.items() for m in modes}
    for (family, mode), argv in flags.items():
        cli = config_from_args(parser.parse_args(["--data", "x", "--task", "binary", *argv]))
        preset = run_preset(family, mode, "binary")
        assert cli == preset.replace(data=preset.data.replace(root="x")), (family, mode)
        assert preset_mode(family, "finetune" if "finetune" in argv else None,
                           published="--published-finetune" in argv) == mode
    tiny = run_preset("tiny")
    assert (tiny.preprocess.steps, tiny.preprocess.size, tiny.train.epochs) == ((), 96, 10)
    cnn = run_preset("small_cnn")
    assert (cnn.model.cnn_arch, cnn.preprocess.size, cnn.preprocess.steps) == (
        SMALL_CNN_RECIPE_ARCH, SMALL_CNN_RECIPE_SIZE, ("clahe",))
    assert run_preset("mobilenetv2", "recipe").preprocess.size == FINETUNE_RECIPE_SIZE
    # the defaults are the head preset, but for the remedy the LOSO measurement supports
    head = run_preset("mobilenetv2")
    assert head == RunConfig().replace(train=RunConfig().train.replace(
        feature_augment_copies=2, augment=False, acquisition=1.0))
    assert run_preset("tiny").train.feature_augment_copies == 0  # measured on MobileNetV2 only
    with pytest.raises(ValueError, match="no 'head' mode"):
        run_preset("small_cnn", "head")


def test_the_head_presets_remedy_is_the_measured_one_and_the_cli_can_drop_it(tmp_path):
    """HEAD_REMEDY: 2 acquisition-style feature copies, no rotation or flip (the sweep measured
    exactly that candidate); the Home page's quick run takes it; the CLI drops it with
    --feature-augment-copies 0 (the plain head, RunConfig's defaults)."""
    import argparse

    from app_services.firstrun import quick_run_config
    from cxrlib.cli.train import _add_train_args, config_from_args
    from cxrlib.core.config.presets import HEAD_REMEDY, run_preset

    t = run_preset("mobilenetv2").train
    assert (t.feature_augment_copies, t.acquisition, t.acquisition_contrast, t.augment,
            t.source_balance) == (2, 1.0, 0.0, False, False)
    assert {k: getattr(t, k) for k in HEAD_REMEDY} == HEAD_REMEDY
    assert run_preset("mobilenetv2", "recipe").train.acquisition == 0.0  # fine-tune: none
    quick = quick_run_config(argparse.Namespace(root=tmp_path), "3class").train
    assert (quick.feature_augment_copies, quick.acquisition, quick.augment) == (2, 1.0, False)
    parser = argparse.ArgumentParser()
    _add_train_args(parser)
    plain = config_from_args(parser.parse_args(["--data", "x", "--feature-augment-copies", "0"]))
    assert plain.train == RunConfig().train
