"""Brian2's standalone devices: the network is compiled once and re-run with new values.

:class:`CompiledSimulation` holds what every standalone device shares (``cpp_standalone`` here,
``cuda_standalone`` in :mod:`codesign.backends.cuda`). The project is built in a cache folder named
after a hash of everything that shapes the code (the caller's key, and what the device adds), so a
second process, or a second study of the same shape, reuses the compiled binary: Brian2 rewrites
only changed source files and ``make`` then has nothing to do. Each run passes the per-candidate
values, input series and input spikes as ``run_args``, and the seed of ``rand()`` in an environment
variable, and writes its results into a folder of its own process, so several workers can share one
build, and one build serves every input seed.

The values reach the program as files in that folder, one per variable, rewritten only when they
change: Brian2's ``run_args`` given as a mapping would write each distinct value to a new file in the
project's ``static_arrays`` (named after its hash, each with a lock file), which nothing removes: a
study left tens of thousands of them behind. A process removes its folder when it exits, and a new
simulation removes the folders of processes of this host that are gone (killed ones).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import os
import re
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping

import numpy as np

from codesign.backends.base import BACKENDS, Backend, Construct, Simulation, padded_spike_list
from codesign.backends.runtime import quiet_brian
from codesign.errors import CodesignError
from codesign.processes import alive

if TYPE_CHECKING:  # the target module imports the backends (to validate its backend)
    from codesign.hardware.target import Target

__all__ = ["CompiledSimulation", "StandaloneSimulation", "standalone_cache_dir", "cache_dir", "remove_own_results"]

#: The environment variable through which a compiled program gets the seed of ``rand()``: Brian2's
#: ``seed()`` writes its value into the generated code, so a seed per run would mean a build per seed.
SEED_VARIABLE = "CODESIGN_RAND_SEED"


def cache_dir(device: str = "cpp_standalone") -> Path:
    """Where compiled projects of ``device`` are kept: under ``$CODESIGN_CACHE`` or ``~/.cache/codesign``."""
    root = os.environ.get("CODESIGN_CACHE") or Path.home() / ".cache" / "codesign"
    return Path(root) / device


def standalone_cache_dir() -> Path:
    """Where compiled C++ standalone projects are kept (``cache_dir("cpp_standalone")``)."""
    return cache_dir("cpp_standalone")


class CompiledSimulation(Simulation):
    """One compiled project of a Brian2 standalone device, re-run with ``run_args``.

    Brian2 has one active device, holding one project: building another one in the same process,
    on this device or another standalone one, retires this one. Not thread safe.

    Subclasses name their ``device`` and may add to the build's identity (:meth:`identity`), set
    and restore Brian2 preferences around the build (:meth:`preferences`), seed ``rand()`` as the
    device does (:meth:`seed_code`), and turn failures into
    :class:`~codesign.errors.CodesignError` (:meth:`build_error`, :meth:`run_error`).
    """

    #: The Brian2 device name, also the cache sub-folder.
    device: ClassVar[str]
    #: The project currently held by Brian2's device, whichever standalone device built it.
    _current: ClassVar[CompiledSimulation | None] = None

    def __init__(self, target: Target, construct: Construct, key: str) -> None:
        import brian2
        from brian2.utils.filelock import FileLock

        quiet_brian()
        self.target = target
        self.retired = False
        digest = hashlib.sha256("|".join([key, *self.identity()]).encode()).hexdigest()[:16]
        self.directory = cache_dir(self.device) / digest
        self.directory.mkdir(parents=True, exist_ok=True)
        if CompiledSimulation._current is not None:
            CompiledSimulation._current.retire()
            CompiledSimulation._current = None
        with self.preferences():
            brian2.set_device(self.device, directory=str(self.directory), build_on_run=False)
            brian2.device.reinit()
            brian2.device.activate(directory=str(self.directory), build_on_run=False)
            _write_static_arrays_whole(brian2.get_device())
            # Brian2 names code objects after the live objects ("neurons_stateupdater_codeobject",
            # or "..._1" if that name is taken): collect the dead ones now, so that the generated
            # code, and so the build, does not depend on what this process built before.
            gc.collect()
            brian2.prefs.core.default_float_dtype = getattr(np, target.float_dtype)
            self.build = construct()
            if self.build.draws_random:
                brian2.device.insert_code("before_network_run", self.seed_code())
            # Fixed names: generated code (and so the build) must not depend on what the process made before.
            network = brian2.Network(*self.build.objects, name="network")
            network.run(self.build.duration, namespace=dict(self.build.timed_arrays))
            with FileLock(str(self.directory) + ".lock"):  # one compiler per project at a time
                before = self._program_stamp()
                try:
                    brian2.device.build(directory=str(self.directory), compile=True, run=False, with_output=False)
                except RuntimeError as exc:
                    raise self.build_error(exc) from exc
                # make rewrites the program only when a source changed: else it was found in the cache.
                self.compiled = self._program_stamp() != before
        self.brian_device = brian2.device
        self.results = _results_folder(self.directory)
        # per variable: its file, open for writing, and the value last written there
        self._arg_files: dict[str, tuple[str, int, np.ndarray]] = {}
        CompiledSimulation._current = self

    def _program_stamp(self) -> int | None:
        """The compiled program's modification time (ns), None if there is none yet."""
        try:
            return (self.directory / "main").stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def retire(self) -> None:
        """Give up this project (another one was built): drop its Brian2 objects, refuse to run."""
        self.retired = True
        self.build = None  # type: ignore[assignment]
        self.brian_device = None
        for _, fd, _ in self._arg_files.values():
            os.close(fd)
        self._arg_files.clear()

    def identity(self) -> list[str]:
        """What, besides the caller's key, shapes the compiled code (part of the cache folder's name)."""
        return [self.target.float_dtype]

    def seed_code(self) -> str:
        """Code run before the network that seeds ``rand()`` from :data:`SEED_VARIABLE`, where set.

        What Brian2's ``seed(value)`` generates for this device, with the value read at run time.
        """
        import brian2

        threads = max(1, brian2.prefs.devices.cpp_standalone.openmp_threads)
        return (f"if (getenv(\"{SEED_VARIABLE}\") != NULL)\n"
                f"    for (int _i = 0; _i < {threads}; _i++)\n"
                f"        brian::_random_generators[_i].seed(strtoul(getenv(\"{SEED_VARIABLE}\"), NULL, 10) + _i);")

    @contextlib.contextmanager
    def preferences(self) -> Iterator[None]:
        """Brian2 preferences (and any other set-up) in force while the network is made and built."""
        yield

    def build_error(self, exc: RuntimeError) -> CodesignError:
        return CodesignError(
            f"the C++ standalone build failed ({exc}); its files are in {self.directory}",
            file=self.target.file, key="backend",
            fix="install a C++ compiler and make (apt-get install g++ make), or use hw_targets/cpu.yaml",
        )

    def run_error(self, exc: RuntimeError) -> Exception:
        """The error to raise when the compiled program fails; by default Brian2's own."""
        return exc

    def before_run(self) -> None:
        """A check before the compiled program is started (raise a CodesignError to refuse)."""

    def run(self, values: Mapping[str, Any], timed: Mapping[str, np.ndarray], *,
            spikes: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
            seed: int | None = None) -> dict[str, np.ndarray]:
        if self.retired:
            raise RuntimeError(f"this {self.device} project was replaced by a newer one in this process")
        self.before_run()
        run_args = []
        for name, value in values.items():
            group, variable = self.build.settable[name]
            run_args.append(self._run_arg(group, variable, value))
        for name, series in timed.items():
            timed_array = self.build.timed_arrays[name]
            run_args.append(self._run_arg(timed_array, "values", series))
        for name, (indices, times) in (spikes or {}).items():
            group = self.build.spike_inputs[name]
            for variable, value in padded_spike_list(group, indices, times).items():
                run_args.append(self._run_arg(group, variable, value))
        try:
            with _environment(SEED_VARIABLE, None if seed is None else str(int(seed))):
                self.brian_device.run(directory=str(self.directory), results_directory=self.results,
                                      with_output=False, run_args=run_args)
        except RuntimeError as exc:
            error = self.run_error(exc)
            if error is exc:
                raise
            raise error from exc
        return {name: np.array(getattr(group, variable)[:]) for name, (group, variable) in self.build.readable.items()}

    def _run_arg(self, owner: Any, variable: str, value: Any) -> str:
        """``owner.variable=FILE``, the command-line argument of the compiled program that sets a
        variable (or a TimedArray's ``values``) from a file of this process, rewritten if ``value`` changed.

        The file's name is a number: brian2cuda's program lowercases the argument before it opens it.
        Each file stays open: writing into an open file costs about a microsecond, opening one about
        0.2 ms, several times per batch.
        """
        import brian2

        if variable == "values":  # a TimedArray: its whole table, in its shape
            dim, dtype, shape = owner.dim, owner.values.dtype, owner.values.shape
        else:
            var = owner.variables[variable]
            dim, dtype, shape = var.dim, var.dtype, None if var.dynamic else (var.size,)
        name = f"{owner.name}.{variable}"
        given = brian2.get_dimensions(value)
        if given is not dim and given != dim:  # dimensions are shared objects: most checks end at "is"
            raise TypeError(f"{name} is in {dim}, not {given}")
        array = np.ascontiguousarray(np.asarray(value), dtype=dtype)
        if shape is not None and array.shape != shape:
            raise TypeError(f"{name} holds {shape}, not {array.shape}")
        if name not in self._arg_files:
            path = f"{self.results}/args/{len(self._arg_files)}.dat"
            (self.directory / path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self._arg_files[name] = (path, fd, np.empty(0, dtype=dtype))  # an empty file
        path, fd, last = self._arg_files[name]
        if last.shape != array.shape or not np.array_equal(last, array):
            os.pwrite(fd, array.tobytes(), 0)
            if last.nbytes != array.nbytes:
                os.ftruncate(fd, array.nbytes)
            self._arg_files[name] = (path, fd, array.copy())
        return f"{name}={path}"


_RESULTS = re.compile(r"results_(?:(?P<host>.+)_)?(?P<pid>[0-9]+)")
#: This process's results folders, removed at exit (one per project it built, however often).
_OWN_RESULTS: set[Path] = set()


#: Where this user's results folders are kept in memory (a tmpfs), and the room it must have free to be used.
MEMORY_FOLDER = Path("/dev/shm") / f"codesign-results-{os.getuid() if hasattr(os, 'getuid') else 0}"
MEMORY_NEEDED = 1 << 30


@atexit.register
def remove_own_results() -> None:
    """Remove this process's results folders (at exit; a process pool's workers, which skip atexit, call it)."""
    for folder in _OWN_RESULTS:
        _remove_results(folder)


def _remove_results(folder: Path) -> None:
    """Remove a results folder: the folder, or the link to one in memory and what it links to."""
    if folder.is_symlink():
        shutil.rmtree(os.readlink(folder), ignore_errors=True)
        folder.unlink(missing_ok=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)


def _write_static_arrays_whole(device: Any) -> None:
    """Make ``device`` replace its static arrays (connectivity, tables) whole, by renaming, at each build.

    Brian2 rewrites every one of them at each build, truncating the file first, and the compiled program
    reads them as it starts. A process building a project (a second worker, an evaluation's child) while
    another process's program starts would hand it part of a file, and a wrong result. Renamed files are
    whole: a starting program reads the old one or the new one, the same numbers. Wraps Brian2's
    ``write_static_arrays(directory)`` (not public API; its standalone devices, brian2cuda's included,
    all call it once per build).
    """
    if getattr(device, "_codesign_whole_static_arrays", False):
        return
    write = device.write_static_arrays

    def whole(directory: str) -> None:
        staging = Path(directory) / f"static_arrays_{socket.gethostname().lower()}_{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "static_arrays").mkdir(parents=True)
        try:
            write(str(staging))
            for file in (staging / "static_arrays").iterdir():
                os.replace(file, Path(directory) / "static_arrays" / file.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    device.write_static_arrays = whole
    device._codesign_whole_static_arrays = True


def _forget_the_parents_project() -> None:
    """In a forked child: neither run in, nor remove at exit, the parent's results folder; build anew."""
    _OWN_RESULTS.clear()
    if CompiledSimulation._current is not None:
        CompiledSimulation._current.retire()  # closes the child's copies of the argument files
        CompiledSimulation._current = None


os.register_at_fork(after_in_child=_forget_the_parents_project)


def _results_folder(project: Path) -> str:
    """This process's results folder in ``project`` (removed when the process exits), after removing
    those of processes of this host that are gone: killed ones never removed their own.

    The folder is a link to one in memory (:data:`MEMORY_FOLDER`) where the machine has a tmpfs with
    :data:`MEMORY_NEEDED` free. A program writes every array of its network there at each run (27
    files for the Oja demo, a batch every 12 ms), read back at once: on disk each run also waits on
    the file system's journal, and two workers' programs on each other's.
    """
    host = socket.gethostname().lower()
    for folder in [*project.glob("results_*"), *MEMORY_FOLDER.glob("*-results_*")]:
        match = _RESULTS.fullmatch("results_" + folder.name.partition("results_")[2])  # in memory: after the project
        # a folder without a host is from before hosts were named: taken for this host's
        if match and match["host"] in (host, None) and not alive(int(match["pid"])):
            _remove_results(folder)
    name = f"results_{host}_{os.getpid()}"
    memory = _in_memory(f"{project.parent.name}-{project.name}-{name}")
    if memory is not None:
        with contextlib.suppress(FileExistsError):  # made by this process for an earlier build of the project
            (project / name).symlink_to(memory, target_is_directory=True)
    _OWN_RESULTS.add(project / name)
    return name


def _in_memory(name: str) -> Path | None:
    """A folder ``name`` made in :data:`MEMORY_FOLDER`; None where there is none with room to spare."""
    try:
        free = os.statvfs(MEMORY_FOLDER.parent)
        if free.f_bavail * free.f_frsize < MEMORY_NEEDED:
            return None
        (MEMORY_FOLDER / name).mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return MEMORY_FOLDER / name


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """``name`` set to ``value`` (unset where None) for the programs started meanwhile."""
    saved = os.environ.pop(name, None)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if saved is not None:
            os.environ[name] = saved


class StandaloneSimulation(CompiledSimulation):
    """Brian2's C++ standalone device: one compiled program on the host CPU."""

    device = "cpp_standalone"


BACKENDS.register(StandaloneSimulation.device, Backend(make=StandaloneSimulation, one_project=True))
