"""The command line: flags map to RunConfig, runs table, progress bars, and one real tiny run
through train -> runs -> predict -> evaluate, plus the cache hit without TensorFlow."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from cxrlib.core import paths
from cxrlib.cli import build_parser, main
from cxrlib.cli.progress import ProgressBar, status_line
from cxrlib.cli.train import config_from_args
from cxrlib.core.config import (DataConfig, ModelConfig, PreprocessConfig, RunConfig, SplitConfig,
                           TrainConfig)
from cxrlib.runs.registry import create_run

ENV = dict(os.environ, PYTHONPATH=str(paths.PROJECT_ROOT))


def test_train_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--task", "--model", "--weights", "--mode", "--split", "--test-fraction",
                 "--val-fraction", "--epochs", "--batch-size", "--lr", "--no-augment",
                 "--feature-augment-copies", "--early-stopping", "--init-from-head", "--seed",
                 "--steps", "--wb-percentile", "--clahe-clip", "--clahe-grid", "--gamma", "--size",
                 "--background"):
        assert flag in text, flag
    assert "--run-dir" not in text  # internal: the runner's detached process


def test_flags_build_the_expected_config(tmp_path):
    args = build_parser().parse_args([
        "train", "--data", "/d", "--task", "binary", "--model", "small_cnn", "--weights", "random",
        "--mode", "finetune", "--split", "random", "--test-fraction", "0.1", "--val-fraction", "0",
        "--epochs", "7", "--batch-size", "8", "--lr", "0.01", "--no-augment", "--early-stopping", "3",
        "--seed", "5", "--clahe-clip", "3.0", "--clahe-grid", "4", "--gamma", "0.8", "--size", "128",
        "--published-finetune"])  # over the published defaults (the recipe's own test: below)
    expected = RunConfig(
        data=DataConfig(root="/d", task="binary"),
        preprocess=PreprocessConfig(steps=("clahe",), clahe_clip_limit=3.0, clahe_tile_grid=4,
                                    gamma=0.8, size=128),  # small_cnn -> the published CLAHE
        model=ModelConfig(family="small_cnn", weights="random"),
        split=SplitConfig(kind="random", test_fraction=0.1, val_fraction=0.0, seed=5),
        train=TrainConfig(mode="finetune", epochs=7, batch_size=8, learning_rate=0.01,
                          augment=False, early_stopping=3, seed=5))
    assert config_from_args(args) == expected

    defaults = config_from_args(build_parser().parse_args(["train", "--steps", "white_balance,gamma"]))
    assert defaults == RunConfig(data=DataConfig(root=str(paths.default_data_dir())),
                                 preprocess=PreprocessConfig(steps=("white_balance", "gamma")),
                                 train=TrainConfig(feature_augment_copies=2, augment=False,
                                                   acquisition=1.0))  # presets.HEAD_REMEDY
    # --config accepts a run's config.json; flags override it.
    record = tmp_path / "config.json"
    record.write_text(json.dumps({"config": expected.to_dict(), "fingerprint": "x"}))
    again = config_from_args(build_parser().parse_args(["train", "--config", str(record), "--epochs", "9"]))
    assert again == expected.replace(train=expected.train.replace(epochs=9))


def test_bad_values_are_usage_errors(capsys, workspace):
    assert main(["train", "--data", "/d", "--test-fraction", "1.5"]) == 2
    assert "fractions" in capsys.readouterr().err
    assert main(["cancel", "nosuchrun"]) == 2
    assert "no run 'nosuchrun'" in capsys.readouterr().err


def test_runs_table_without_tensorflow(workspace):
    done = create_run(RunConfig(), "fp-a")
    done.write_status(state="done", epoch=5, epochs=5)
    done.write_metrics({"accuracy": 0.875, "macro_auc": 0.9321})
    queued = create_run(RunConfig().replace(train=TrainConfig(mode="finetune")), "fp-a")
    queued.write_status(state="running", epoch=1, epochs=50)  # no process holds it: died
    script = textwrap.dedent("""
        import sys
        from cxrlib.cli import main
        code = main(["runs"])
        assert not any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules), "TF imported"
        sys.exit(code)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(ENV, CXR_WORKSPACE=str(workspace)))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["id", "state", "task", "model", "mode", "split", "epochs",
                                "accuracy", "macro_auc", "created"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[done.id][1:8] == ["done", "3class", "mobilenetv2", "head", "grouped", "5/5", "0.875"]
    assert rows[done.id][8] == "0.932"
    assert rows[queued.id][1] == "failed" and rows[queued.id][7] == "-"


def test_progress_bar_does_not_spam_a_log():
    stream = io.StringIO()  # not a TTY
    with ProgressBar("scan", stream=stream) as bar:
        for i in range(1, 1001):
            bar.callback(i, 1000)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines  # a log gets the final state only, not 1000 redraws
    assert lines[0].startswith("scan ") and "100%" in lines[0] and lines[0].endswith("1000/1000")
    done, total, text = status_line({"state": "running", "epoch": 2, "epochs": 4, "step": 5,
                                     "steps": 10, "eta_s": 75, "metrics": {"loss": 0.5}})
    assert (done, total) == (1.5, 4.0) and "epoch 2/4" in text and "ETA 1m15s" in text


@pytest.mark.slow
def test_real_tiny_run_train_predict_evaluate(workspace, synthetic_dataset, tmp_path, capsys):
    flags = ["--data", str(synthetic_dataset), "--model", "tiny", "--weights", "random",
             "--mode", "head", "--epochs", "25", "--lr", "0.01", "--size", "64", "--seed", "3"]
    assert main(["train", *flags]) == 0
    out = capsys.readouterr().out
    run_id = out.split()[1]
    assert f"folder {paths.runs_dir() / run_id}" in out and "state done" in out

    from cxrlib.runs.registry import get_run

    run = get_run(run_id)
    assert set(run.split_table()["split"]) == {"train", "val", "test"}

    # predict: a folder plus a broken file; the bad file is listed, not fatal.
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    csv = tmp_path / "pred.csv"
    assert main(["predict", run_id[:8], str(synthetic_dataset), str(bad), "--out", str(csv),
                 "--batch-size", "16"]) == 0
    table = pd.read_csv(csv, keep_default_na=False)
    classes = ["COVID-19", "Normal", "Viral Pneumonia"]
    assert list(table.columns) == ["path", "pred", *[f"p_{c}" for c in classes], "error", "warning"]
    assert len(table) == 73 and capsys.readouterr().err.count("unreadable: ") == 1
    broken = table[table["path"] == str(bad)].iloc[0]
    assert broken["error"] and broken["pred"] == "" and broken["p_Normal"] == ""
    good = table[table["error"] == ""]
    probs = good[[f"p_{c}" for c in classes]].astype(float).to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # Independent check: training scored its test split through the feature cache; predicting
    # the same files from disk through the saved model must give the same probabilities.
    trained = run.predictions().set_index("path")
    mine = good.set_index("path").loc[trained.index]
    np.testing.assert_allclose(mine[[f"p_{c}" for c in classes]].astype(float).to_numpy(),
                               trained[[f"p_{c}" for c in classes]].to_numpy(), atol=1e-4)

    # evaluate on a labelled folder: metrics agree with its own predictions.
    out_dir = tmp_path / "eval"
    assert main(["evaluate", run_id, "--data", str(synthetic_dataset), "--out-dir", str(out_dir)]) == 0
    metrics = json.loads((out_dir / "metrics.json").read_text())
    scored = pd.read_csv(out_dir / "predictions.csv")
    assert metrics["n"] == len(scored) == 72
    assert metrics["accuracy"] == pytest.approx((scored["pred"] == scored["label"]).mean())
    from sklearn.metrics import roc_auc_score

    expected_auc = roc_auc_score(scored["label"], scored[[f"p_{c}" for c in classes]].to_numpy(),
                                 multi_class="ovr", average="macro", labels=classes)
    assert metrics["auc"]["macro"] == pytest.approx(expected_auc, abs=1e-6)
    assert metrics["run_id"] == run_id and metrics["excluded"] == {}

    # Asked again (same flags) the finished run comes back from a fresh process without
    # TensorFlow, and the runs table lists it as done.
    script = textwrap.dedent(f"""
        import sys, json
        from cxrlib.runs import runner
        from cxrlib.cli import build_parser; from cxrlib.cli.train import config_from_args
        cfg = config_from_args(build_parser().parse_args(["train", *{flags!r}]))
        run = runner.start(cfg)
        heavy = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
        print(json.dumps([run.id, run.status()["state"], heavy]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env=dict(ENV, CXR_WORKSPACE=str(workspace)))
    assert json.loads(done.stdout) == [run_id, "done", []]


def test_a_missing_or_malformed_config_file_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.json" in err and "Traceback" not in err
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["train", "--config", str(bad)]) == 2
    assert "not a RunConfig JSON object" in capsys.readouterr().err


def test_image_files_lists_readable_suffixes_and_skips_hidden_files(tmp_path):
    from cxrlib.evaluation.predict import image_files

    for name in ("b.png", "a.JPG", "c.dcm", "sub/d.jpeg", ".hidden.png", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path)]
    assert sorted(found) == ["a.JPG", "b.png", "c.dcm", "sub/d.jpeg"]
    explicit = tmp_path / ".hidden.png"
    assert image_files([explicit]) == [explicit]  # an explicit path is kept as given


def test_predict_films_frees_its_model_and_checks_the_batch_size():
    import gc
    import weakref

    from cxrlib.evaluation.predict import predict_films
    from cxrlib.core.tfsetup import tf

    tf()
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    films = [np.full((20, 24), 100, np.uint8), np.arange(20 * 24, dtype=np.uint8).reshape(20, 24)]
    cfg = PreprocessConfig(size=16)
    probs = predict_films(model, films, cfg, batch_size=1)
    from cxrlib.preprocessing.pipeline import preprocess_film, to_model_input

    expected = np.asarray(model(to_model_input(np.stack([preprocess_film(f, cfg) for f in films]))))
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        predict_films(model, films, cfg, batch_size=0)
    # The compiled call is cached per model without keeping the model alive.
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_audit_command_delegates_with_its_own_help_and_errors(capsys, workspace):
    with pytest.raises(SystemExit) as exc:
        main(["audit", "--help"])
    assert exc.value.code == 0
    assert "--external" in capsys.readouterr().out
    assert main(["audit", "no-such-run"]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_small_cnn_trains_all_layers_so_its_flags_are_kept(capsys, workspace):
    """The small CNN has no pretrained backbone, so it has no head mode: without --mode the CLI
    used to give it the head-mode default, whose canonical form drops the fine-tune settings, so
    --no-augment was silently ignored (and the engine trained it with augmentation)."""
    args = build_parser().parse_args(["train", "--model", "small_cnn", "--published-finetune",
                                      "--no-augment", "--schedule", "cosine", "--warmup-epochs", "1"])
    train = config_from_args(args).train
    assert (train.mode, train.augment, train.schedule, train.warmup_epochs) == (
        "finetune", False, "cosine", 1)
    assert main(["train", "--model", "small_cnn", "--mode", "head"]) == 2
    assert "small CNN" in capsys.readouterr().err


def test_the_small_cnn_starts_from_its_recipe_and_cnn_arch_is_a_small_cnn_flag(capsys, workspace):
    from cxrlib.core.config import ModelConfig, PreprocessConfig, TrainConfig

    parse = lambda *flags: config_from_args(build_parser().parse_args(["train", *flags]))  # noqa: E731
    recipe = parse("--model", "small_cnn", "--seed", "3")
    assert recipe.model == ModelConfig(family="small_cnn", cnn_arch="bn_gap")
    assert recipe.preprocess == PreprocessConfig(steps=("clahe",), size=128)
    assert recipe.train == TrainConfig(mode="finetune", epochs=20, learning_rate=2e-3,
                                       schedule="cosine", warmup_epochs=1, early_stopping=5,
                                       augment=False, seed=3)
    # the flags still apply over it, and --published-finetune is the published small CNN
    over = parse("--model", "small_cnn", "--cnn-arch", "published", "--size", "160", "--epochs", "9")
    assert (over.model.cnn_arch, over.preprocess.size, over.train.epochs) == ("published", 160, 9)
    published = parse("--model", "small_cnn", "--published-finetune")
    assert published.model == ModelConfig(family="small_cnn")
    assert published.preprocess.size == 224
    assert published.train == TrainConfig(mode="finetune")
    # --augment gives the recipe rotations without a flip; a rotation with augmentation off,
    # and a pretrained backbone's settings, are refused (they would be dropped, or freeze
    # untrained BatchNorm statistics)
    assert parse("--model", "small_cnn", "--augment", "--rotation", "0.1").train == TrainConfig(
        mode="finetune", epochs=20, learning_rate=2e-3, schedule="cosine", warmup_epochs=1,
        early_stopping=5, augment=True, rotation=0.1, hflip=False)
    assert main(["train", "--model", "small_cnn", "--rotation", "0.1"]) == 2
    assert "add --augment" in capsys.readouterr().err
    for flag in ("--freeze-bn", "--init-from-head", "--finetune-from=block_1"):
        assert main(["train", "--model", "small_cnn", flag]) == 2
        assert "pretrained backbone" in capsys.readouterr().err
    # over another family's --config, the recipe takes its preprocessing too (CLAHE)
    record = workspace.parent / "mnv2.json"
    record.write_text(json.dumps(parse("--size", "192").to_dict()))
    over = parse("--config", str(record), "--model", "small_cnn")
    assert over.preprocess == PreprocessConfig(steps=("clahe",), size=128)
    # a flag the model would ignore is refused, not dropped silently
    assert main(["train", "--model", "mobilenetv2", "--cnn-arch", "bn_gap"]) == 2
    assert "--cnn-arch is a small CNN setting" in capsys.readouterr().err


def test_a_head_config_switched_to_a_finetune_drops_the_head_only_remedies(capsys, workspace):
    """Bug: `train --config <the MobileNetV2 head preset> --model tiny --mode finetune` (or
    `--model small_cnn --published-finetune`) was refused with "acquisition augmentation and
    source balancing are head-mode remedies": remedies the user never asked for, carried over
    from the head config. A config switched to a fine-tune leaves them behind, as it leaves the
    feature copies; asked for by flag in a fine-tune, they are still refused."""
    from cxrlib.core.config import TrainConfig, run_preset

    record = workspace.parent / "head.json"
    record.write_text(json.dumps(run_preset("mobilenetv2", "head").to_dict()))
    assert run_preset("mobilenetv2", "head").train.acquisition > 0  # else this checks nothing
    parse = lambda *flags: config_from_args(build_parser().parse_args(["train", *flags]))  # noqa: E731
    head = run_preset("mobilenetv2", "head").train
    kept = dict(mode="finetune", seed=head.seed, augment=head.augment)  # the config's own
    tiny = parse("--config", str(record), "--model", "tiny", "--mode", "finetune").train
    assert tiny == TrainConfig(**kept)
    cnn = parse("--config", str(record), "--model", "small_cnn", "--published-finetune").train
    assert cnn == TrainConfig(**kept)
    assert main(["train", "--config", str(record), "--model", "tiny", "--mode", "finetune",
                 "--acquisition", "0.5"]) == 2
    assert "head-mode remedies" in capsys.readouterr().err
