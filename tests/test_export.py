"""Exporting a run's model: the SavedModel and the TFLite file give the Keras model's outputs."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from app_fixtures import app_workspace, trained_run  # noqa: F401 (fixtures)

from cxrlib.cli import main


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_export_reloads_with_the_same_outputs(trained_run, tmp_path, capsys, fmt):
    from cxrlib.core.tfsetup import tf

    out = tmp_path / fmt
    assert main(["export", trained_run.id, "--format", fmt, "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    card = json.loads((out / "cxr_model.json").read_text())
    assert card["classes"] == list(trained_run.classes) and card["run_id"] == trained_run.id
    assert card["preprocess"] == trained_run.config.preprocess.to_dict()
    model = trained_run.load_model()
    size = model.input_shape[1]
    x = np.random.default_rng(0).random((3, size, size, 3)).astype(np.float32)
    expected = np.asarray(model(x, training=False))
    if fmt == "savedmodel":
        loaded = tf().saved_model.load(str(out / "saved_model"))  # keep it: it owns the variables
        got = loaded.serve(x).numpy()
    else:
        with warnings.catch_warnings():  # tf.lite.Interpreter announces its successor
            warnings.simplefilter("ignore")
            interpreter = tf().lite.Interpreter(model_path=str(out / "model.tflite"))
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_export_of_an_unknown_run_is_a_usage_error(workspace, tmp_path, capsys):
    assert main(["export", "nope", "--format", "tflite", "--out", str(tmp_path)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
