"""codesign: search plasticity rules jointly with the hardware that must run them.

Rules and networks are written once as Brian2 equations; an Optuna study searches their parameters;
targets describe the hardware (see ``hw_targets/``). From Python: :func:`load_study` and :func:`load_model`
(:mod:`codesign.api`).
"""

from __future__ import annotations

import warnings

# setuptools warns about a private MSVC helper whenever brian2 imports distutils; it is noise here.
warnings.filterwarnings("ignore", message="_get_vc_env is private")

__version__ = "0.1.0"

from codesign.api import Model, Study, load_model, load_study  # noqa: E402  (after the filter: light, imports lazily)

__all__ = ["__version__", "load_study", "load_model", "Study", "Model"]
