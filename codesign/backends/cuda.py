"""brian2cuda's CUDA standalone device: the network is compiled once for a GPU and re-run per batch.

The same Brian2 text as on the CPU becomes CUDA code; the project is built, cached and re-run with
``run_args`` exactly as on ``cpp_standalone``
(:class:`~codesign.backends.standalone.CompiledSimulation`). What differs is the build:

- No GPU is needed to compile. brian2cuda's GPU detection is off (``detect_gpus = False``); the
  GPU id and compute capability come from the target's ``gpu:`` section (a ``null`` compute
  capability is read from ``nvidia-smi`` on this machine). A machine with ``nvcc`` and no driver
  (CI, a login node) builds what a GPU node runs.
- The CUDA toolkit is the target's ``gpu.cuda_path``, else ``$CUDA_PATH`` or ``$CUDA_HOME``, else
  the folder above the ``nvcc`` on the PATH (a wrapper script is seen through: the folder must have
  ``include/cuda_runtime.h``), else ``/usr/local/cuda`` or ``/opt/cuda``.
- CUDA 13's headers need C++17, while brian2cuda's makefile and Brian2's default ``g++`` flags say
  ``-std=c++11``: ``-std=c++17`` is passed to ``nvcc`` (after the template's flag; nvcc uses the
  last one and warns) and replaces ``-std=c++11`` in the host compiler's flags.
- cuRAND comes from the toolkit when it has it, else from the ``nvidia-curand`` wheel (the ``gpu``
  dependency group): its include folder, a folder holding the ``libcurand.so`` link the linker
  asks for (the wheel ships only ``libcurand.so.10``) and the wheel's library folder as a run-time
  path.
- The CUDA runtime is linked as a shared library (``-cudart=shared``), found through the toolkit's
  library folder (a run-time path too), so the wheel's cuRAND loads the same runtime as the program.
- ``nvcc`` gets no ``-use_fast_math`` (brian2cuda's default), so the GPU computes what the CPU
  computes up to rounding; host code gets no ``-march=native``, so a build made on one machine runs
  on another that shares the cache; ``make`` runs one job per core, not an unbounded number.

- The generated code must not change between processes, or a worker recompiles for minutes:
  brian2cuda orders a Synapses' variables by name only, so while a network is made its Synapses
  iterate them by array name (:class:`_ByArrayName`).

Preferences are set for the build only and restored afterwards, so a later C++ standalone or Cython
build in the same process is not affected.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import importlib.util
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from codesign.backends.base import BACKENDS, Backend, Construct
from codesign.backends.standalone import SEED_VARIABLE, CompiledSimulation, StandaloneSimulation
from codesign.errors import CodesignError

if TYPE_CHECKING:  # the target module imports the backends (to validate its backend)
    from codesign.hardware.target import Target

__all__ = ["CudaStandaloneSimulation", "CudaToolkit", "find_cuda", "gpu_status", "require_gpu", "compute_capability"]

#: Where to go when the GPU cannot be used here.
_CPU_FIX = "run on a GPU node, or use hw_targets/cpu-standalone.yaml"


@functools.lru_cache(maxsize=None)
def gpu_status() -> tuple[bool, str]:
    """Whether this machine can run CUDA programs, and what it has (or lacks), in a few words.

    ``nvidia-smi -L`` lists the GPUs where it is installed; without it, a GPU may still be usable
    where the driver library (``libcuda.so.1``) loads, and the program's run tells.
    """
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"nvidia-smi failed ({exc})"
        gpus = [line.split(" (UUID")[0] for line in proc.stdout.splitlines() if line.startswith("GPU ")]
        if proc.returncode == 0 and gpus:
            return True, "; ".join(gpus)
        said = (proc.stdout + proc.stderr).strip().splitlines()
        return False, f"nvidia-smi finds no GPU ({said[0] if said else f'exit code {proc.returncode}'})"
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False, "no NVIDIA driver (no nvidia-smi, no libcuda.so.1)"
    return True, "an NVIDIA driver (libcuda.so.1), no nvidia-smi"


def require_gpu(target: Target, built: Path | None = None) -> None:
    """Raise a one-line CodesignError where ``target`` (cuda_standalone) cannot run: no GPU here."""
    present, what = gpu_status()
    if not present:
        ready = f"the CUDA build is ready ({built}) but " if built is not None else ""
        raise CodesignError(f"{ready}target {target.name} runs on an NVIDIA GPU and cannot run here: {what}",
                            file=target.file, key="backend", fix=_CPU_FIX)


def compute_capability(target: Target) -> float:
    """The compute capability to compile for: the target's, else that of its GPU on this machine."""
    gpu = target.gpu
    if gpu.compute_capability is not None:
        return gpu.compute_capability
    present, what = gpu_status()
    fix = "set gpu.compute_capability in the target (8.0: A100, 9.0: H100) to build without a GPU"
    if not present:
        raise CodesignError(f"gpu.compute_capability is null (read it from the GPU) but {what}",
                            file=target.file, key="gpu.compute_capability", fix=fix)
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=60, check=True)
        return float(proc.stdout.split()[gpu.gpu_id])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise CodesignError(f"cannot read the compute capability of GPU {gpu.gpu_id} from nvidia-smi ({exc})",
                            file=target.file, key="gpu.compute_capability", fix=fix) from exc


