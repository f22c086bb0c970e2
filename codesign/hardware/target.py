"""A hardware target as a typed object, read from a YAML file in ``hw_targets/``.

A target says how a task's Brian2 network is executed here (``backend``, ``codegen``) and what the
hardware it stands for can do: its precision, which rule terms its learning engine runs, its
resources, its time step, and an energy model. Every hardware figure carries its source and its
kind (one operation, whole chip, wall plug); a figure nobody published stays empty (``value: null``)
and reports say so instead of inventing one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, Mapping

from codesign.backends.base import BACKENDS
from codesign.hardware.engines import ENGINES, engine_sections
from codesign.schema import Where, build, read_yaml

__all__ = ["Target", "Figure", "Precision", "Learning", "Resources", "Energy", "Gpu", "load_target", "bundled_target",
           "trace_grid", "TRACE_HEADROOM_BITS"]


@dataclasses.dataclass(frozen=True)
class Figure:
    """A published number: its value (``null`` when not published), what kind of figure it is, and where from."""

    source: str
    value: float | None = dataclasses.field(default=None, metadata={"min": 0.0})
    #: ``per_operation`` (one synaptic event, spike or update), ``whole_chip`` (chip power, or energy
    #: per event measured on the whole chip), ``wall_plug`` (whole system at the socket). Figures of
    #: different kinds must not be compared as if alike.
    kind: Literal["per_operation", "whole_chip", "wall_plug", "count"] = "per_operation"
    note: str = ""

    @property
    def published(self) -> bool:
        return self.value is not None


#: Bits of a trace register above one spike's impulse: a trace saturates at about 2**3 = 8 recent
#: spikes. At Loihi's 7 bits an impulse is 16 units, inside the [8, 32] the Loihi 2 port chooses from.
TRACE_HEADROOM_BITS = 3


def trace_grid(trace_bits: int | None) -> tuple[float, float]:
    """(step, maximum) of a trace counted in spikes on a ``trace_bits`` register; (0, inf) for floats.

    >>> trace_grid(7)
    (0.0625, 7.9375)
    """
    if trace_bits is None:
        return 0.0, float("inf")
    step = 2.0 ** -(trace_bits - TRACE_HEADROOM_BITS)
    return step, (2**trace_bits - 1) * step


@dataclasses.dataclass(frozen=True)
class Precision:
    """Number formats of the hardware: ``null`` bits mean floating point."""

    weight_bits: int | None = dataclasses.field(default=None, metadata={"min": 1, "max": 64})
    weight_signed: bool = True
    #: Width of a trace register (Loihi, Loihi 2: 7 bits, values 0..127). The emulation gives one
    #: spike's impulse ``2**(trace_bits - TRACE_HEADROOM_BITS)`` units (see ``trace_grid``).
    trace_bits: int | None = dataclasses.field(default=None, metadata={"min": TRACE_HEADROOM_BITS, "max": 32})
    rounding: Literal["nearest", "stochastic", "none"] = "none"
    source: str = ""


@dataclasses.dataclass(frozen=True)
class Learning:
    """What on-chip learning can run: ``none``, a fixed ``sum_of_products`` engine, or ``any`` (software)."""

    engine: Literal["none", "sum_of_products", "any"] = "any"
    #: Spike-trace rule terms the engine can run (``all`` for every term of the family).
    terms: str | list[str] = "all"
    max_pre_traces: int | None = dataclasses.field(default=None, metadata={"min": 0})
    max_post_traces: int | None = dataclasses.field(default=None, metadata={"min": 0})
    source: str = ""


@dataclasses.dataclass(frozen=True)
class Resources:
    """Where the network must fit. ``null`` means unbounded (a general-purpose machine)."""

    cores: Figure | None = None
    neurons_per_core: Figure | None = None
    synapses_per_core: Figure | None = None


@dataclasses.dataclass(frozen=True)
class Energy:
    """The energy model: energy per event of each operation, and the static power of one chip.

    Per-event figures may be of any energy kind (``per_operation``, ``whole_chip``, ``wall_plug``);
    the static power is the power of one whole chip (kind ``whole_chip``), charged to a network in
    proportion to the cores it occupies (see :mod:`codesign.hardware.cost`).
    """

    synaptic_event_j: Figure | None = None
    spike_j: Figure | None = None
    learning_update_j: Figure | None = None
    #: One neuron's update in one hardware time step (``time_step_ms``).
    neuron_update_j: Figure | None = None
    static_power_w: Figure | None = None

    def events(self) -> dict[str, Figure]:
        """The per-event figures the file lists, by field name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "static_power_w" and getattr(self, f.name) is not None}

    def validate(self, where: Where) -> None:
        for name, figure in self.events().items():
            if figure.kind == "count":
                raise where.child(name).child("kind").error(
                    "an energy figure cannot be a count", fix="write per_operation, whole_chip or wall_plug")
        if self.static_power_w is not None and self.static_power_w.kind != "whole_chip":
            raise where.child("static_power_w").child("kind").error(
                f"static power is the power of one whole chip, got kind {self.static_power_w.kind}",
                fix="write kind: whole_chip")


