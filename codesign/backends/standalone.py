"""Brian2's C++ standalone device: the network is compiled once and re-run with new values.

The project is built in a cache folder named after a hash of everything that shapes the code (the
caller's key), so a second process, or a second study of the same shape, reuses the compiled
binary: Brian2 rewrites only changed source files and ``make`` then has nothing to do. Each run
passes the per-candidate values and input series as ``run_args`` and writes its results into a
folder of its own process, so several workers can share one build.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from codesign.backends.base import Construct, Simulation
from codesign.errors import CodesignError
from codesign.backends.runtime import quiet_brian
from codesign.hardware import Target

__all__ = ["StandaloneSimulation", "standalone_cache_dir"]


def standalone_cache_dir() -> Path:
    """Where compiled standalone projects are kept: ``$CODESIGN_CACHE`` or ``~/.cache/codesign``."""
    root = os.environ.get("CODESIGN_CACHE") or Path.home() / ".cache" / "codesign"
    return Path(root) / "cpp_standalone"


class StandaloneSimulation(Simulation):
    """One compiled project; building another in the same process retires this one."""

    _current: StandaloneSimulation | None = None

    def __init__(self, target: Target, construct: Construct, key: str) -> None:
        import brian2
        from brian2.utils.filelock import FileLock

        quiet_brian()
        digest = hashlib.sha256(f"{key}|{target.float_dtype}".encode()).hexdigest()[:16]
        self.directory = standalone_cache_dir() / digest
        self.directory.mkdir(parents=True, exist_ok=True)
        if StandaloneSimulation._current is not None:
            StandaloneSimulation._current.retired = True
        brian2.set_device("cpp_standalone", directory=str(self.directory), build_on_run=False)
        brian2.device.reinit()
        brian2.device.activate(directory=str(self.directory), build_on_run=False)
        brian2.prefs.core.default_float_dtype = getattr(np, target.float_dtype)
        self.build = construct()
        # Fixed names: generated code (and so the build) must not depend on what the process made before.
        network = brian2.Network(*self.build.objects, name="network")
        network.run(self.build.duration, namespace=dict(self.build.timed_arrays))
        with FileLock(str(self.directory) + ".lock"):  # one compiler per project at a time
            try:
                brian2.device.build(directory=str(self.directory), compile=True, run=False, with_output=False)
            except RuntimeError as exc:
                raise CodesignError(
                    f"the C++ standalone build failed ({exc}); its files are in {self.directory}",
                    file=target.file, key="backend",
                    fix="install a C++ compiler and make (apt-get install g++ make), or use hw_targets/cpu.yaml",
                ) from exc
        self.device = brian2.device
        self.results = f"results_{os.getpid()}"
        self.retired = False
        self.builds = 1
        StandaloneSimulation._current = self

    def run(self, values: Mapping[str, Any], timed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.retired:
            raise RuntimeError("this standalone project was replaced by a newer one in this process")
        run_args: dict[Any, Any] = {}
        for name, value in values.items():
            group, variable = self.build.settable[name]
            run_args[getattr(group, variable)] = value
        for name, series in timed.items():
            run_args[self.build.timed_arrays[name]] = series
        self.device.run(directory=str(self.directory), results_directory=self.results, with_output=False,
                        run_args=run_args)
        return {name: np.array(getattr(group, variable)[:]) for name, (group, variable) in self.build.readable.items()}
