"""Hardware targets: what a rule must run on, read from ``hw_targets/*.yaml``."""

from __future__ import annotations

from codesign.hardware.target import Target, load_target

__all__ = ["Target", "load_target"]
