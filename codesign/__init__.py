"""codesign: search plasticity rules jointly with the hardware that must run them.

Rules and networks are written once as Brian2 equations; an Optuna study searches their parameters;
targets describe the hardware (see ``hw_targets/``).
"""

from __future__ import annotations

import warnings

# setuptools warns about a private MSVC helper whenever brian2 imports distutils; it is noise here.
warnings.filterwarnings("ignore", message="_get_vc_env is private")

__version__ = "0.1.0"
__all__ = ["__version__"]
