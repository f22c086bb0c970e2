"""How a task's Brian2 network is executed: runtime (numpy, Cython) or C++ standalone.

Tasks call :func:`simulation` with a key that names everything shaping the network's code (task,
sizes, terms, time step, duration) and a function that builds it; they get back a
:class:`Simulation` that is built once and run for every batch.
"""

from __future__ import annotations

import time

from codesign.backends.base import Construct, NetworkBuild, Simulation
from codesign.backends.runtime import RuntimeSimulation, configure_runtime
from codesign.hardware import Target

__all__ = ["NetworkBuild", "Simulation", "simulation", "configure_runtime", "clear_simulations", "build_seconds"]

_simulations: dict[tuple[str, str], Simulation] = {}
_build_s = 0.0
_building_since: float | None = None


def build_seconds() -> float:
    """Seconds this process has spent building networks (code generation, compiling), one in progress included.

    A study's time limit per trial counts simulation only: it subtracts this.
    """
    since = _building_since
    return _build_s + (time.monotonic() - since if since is not None else 0.0)


def simulation(target: Target, key: str, construct: Construct) -> Simulation:
    """The simulation of ``key`` on ``target``, built on first use and kept for later batches.

    Runtime simulations are kept side by side; a standalone device holds one project at a time,
    so building another replaces the previous one.
    """
    cache_key = (target.name + "|" + target.backend + "|" + target.codegen + "|" + target.float_dtype, key)
    sim = _simulations.get(cache_key)
    if sim is not None and not getattr(sim, "retired", False):
        return sim
    global _build_s, _building_since
    _building_since = time.monotonic()
    try:
        if target.backend == "cpp_standalone":
            from codesign.backends.standalone import StandaloneSimulation

            sim = StandaloneSimulation(target, construct, key)
        else:
            sim = RuntimeSimulation(target, construct)
    finally:
        _build_s += time.monotonic() - _building_since
        _building_since = None
    _simulations[cache_key] = sim
    return sim


def clear_simulations() -> None:
    """Forget every built simulation (their compiled code stays in the caches)."""
    _simulations.clear()
