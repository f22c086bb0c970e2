"""The contract between tasks and backends.

A task describes its network once, as a :class:`NetworkBuild` made by a function that creates
Brian2 objects; a backend turns that into a :class:`Simulation` that can be run many times with new
values for the per-candidate variables, and new input series, without generating or compiling code
again where the backend allows it.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["NetworkBuild", "Simulation", "Construct", "network_clock"]


@dataclasses.dataclass
class NetworkBuild:
    """Brian2 objects plus the names through which a backend sets and reads them.

    Attributes
    ----------
    objects
        Every Brian2 object of the network.
    duration
        How long one run lasts (a Brian2 quantity).
    settable
        Variables set before each run, by name: ``(group, variable name)``. Values passed to
        :meth:`Simulation.run` must carry the variable's units.
    readable
        Variables read after each run, by name: ``(group, variable name)``.
    timed_arrays
        ``TimedArray`` inputs by the name the equations use; their values can change per run
        (same shape).
    seed
        Seed of Brian2's random numbers (``rand()`` in the network's code), set before every run so
        that a batch run twice gives the same result; None leaves them unseeded.
    """

    objects: list[Any]
    duration: Any
    settable: dict[str, tuple[Any, str]]
    readable: dict[str, tuple[Any, str]]
    timed_arrays: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int | None = None


#: A function that creates the network's Brian2 objects (called once the backend's device is active).
Construct = Callable[[], NetworkBuild]


class Simulation(abc.ABC):
    """A built network that runs again and again; not thread safe, one per process."""

    #: Whether constructing it compiled a program here (a standalone project not found compiled in
    #: the cache); :func:`codesign.backends.builds` counts these.
    compiled: bool = False

    @abc.abstractmethod
    def run(self, values: Mapping[str, Any], timed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Reset to the initial state, set ``values`` and input series ``timed``, run, read back."""


def network_clock(dt: Any) -> Any:
    """The one clock of a task's network, of time step ``dt`` (a Brian2 quantity).

    Tasks call it inside their construct function (the backend's device is then active). One
    named clock, because with one clock per group the generated code's order of clock
    initialisations varies between processes, and a standalone build would not be reused. On
    ``cuda_standalone`` it is the device's default clock: brian2cuda's synapse code refers to the
    clock called ``defaultclock`` by name, and a C++ object called ``clock`` would be hidden by the C
    library's ``clock()``.
    """
    import brian2

    device = brian2.get_device()
    if type(device).__name__ == "CUDAStandaloneDevice":
        device.defaultclock.dt = dt
        return device.defaultclock
    return brian2.Clock(dt, name="clock")
