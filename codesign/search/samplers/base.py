"""What a sampler kind declares (:class:`SamplerKind`) and the registry of them (:data:`SAMPLERS`).

Each entry declares what it needs from the study, and the rest of codesign reads those
declarations instead of the sampler's name:

* ``population``: the sampler works in generations of a population of trials (the study's
  :meth:`~codesign.spec.StudySpec.population`), which the workers share;
* ``generations``: it tags each trial with its generation (CMA-ES), so a worker asks only while the
  current generation has room (:mod:`codesign.search.generations`);
* ``multi_objective``: it can minimise several objectives;
* ``constant_liar``: running trials count as bad, so parallel workers do not propose the same point;
* ``min_batch``: the smallest population it can start from.

A new sampler is one module in this package that calls ``SAMPLERS.register``, imported by the
package's ``__init__``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

import optuna

from codesign.registry import Registry

if TYPE_CHECKING:
    from codesign.spec import StudySpec

__all__ = ["SamplerKind", "SAMPLERS", "sampler"]


@dataclasses.dataclass(frozen=True)
class SamplerKind:
    """How to make one kind of sampler, and what it needs (see the module docstring)."""

    #: ``make(seed, population, constant_liar)``: the sampler; ``population`` is the study's
    #: population for a sampler with ``population``, else None.
    make: Callable[[int, int | None, bool], optuna.samplers.BaseSampler]
    population: bool = False
    generations: bool = False
    multi_objective: bool = False
    constant_liar: bool = False
    min_batch: int = 1
    #: Why a study's value would not suit it, for the error message (``min_batch``).
    description: str = ""

    def generation_key(self, sampler: optuna.samplers.BaseSampler) -> str | None:
        """The trial system attribute in which the sampler tags a trial's generation, if it has generations.

        Optuna has no public name for it: CMA-ES keeps it in ``_attr_key_generation`` (private, the
        one private Optuna attribute codesign reads; it has had that name since Optuna 3.x).
        """
        return getattr(sampler, "_attr_key_generation", None) if self.generations else None


SAMPLERS: Registry[SamplerKind] = Registry("sampler")


def sampler(spec: StudySpec, worker_index: int = 0, population: int | None = None) -> optuna.samplers.BaseSampler:
    """The study's sampler for one worker (each worker gets its own seed, or two workers sampling the
    same state would propose the same candidates); ``population``: the study's, as it was created with
    (default: ``spec.population()``)."""
    kind = SAMPLERS[spec.sampler.name]
    seed = (spec.seed + 7919 * worker_index) % 2**32
    return kind.make(seed, (population or spec.population()) if kind.population else None, kind.constant_liar)