@dataclasses.dataclass(frozen=True)
class CudaToolkit:
    """A CUDA toolkit: its folder, ``nvcc``'s release, and where cuRAND's files are."""

    root: Path
    version: tuple[int, int]
    #: cuRAND's headers and library folder where they are not the toolkit's own (the wheel's).
    curand_include: Path | None = None
    curand_lib: Path | None = None

    @property
    def nvcc(self) -> Path:
        return self.root / "bin" / "nvcc"

    @property
    def lib(self) -> Path:
        """The toolkit's library folder (``libcudart.so``)."""
        for name in ("lib64", "lib"):
            if (self.root / name).is_dir():
                return self.root / name
        return self.root / "lib64"

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"


def _roots(configured: str | None) -> Iterator[tuple[Path, str]]:
    if configured:
        yield Path(configured).expanduser(), "gpu.cuda_path"
        return
    for variable in ("CUDA_PATH", "CUDA_HOME"):
        if os.environ.get(variable):
            yield Path(os.environ[variable]), f"${variable}"
    nvcc = shutil.which("nvcc")
    if nvcc is not None:
        yield Path(nvcc).resolve().parent.parent, f"nvcc on the PATH ({nvcc})"
    for default in ("/usr/local/cuda", "/opt/cuda"):
        yield Path(default), default


def _is_toolkit(root: Path) -> bool:
    return (root / "bin" / "nvcc").is_file() and (root / "include" / "cuda_runtime.h").is_file()


def _curand_wheel(major: int) -> tuple[Path, Path] | None:
    """Include and library folders of the ``nvidia-curand`` wheel for CUDA ``major``, if installed."""
    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations or []) if spec else []:
        # nvidia-curand (CUDA 13 on) installs under nvidia/cu13; nvidia-curand-cu12 under nvidia/curand.
        for sub in (f"cu{major}", "curand"):
            folder = Path(base) / sub
            if (folder / "include" / "curand.h").is_file() and any((folder / "lib").glob("libcurand.so*")):
                return folder / "include", folder / "lib"
    return None


@functools.lru_cache(maxsize=None)
def find_cuda(cuda_path: str | None = None, file: str | None = None) -> CudaToolkit:
    """The CUDA toolkit to compile with (see the module docstring), with cuRAND; a CodesignError if none."""
    root = None
    for candidate, source in _roots(cuda_path):
        if _is_toolkit(candidate):
            root = candidate
            break
        if source == "gpu.cuda_path":
            raise CodesignError(f"no CUDA toolkit at {candidate} (no bin/nvcc and include/cuda_runtime.h there)",
                                file=file, key="gpu.cuda_path",
                                fix="give the folder that holds bin/nvcc, or null to find nvcc on the PATH")
    if root is None:
        raise CodesignError("nvcc (the CUDA compiler) not found: the cuda_standalone backend compiles with it",
                            file=file, key="backend",
                            fix="install the CUDA toolkit and put nvcc on the PATH (or set gpu.cuda_path "
                                "or $CUDA_PATH), or use hw_targets/cpu-standalone.yaml")
    try:
        out = subprocess.run([str(root / "bin" / "nvcc"), "--version"], capture_output=True, text=True,
                             timeout=120).stdout
        found = re.search(r"release (\d+)\.(\d+)", out)
        version = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
    except (OSError, subprocess.SubprocessError):
        version = (0, 0)
    toolkit = CudaToolkit(root, version)
    if (root / "include" / "curand.h").is_file() and any(toolkit.lib.glob("libcurand.so*")):
        return toolkit
    wheel = _curand_wheel(version[0])
    if wheel is None:
        raise CodesignError(
            f"cuRAND not found: the CUDA {toolkit.version_text} toolkit at {root} has no curand.h, and the "
            f"nvidia-curand wheel for CUDA {version[0]} is not installed", file=file, key="backend",
            fix="run make setup (it installs the gpu dependency group: uv sync --group gpu), "
                "or install the toolkit's cuRAND")
    return dataclasses.replace(toolkit, curand_include=wheel[0], curand_lib=wheel[1])


