"""cxrlib is a plain library: importing any of its modules never imports streamlit or TensorFlow.

Modules are found by walking the package, so modules added later are covered without editing
this test. Each check runs in a fresh interpreter, where nothing was imported before.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import importlib, json, pkgutil, sys
import cxrlib
names = sorted(m.name for m in pkgutil.walk_packages(cxrlib.__path__, "cxrlib."))
for name in names:
    importlib.import_module(name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("streamlit", "tensorflow", "keras"))
print(json.dumps({"modules": names, "heavy": heavy}))
"""


def _probe() -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_every_cxrlib_module_never_imports_streamlit_or_tensorflow():
    result = _probe()
    # The walk really found the package's modules (so an empty walk cannot pass).
    assert {"cxrlib.core.classes", "cxrlib.data.imageio", "cxrlib.data.datasets"} <= set(result["modules"])
    assert not [m for m in result["heavy"] if m.startswith("streamlit")], result["heavy"]
    # Contract (docs/INTERFACES.md): TensorFlow / Keras only inside functions, via tfsetup.tf().
    assert result["heavy"] == [], f"imported at module load: {result['heavy'][:10]}"
