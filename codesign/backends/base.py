"""The contract between tasks and backends.

A task describes its network once, as a :class:`NetworkBuild` made by a function that creates
Brian2 objects; a backend turns that into a :class:`Simulation` that can be run many times with new
values for the per-candidate variables, new input series, new input spikes and a new seed, without
generating or compiling code again where the backend allows it.

Each backend registers a :class:`Backend` in :data:`BACKENDS` under the name a target file's
``backend:`` gives, in its own module; ``codesign.backends`` imports those modules.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from codesign.registry import Registry

if TYPE_CHECKING:  # the target module validates its backend against BACKENDS
    from codesign.hardware.target import Target

__all__ = ["NetworkBuild", "Simulation", "Construct", "Backend", "BACKENDS", "network_clock", "spike_input",
           "padded_spike_list"]

#: The time step of padding spikes (:func:`spike_input`): one past it per padding spike, far beyond
#: any run, yet within Brian2's int32 time bins.
NEVER_STEP = 2**30


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
    spike_inputs
        Groups made by :func:`spike_input`, by name: their spikes are given per run.
    draws_random
        Whether the network's code calls ``rand()``: each run then seeds Brian2's random numbers
        with the seed given to :meth:`Simulation.run` (a compiled program takes it when started).
    """

    objects: list[Any]
    duration: Any
    settable: dict[str, tuple[Any, str]]
    readable: dict[str, tuple[Any, str]]
    timed_arrays: dict[str, Any] = dataclasses.field(default_factory=dict)
    spike_inputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    draws_random: bool = False


#: A function that creates the network's Brian2 objects (called once the backend's device is active).
Construct = Callable[[], NetworkBuild]


@dataclasses.dataclass(frozen=True)
class Backend:
    """A way of executing a task's network, as a target's ``backend:`` names it."""

    #: Builds the simulation of ``key`` (a name for everything shaping the network's code) on a target.
    make: Callable[[Target, Construct, str], Simulation]
    #: Whether it holds one project at a time (Brian2's standalone devices): building one replaces the last.
    one_project: bool = False
    #: Raises a one-line CodesignError where this machine cannot run a target of this backend (no GPU),
    #: before anything is compiled for minutes; None: every machine can.
    check_runnable: Callable[[Target], None] | None = None
    #: The backend a comparison simulates such a target on instead, one every machine has and that
    #: computes the same network with the same float type; None: the backend itself.
    local: str | None = None


BACKENDS: Registry[Backend] = Registry("backend")


class Simulation(abc.ABC):
    """A built network that runs again and again; not thread safe, one per process."""

    #: Whether constructing it compiled a program here (a standalone project not found compiled in
    #: the cache); :func:`codesign.backends.builds` counts these.
    compiled: bool = False

    @abc.abstractmethod
    def run(self, values: Mapping[str, Any], timed: Mapping[str, np.ndarray], *,
            spikes: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
            seed: int | None = None) -> dict[str, np.ndarray]:
        """Reset to the initial state, set ``values``, input series ``timed`` and the ``spikes``
        (indices, times in seconds) of each spike input, seed ``rand()`` (where the network draws
        random numbers), run, read back."""


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


def spike_input(n: int, capacity: int, clock: Any, name: str) -> Any:
    """A ``SpikeGeneratorGroup`` of ``n`` inputs whose spikes are given per run, at most ``capacity``.

    A standalone program's arrays keep the size they were built with, so the group is built with
    ``capacity`` padding spikes: on input 0, at time steps from :data:`NEVER_STEP` on, which no
    run reaches (the group reads its time-ordered list only up to the current step). A run replaces
    the list by its spikes, padded the same way (:func:`padded_spike_list`).
    """
    import brian2

    if not 1 <= capacity < NEVER_STEP:
        raise ValueError(f"a spike input holds 1 to {NEVER_STEP - 1} spikes, not {capacity}")
    steps = NEVER_STEP + np.arange(capacity)
    group = brian2.SpikeGeneratorGroup(n, np.zeros(capacity, dtype=np.int32), steps * float(clock.dt_) * brian2.second,
                                       clock=clock, name=name, sorted=True)
    # Private API (Variable.read_only): Brian2 marks the spike list read-only, and a standalone
    # program then has no command-line argument to set it; what the program reads at each step is
    # neuron_index and _timebins (spike_time only serves Python-side checks at build time).
    for variable in ("neuron_index", "_timebins"):
        group.variables[variable].read_only = False
    return group


def padded_spike_list(group: Any, indices: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
    """What a run sets in a :func:`spike_input` group for these spikes: ``neuron_index`` and
    ``_timebins``, ordered and binned as ``SpikeGeneratorGroup`` does it, padded to its capacity."""
    indices, times = np.asarray(indices), np.asarray(times, dtype=float)
    order = np.lexsort((indices, times))  # by time, then by index: the order of delivery
    indices, times = indices[order], times[order]
    dt = float(group.clock.dt_)
    bins = ((times + 1e-3 * dt) / dt).astype(np.int64)  # SpikeGeneratorGroup.before_run's binning
    capacity = group.variables["neuron_index"].size
    if len(indices) > capacity:
        raise ValueError(f"{len(indices)} spikes for {group.name}, which holds at most {capacity}")
    if len(indices) and not (0 <= indices.min() and indices.max() < len(group)
                             and 0 <= times.min() and bins.max() < NEVER_STEP):
        raise ValueError(f"spikes for {group.name} outside its {len(group)} inputs or time steps [0, {NEVER_STEP})")
    if np.logical_and(np.diff(bins) == 0, np.diff(indices) == 0).any():
        raise ValueError(f"an input of {group.name} spikes twice in one time step")
    pad = capacity - len(indices)
    return {"neuron_index": np.r_[indices, np.zeros(pad)].astype(np.int32),
            "_timebins": np.r_[bins, NEVER_STEP + np.arange(pad)].astype(np.int32)}