@dataclasses.dataclass(frozen=True)
class Gpu:
    """Where and for which GPU the ``cuda_standalone`` backend compiles (brian2cuda preferences).

    With ``compute_capability`` given, the code is compiled for it without looking for a GPU, so a
    machine with ``nvcc`` and no GPU (a login node, CI) can build what a GPU node then runs.
    """

    #: The GPU architecture compiled for, e.g. 8.0 (A100) or 9.0 (H100); code for 8.0 also runs
    #: on newer GPUs (through the PTX it carries). ``null``: the GPU of this machine (nvidia-smi).
    compute_capability: float | None = dataclasses.field(default=None, metadata={"min": 5.0, "max": 20.0})
    #: Which GPU the program uses (among ``CUDA_VISIBLE_DEVICES`` where that is set).
    gpu_id: int = dataclasses.field(default=0, metadata={"min": 0})
    #: The CUDA toolkit (the folder with ``bin/nvcc``); ``null``: ``$CUDA_PATH``, else found from
    #: ``nvcc`` on the PATH, else ``/usr/local/cuda``.
    cuda_path: str | None = None


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how a task's Brian2 network is executed, and what the hardware behind it can do.

    Attributes
    ----------
    name
        Short name shown in reports.
    backend
        How the network runs here: a name registered in ``codesign.backends.BACKENDS``, e.g.
        ``runtime`` (Brian2's runtime mode), ``cpp_standalone`` (compiled once per network shape,
        then re-run with new values) or ``cuda_standalone`` (the same on an NVIDIA GPU, through
        brian2cuda; see ``gpu``).
    codegen
        Code generation target of the runtime: ``numpy`` (nothing to compile) or ``cython``
        (compiled once, then cached on disk by Brian2). Ignored by ``cpp_standalone``.
    float_dtype
        Floating-point type of state variables.
    time_step_ms
        The hardware's time step, when it has one (Loihi: 1 ms algorithmic time step).
    gpu
        How the ``cuda_standalone`` backend compiles: GPU architecture, GPU id, CUDA toolkit.
    description
        Free text for people.
    engines
        The sections of hardware engines (``codesign.hardware.engines``) the file has, by key: a
        ``loihi2:`` section is read with the dataclass Loihi 2 registered. Read with :meth:`engine`.
    """

    name: str
    backend: str = "runtime"
    codegen: Literal["numpy", "cython"] = "numpy"
    float_dtype: Literal["float64", "float32"] = "float64"
    description: str = ""
    kind: Literal["general_purpose", "neuromorphic"] = "general_purpose"
    time_step_ms: float | None = dataclasses.field(default=None, metadata={"min": 1e-6})
    precision: Precision = Precision()
    learning: Learning = Learning()
    resources: Resources = Resources()
    energy: Energy = Energy()
    gpu: Gpu = Gpu()
    # Not hashed (a dict); equal targets still hash equal.
    engines: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False,
                                                   metadata={"sections": engine_sections})
    file: str | None = dataclasses.field(default=None, compare=False, init=False)

    def engine(self, name: str) -> Any:
        """The section of hardware engine ``name`` (``loihi2``) this target has, else None."""
        return self.engines.get(name)

    def validate(self, where: Where) -> None:
        BACKENDS.get_named(self.backend, file=where.file, key=where.child("backend").key)
        for name, section in self.engines.items():
            check = ENGINES[name].check
            if check is not None:
                check(self, section, where)


def bundled_target(name: str) -> Path:
    """The target file ``hw_targets/NAME.yaml`` that comes with codesign, wherever it is run from.

    An installed wheel has it inside the package (``codesign/hw_targets/``, pyproject's
    ``force-include``); a source checkout (editable install) has it in the repository's ``hw_targets/``.
    """
    from importlib.resources import files

    packaged = files("codesign") / "hw_targets" / f"{name}.yaml"
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "hw_targets" / f"{name}.yaml"


def load_target(path: str | Path) -> Target:
    """Read and check a target file."""
    target = build(Target, read_yaml(path, "target file"), Where(str(path)))
    object.__setattr__(target, "file", str(path))
    return target
