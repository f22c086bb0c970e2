"""How a built Brian2 network is executed on the host: device selection and preferences."""

from __future__ import annotations

from codesign.backends.runtime import configure_runtime

__all__ = ["configure_runtime"]
