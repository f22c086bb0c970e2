"""The Loihi 2 figures a port needs: the ``loihi2:`` section of ``hw_targets/loihi2.yaml``.

The rest of that file is a general :class:`codesign.hardware.Target` (precision, learning,
resources, energy), so studies and ``codesign compare`` use it like any target; this section adds
the learning engine's, chip's and neuron's registers that compiling a rule needs. Each figure must
name its source under ``sources:`` (the key path, e.g. ``learning_engine.pre_traces``); a figure
without one is refused. The section registers as the hardware engine ``loihi2``
(:data:`codesign.hardware.engines.ENGINES`): a target reads it with :class:`Loihi2Limits` and keeps
it in ``target.engine("loihi2")``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from codesign.hardware.engines import ENGINES, HardwareEngine
from codesign.schema import Where

if TYPE_CHECKING:
    from codesign.hardware.target import Target

__all__ = ["EngineLimits", "ChipLimits", "NeuronLimits", "Loihi2Limits", "DEFAULT_LIMITS"]


@dataclasses.dataclass(frozen=True)
class EngineLimits:
    """The learning engine: sum of products ``dw = sum_i S_i * D_i * prod_j F_ij``.

    Defaults are lava-nc 0.10.0's figures (``lava/magma/core/learning/constants.py`` and
    ``product_series.py``); see ``hw_targets/loihi2.yaml`` for the source of each.
    """

    #: Range of the mantissa of a product's scale ``S = mantissa * 2**exponent``.
    scale_mantissa: tuple[int, int] = (-8, 7)
    #: Range of the exponent of a product's scale.
    scale_exponent: tuple[int, int] = (-7, 8)
    #: Bits of the scale mantissa (the width lava adds before its right shift).
    scale_mantissa_bits: int = dataclasses.field(default=4, metadata={"min": 1})
    #: Presynaptic traces (x1, x2) and postsynaptic traces (y1, y2, y3).
    pre_traces: int = dataclasses.field(default=2, metadata={"min": 0})
    post_traces: int = dataclasses.field(default=3, metadata={"min": 0})
    #: Trace value: integer bits (0..2**trace_bits - 1), and fractional bits of an impulse.
    trace_bits: int = dataclasses.field(default=7, metadata={"min": 1})
    trace_fraction_bits: int = dataclasses.field(default=8, metadata={"min": 0})
    #: Width of the trace decay register ``tau`` (in time steps; x *= exp(-1/tau) per step).
    trace_tau_bits: int = dataclasses.field(default=8, metadata={"min": 1})
    #: Weight magnitude bits (a sign bit comes on top).
    weight_bits: int = dataclasses.field(default=8, metadata={"min": 1})
    #: Unsigned width of the accumulator of synaptic changes.
    accumulator_bits: int = dataclasses.field(default=15, metadata={"min": 1})
    #: Time steps per learning epoch (the rules here are evaluated every step).
    t_epoch: int = dataclasses.field(default=1, metadata={"min": 1})

    @property
    def trace_max(self) -> int:
        return 2**self.trace_bits - 1

    @property
    def tau_max(self) -> int:
        return 2**self.trace_tau_bits - 1

    @property
    def weight_max(self) -> int:
        return 2**self.weight_bits - 1

    def validate(self, where: Where) -> None:
        for name in ("scale_mantissa", "scale_exponent"):
            low, high = getattr(self, name)
            if low > high:
                raise where.child(name).error(f"empty range [{low}, {high}]", fix="write [low, high] with low <= high")


@dataclasses.dataclass(frozen=True)
class ChipLimits:
    cores: int = dataclasses.field(default=128, metadata={"min": 1})
    cores_mapped_by_lava: int = dataclasses.field(default=120, metadata={"min": 1})
    neurons_per_core: int = dataclasses.field(default=8192, metadata={"min": 1})


@dataclasses.dataclass(frozen=True)
class NeuronLimits:
    """Lava's fixed-point LIF (``lava/proc/lif/models.py``, ``AbstractPyLifModelFixed``)."""

    #: du and dv are unsigned 12-bit: decay factor (4096 - d) / 4096 per step (u adds an offset of 1).
    decay_bits: int = dataclasses.field(default=12, metadata={"min": 1})
    #: u and v are 24-bit signed; synaptic input and threshold are shifted left by 6 bits.
    state_bits: int = dataclasses.field(default=24, metadata={"min": 1})
    input_shift: int = dataclasses.field(default=6, metadata={"min": 0})
    #: Threshold register width (unsigned).
    vth_bits: int = dataclasses.field(default=17, metadata={"min": 1})


@dataclasses.dataclass(frozen=True)
class Loihi2Limits:
    """The ``loihi2:`` section of a target file: what a port to Loihi 2 must respect."""

    learning_engine: EngineLimits = dataclasses.field(default_factory=EngineLimits)
    chip: ChipLimits = dataclasses.field(default_factory=ChipLimits)
    neuron: NeuronLimits = dataclasses.field(default_factory=NeuronLimits)
    #: ``key path -> where the figure comes from``; every figure above needs one.
    sources: dict[str, str] = dataclasses.field(default_factory=dict)

    def validate(self, where: Where) -> None:
        missing = [key for key in self.figures() if key not in self.sources]
        if missing:
            raise where.child("sources").error(f"no source for {', '.join(missing)}",
                                               fix="add 'KEY: where the figure comes from' under sources:")
        unknown = [key for key in self.sources if key not in self.figures()]
        if unknown:
            raise where.child("sources").error(f"source for unknown figure {', '.join(unknown)}",
                                               fix=f"figures are: {', '.join(self.figures())}")

    def figures(self) -> list[str]:
        """The key paths of every figure (``learning_engine.pre_traces``, ...)."""
        keys = []
        for section in ("learning_engine", "chip", "neuron"):
            keys += [f"{section}.{f.name}" for f in dataclasses.fields(getattr(self, section))]
        return keys


DEFAULT_LIMITS = EngineLimits()


def check_registers(target: Target, limits: Loihi2Limits, where: Where) -> None:
    """The general ``precision`` of a Loihi 2 target must say what its learning engine's registers say."""
    engine, precision = limits.learning_engine, target.precision
    for name, general, specific in (("weight_bits", precision.weight_bits, engine.weight_bits),
                                    ("trace_bits", precision.trace_bits, engine.trace_bits)):
        if general != specific:
            raise where.child(f"precision.{name}").error(
                f"{general} contradicts loihi2.learning_engine.{name} = {specific}", fix="make them equal")


ENGINES.register("loihi2", HardwareEngine(section=Loihi2Limits, check=check_registers))
