"""cxrlib: explainable COVID-19 / Normal / Viral Pneumonia classification of chest X-rays.

A plain library (it never imports streamlit). Importing ``cxrlib`` is cheap: TensorFlow is only
imported by the modules that need it (models, training, explanations), and only when used.
"""
__version__ = "0.1.0"
from cxrlib.core.tfsetup import apply_env as _apply_env

# Before anything can import TensorFlow: the same oneDNN setting in every process (see tfsetup).
_apply_env()
