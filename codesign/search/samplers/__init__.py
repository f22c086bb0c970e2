"""The sampler registry: Optuna samplers by the name a study gives (``sampler: {name: ...}``).

:mod:`~codesign.search.samplers.base` says what an entry declares; each other module here registers
samplers, and is imported below so that the registry is full once this package is imported.
"""

from __future__ import annotations

from codesign.search.samplers import optuna_samplers  # noqa: F401  (registers cmaes, tpe, nsga2, random)
from codesign.search.samplers.base import SAMPLERS, SamplerKind, sampler

__all__ = ["SAMPLERS", "SamplerKind", "sampler"]
