"""Hardware engines: chips whose own registers a target file may describe in a section of their name.

A target file is a general :class:`~codesign.hardware.Target` (precision, learning, resources,
energy). A chip that needs more, such as Loihi 2's learning-engine registers for ``codesign port``,
registers a :class:`HardwareEngine` under the name of its section (``loihi2:``); the target reads that
section with the engine's dataclass and keeps it in ``Target.engines``. The generic target knows no
engine by name, and imports no compiler.

Engines register where their section is defined (``codesign/hardware/loihi2/limits.py``);
``codesign.hardware`` imports those modules, so the registry is full once the package is imported.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from codesign.registry import Registry

if TYPE_CHECKING:
    from codesign.hardware.target import Target
    from codesign.schema import Where

__all__ = ["HardwareEngine", "ENGINES", "engine_sections"]


@dataclasses.dataclass(frozen=True)
class HardwareEngine:
    """One chip's section of a target file."""

    #: The dataclass its section is read into (a schema: field types, ranges, ``validate``).
    section: type
    #: Checks the section against the rest of the target (a register width the general ``precision``
    #: repeats, say): raises ``where.child(key).error(...)``. ``None``: nothing to check.
    check: Callable[[Target, Any, Where], None] | None = None


ENGINES: Registry[HardwareEngine] = Registry("hardware engine")


def engine_sections() -> dict[str, type]:
    """The section each engine adds to a target file, by its key (what ``schema.build`` reads)."""
    return {name: engine.section for name, engine in ENGINES.items()}
