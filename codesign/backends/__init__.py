"""How a task's Brian2 network is executed: runtime (numpy, Cython), C++ standalone or CUDA standalone.

Tasks call :func:`simulation` with a key that names everything shaping the network's code (task,
sizes, terms, time step, duration) and a function that builds it; they get back a
:class:`Simulation` that is built once and run for every batch. The backend is the target's, looked
up in :data:`BACKENDS`: a new backend is one module that registers a :class:`Backend`, imported here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

from codesign.backends.base import BACKENDS, Backend, Construct, NetworkBuild, Simulation, network_clock, spike_input
from codesign.backends.runtime import configure_runtime
from codesign.backends import standalone as _standalone, cuda as _cuda  # noqa: F401  (they register their backends)

if TYPE_CHECKING:  # the target module imports the backends (to validate its backend)
    from codesign.hardware.target import Target

__all__ = ["NetworkBuild", "Simulation", "Backend", "BACKENDS", "simulation", "network_clock", "spike_input",
           "configure_runtime", "clear_simulations", "check_runnable", "local_backend", "build_seconds", "Builds",
           "builds"]

_simulations: dict[tuple[str, str], Simulation] = {}
_build_s = 0.0
_building_since: float | None = None


class Builds(NamedTuple):
    """What this process has built so far (see :func:`builds`)."""

    #: Networks constructed: a task's Brian2 objects made and their code generated, on any backend.
    networks: int
    #: Of those, standalone projects (C++, CUDA) compiled here, their program written by ``make``;
    #: a project found compiled in the cache (by an earlier process or construction) does not count.
    compiled: int


_builds = Builds(0, 0)


def builds() -> Builds:
    """How many networks this process has built, and compiled, since it started.

    A simulation kept by :func:`simulation` and re-run for later batches counts once; forgetting it
    (:func:`clear_simulations`, or building a standalone project of another shape) and asking for it
    again builds it again. Tests and benchmarks compare two readings.
    """
    return _builds


def build_seconds() -> float:
    """Seconds this process has spent building networks (code generation, compiling), one in progress included.

    A study's time limit per trial counts simulation only: it subtracts this.
    """
    since = _building_since
    return _build_s + (time.monotonic() - since if since is not None else 0.0)


def simulation(target: Target, key: str, construct: Construct) -> Simulation:
    """The simulation of ``key`` on ``target``, built on first use and kept for later batches.

    Runtime simulations are kept side by side; Brian2's standalone devices (C++ and CUDA) hold one
    project at a time, so building another replaces the previous one. Building a standalone
    project also forgets every other simulation of this process (they are built again, or found in
    a cache, when asked for): Brian2 names generated code after the objects alive at the time, and
    the build is only reused by later processes if its code does not depend on what else lived here.
    """
    cache_key = (target.name + "|" + target.backend + "|" + target.codegen + "|" + target.float_dtype, key)
    sim = _simulations.get(cache_key)
    if sim is not None and not getattr(sim, "retired", False):
        return sim
    backend = _backend(target)
    if backend.one_project:
        _simulations.clear()
    global _build_s, _building_since, _builds
    _building_since = time.monotonic()
    try:
        sim = backend.make(target, construct, key)
    finally:
        _build_s += time.monotonic() - _building_since
        _building_since = None
    _builds = Builds(_builds.networks + 1, _builds.compiled + int(sim.compiled))
    _simulations[cache_key] = sim
    return sim


def clear_simulations() -> None:
    """Forget every built simulation (their compiled code stays in the caches)."""
    _simulations.clear()


def check_runnable(target: Target) -> None:
    """Fail now, in one line, where ``target`` cannot run on this machine (a GPU target without a GPU).

    Commands that run a task call it first, so that they do not compile for minutes to fail after.
    """
    check = _backend(target).check_runnable
    if check is not None:
        check(target)


def local_backend(target: Target) -> str:
    """The backend a comparison simulates ``target`` on, here: its own, or one every machine has
    that computes the same network (C++ standalone for a GPU target)."""
    return _backend(target).local or target.backend


def _backend(target: Target) -> Backend:
    return BACKENDS.get_named(target.backend, file=target.file, key="backend")
