"""A hardware target as a typed object, read from a YAML file in ``hw_targets/``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from codesign.schema import Where, build, read_yaml

__all__ = ["Target", "load_target"]

@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how a task's Brian2 network is executed.

    Attributes
    ----------
    name
        Short name shown in reports.
    backend
        How the network runs: ``runtime`` (Brian2's runtime mode) or ``cpp_standalone`` (compiled
        once per network shape, then re-run with new values; see ``codesign.backends``).
    codegen
        Code generation target of the runtime: ``numpy`` (nothing to compile) or ``cython``
        (compiled once, then cached on disk by Brian2). Ignored by ``cpp_standalone``.
    float_dtype
        Floating-point type of state variables.
    description
        Free text for people.
    """

    name: str
    backend: Literal["runtime", "cpp_standalone"] = "runtime"
    codegen: Literal["numpy", "cython"] = "numpy"
    float_dtype: Literal["float64", "float32"] = "float64"
    description: str = ""
    file: str | None = dataclasses.field(default=None, compare=False, init=False)


def load_target(path: str | Path) -> Target:
    """Read and check a target file."""
    target = build(Target, read_yaml(path, "target file"), Where(str(path)))
    object.__setattr__(target, "file", str(path))
    return target
