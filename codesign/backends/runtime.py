"""Brian2's runtime mode: the network is executed from Python, its code generated for numpy or Cython."""

from __future__ import annotations

import functools

from codesign.hardware import Target

__all__ = ["configure_runtime"]


@functools.lru_cache(maxsize=None)
def _quiet_brian() -> None:
    import brian2

    # Diverging candidates are expected in a search; tasks report them as diverged, so Brian2's
    # warning about NaN weights would only be noise. No log file per worker either.
    brian2.BrianLogger.suppress_name("invalid_values")
    brian2.prefs.logging.file_log = False


def configure_runtime(target: Target) -> None:
    """Set Brian2's global preferences for ``target`` (runtime device, code generation, float type)."""
    import brian2
    import numpy as np

    _quiet_brian()
    brian2.set_device("runtime")
    brian2.prefs.codegen.target = target.codegen
    brian2.prefs.core.default_float_dtype = getattr(np, target.float_dtype)
