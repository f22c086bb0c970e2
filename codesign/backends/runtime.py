"""Brian2's runtime mode: the network is executed from Python, its code generated for numpy or Cython.

The network is built once; each run restores its initial state and sets new values. Brian2
regenerates the code of each object at every ``run`` (runtime mode has no code-object cache); with
Cython the compiled extension is found in Brian2's cache, so nothing is compiled again.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from codesign.backends.base import BACKENDS, Backend, Construct, Simulation

if TYPE_CHECKING:  # the target module imports the backends (to validate its backend)
    from codesign.hardware.target import Target

__all__ = ["configure_runtime", "RuntimeSimulation", "quiet_brian"]


@functools.lru_cache(maxsize=None)
def quiet_brian() -> None:
    import brian2

    # Diverging candidates are expected in a search; tasks report them as diverged, so Brian2's
    # warning about NaN weights would only be noise. No log file per worker either.
    brian2.BrianLogger.suppress_name("invalid_values")
    # Brian2 warns that an on_pre block with temporaries "may depend on the order of execution";
    # ours updates each synapse's own variables only, so the order does not matter (it only says
    # which random number each synapse draws). A hierarchy: suppress_name matches a last component.
    brian2.BrianLogger.suppress_hierarchy("brian2.codegen.generators.base")
    # A network whose construction failed (bad Brian2 text, reported in one line) leaves objects
    # that never joined a network; Brian2's warning about each, with a stack, would bury that line.
    brian2.BrianLogger.suppress_name("unused_brian_object")
    # Brian2's notes (the integration method it chose for a group) would come between codesign's
    # lines, and before a one-line error; its warnings still show.
    brian2.BrianLogger.log_level_warn()
    brian2.prefs.logging.file_log = False


def configure_runtime(target: Target) -> None:
    """Set Brian2's global preferences for ``target`` (runtime device, code generation, float type)."""
    import brian2

    quiet_brian()
    brian2.set_device("runtime")
    brian2.prefs.codegen.target = target.codegen
    brian2.prefs.core.default_float_dtype = getattr(np, target.float_dtype)


class RuntimeSimulation(Simulation):
    def __init__(self, target: Target, construct: Construct) -> None:
        import brian2

        configure_runtime(target)
        self.target = target
        self.build = construct()
        self.network = brian2.Network(*self.build.objects)
        self.network.store("initial")

    def run(self, values: Mapping[str, Any], timed: Mapping[str, np.ndarray], *,
            spikes: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
            seed: int | None = None) -> dict[str, np.ndarray]:
        import brian2

        configure_runtime(self.target)  # another simulation in this process may have changed them
        self.network.restore("initial")
        for name, series in timed.items():
            # In place: the generated code reads the TimedArray's own array at every run.
            self.build.timed_arrays[name].values[:] = series
        for name, value in values.items():
            group, variable = self.build.settable[name]
            setattr(group, variable, value)
        for name, (indices, times) in (spikes or {}).items():
            self.build.spike_inputs[name].set_spikes(indices, times * brian2.second)
        if self.build.draws_random:
            brian2.seed(seed)
        with np.errstate(all="ignore"):
            self.network.run(self.build.duration, namespace=dict(self.build.timed_arrays))
        return {name: np.array(getattr(group, variable)[:]) for name, (group, variable) in self.build.readable.items()}


# Runtime simulations need no compiled project, so they are kept side by side; the key names a
# standalone project's folder only.
BACKENDS.register("runtime", Backend(make=lambda target, construct, key: RuntimeSimulation(target, construct)))