def _brian2cuda() -> Any:
    try:
        import brian2cuda
    except ImportError as exc:
        raise CodesignError(f"brian2cuda cannot be imported ({exc})", key="backend",
                            fix="run make setup (brian2cuda is a dependency of codesign)") from exc
    return brian2cuda


class _ByArrayName(set):
    """A Synapses' registered variables, iterated in the order of their array names.

    Brian2 keeps them in a plain set (iterated in memory-address order), and brian2cuda's synapse
    creation template sorts them by variable name only; a Synapses with two pathways has two
    ``delay`` variables, which then came out in either order, so the generated code, and the
    build, changed from one construction to the next. Installed while a network is made (its
    synapse creation code is generated by ``connect``), see :func:`_ordered_synapse_variables`.
    """

    def __iter__(self) -> Iterator[Any]:
        import brian2

        device = brian2.get_device()
        return iter(sorted(set.__iter__(self), key=lambda v: device.get_array_name(v, access_data=False)))


@contextlib.contextmanager
def _ordered_synapse_variables() -> Iterator[None]:
    """Every Synapses made meanwhile keeps its registered variables in a :class:`_ByArrayName`."""
    from brian2.synapses.synapses import Synapses

    original = Synapses.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._registered_variables = _ByArrayName(self._registered_variables)

    Synapses.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        Synapses.__init__ = original  # type: ignore[method-assign]


