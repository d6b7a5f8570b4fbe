"""Every process that imports cxrlib gets the same TensorFlow settings, and a user's own win."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = "import os, cxrlib, sys; print(os.environ['TF_ENABLE_ONEDNN_OPTS'], 'tensorflow' in sys.modules)"


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("0", "0")])
def test_importing_cxrlib_sets_onednn_default_without_importing_tensorflow(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if preset is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = preset
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [expected, "False"]