class CudaStandaloneSimulation(CompiledSimulation):
    """brian2cuda's ``cuda_standalone`` device: one compiled program for an NVIDIA GPU.

    Building needs ``nvcc`` and cuRAND, not a GPU; running needs a GPU, and without one a run
    stops with a one-line :class:`~codesign.errors.CodesignError` before starting the program.
    """

    device = "cuda_standalone"

    def __init__(self, target: Target, construct: Construct, key: str) -> None:
        self.toolkit = find_cuda(target.gpu.cuda_path, target.file)
        self.compute_capability = compute_capability(target)
        super().__init__(target, construct, key)

    def identity(self) -> list[str]:
        return [*super().identity(), f"sm={self.compute_capability}", f"gpu={self.target.gpu.gpu_id}",
                f"cuda={self.toolkit.root}@{self.toolkit.version_text}",
                f"curand={self.toolkit.curand_lib or 'toolkit'}"]

    def seed_code(self) -> str:
        """As on the CPU (:meth:`CompiledSimulation.seed_code`), with what brian2cuda's ``seed(value)`` generates."""
        return (f"if (getenv(\"{SEED_VARIABLE}\") != NULL)\n"
                f"    brian::random_number_buffer.set_seed(strtoull(getenv(\"{SEED_VARIABLE}\"), NULL, 10));")

    def _curand_link_dir(self) -> Path | None:
        """A folder with ``libcurand.so`` for the linker, where cuRAND is the wheel's (``libcurand.so.10`` only)."""
        lib = self.toolkit.curand_lib
        if lib is None:
            return None
        if (lib / "libcurand.so").exists():
            return lib
        versioned = sorted(lib.glob("libcurand.so.*"))[0]
        folder = self.directory / "curand_link"
        folder.mkdir(exist_ok=True)
        link = folder / "libcurand.so"
        if not link.exists() or link.resolve() != versioned.resolve():
            spare = folder / f"libcurand.so.{os.getpid()}"
            spare.unlink(missing_ok=True)
            spare.symlink_to(versioned)
            os.replace(spare, link)  # atomic: workers building at once see one link or the other
        return folder

    @contextlib.contextmanager
    def preferences(self) -> Iterator[None]:
        import brian2

        _brian2cuda()
        from brian2cuda.utils import gputools

        # brian2cuda lists every preference at INFO level on each build; warnings still show.
        logging.getLogger("brian2.brian2cuda").setLevel(logging.WARNING)

        prefs = brian2.prefs
        backend = "devices.cuda_standalone.cuda_backend."
        names = [backend + n for n in ("cuda_path", "detect_gpus", "gpu_id", "compute_capability",
                                       "extra_compile_args_nvcc")]
        names += ["codegen.cpp." + n for n in ("extra_compile_args_gcc", "include_dirs", "library_dirs",
                                               "runtime_library_dirs", "extra_link_args")]
        names.append("devices.cpp_standalone.extra_make_args_unix")
        saved = {name: prefs[name] for name in names}
        toolkit = self.toolkit
        link_dir = self._curand_link_dir()
        try:
            # brian2cuda caches what it detected once per process; the target may say otherwise now.
            gputools.reset_cuda_installation()
            gputools.reset_gpu_selection()
            prefs[backend + "cuda_path"] = str(toolkit.root)
            prefs[backend + "detect_gpus"] = False
            prefs[backend + "gpu_id"] = self.target.gpu.gpu_id
            prefs[backend + "compute_capability"] = float(self.compute_capability)
            prefs[backend + "extra_compile_args_nvcc"] = ["-w", "-std=c++17"]
            host = [f for f in saved["codegen.cpp.extra_compile_args_gcc"]
                    if not f.startswith("-std=") and f != "-march=native"]
            prefs["codegen.cpp.extra_compile_args_gcc"] = host + ["-std=c++17"]
            if toolkit.curand_include is not None:
                prefs["codegen.cpp.include_dirs"] = [*saved["codegen.cpp.include_dirs"], str(toolkit.curand_include)]
            if link_dir is not None:
                prefs["codegen.cpp.library_dirs"] = [*saved["codegen.cpp.library_dirs"], str(link_dir)]
            runtime = [str(toolkit.curand_lib)] if toolkit.curand_lib is not None else []
            prefs["codegen.cpp.runtime_library_dirs"] = [*saved["codegen.cpp.runtime_library_dirs"], *runtime,
                                                         str(toolkit.lib)]
            prefs["codegen.cpp.extra_link_args"] = [*saved["codegen.cpp.extra_link_args"], "-cudart=shared"]
            prefs["devices.cpp_standalone.extra_make_args_unix"] = [f"-j{os.cpu_count() or 1}"]
            with _ordered_synapse_variables():
                yield
        finally:
            for name, value in saved.items():
                prefs[name] = value
            gputools.reset_cuda_installation()
            gputools.reset_gpu_selection()

    def build_error(self, exc: RuntimeError) -> CodesignError:
        return CodesignError(
            f"the CUDA build failed ({exc}); nvcc's messages are above, the project is in {self.directory}",
            file=self.target.file, key="gpu",
            fix=f"check gpu.compute_capability ({self.compute_capability}: CUDA {self.toolkit.version_text} "
                f"at {self.toolkit.root} must support it) and gpu.cuda_path, or use hw_targets/cpu-standalone.yaml")

    def before_run(self) -> None:
        require_gpu(self.target, self.directory)

    def run_error(self, exc: RuntimeError) -> Exception:
        return CodesignError(
            f"the CUDA program failed ({exc}); its error is above (an out-of-memory GPU, or a GPU "
            f"older than compute capability {self.compute_capability}, are common causes)",
            file=self.target.file, key="gpu", fix=f"check gpu.gpu_id and gpu.compute_capability, or {_CPU_FIX}")


# A comparison without a GPU computes the same network with the same float type on the CPU.
BACKENDS.register(CudaStandaloneSimulation.device,
                  Backend(make=CudaStandaloneSimulation, one_project=True, check_runnable=require_gpu,
                          local=StandaloneSimulation.device))
