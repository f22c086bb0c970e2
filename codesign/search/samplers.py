"""The sampler registry: Optuna samplers by the name a study gives (``sampler: {name: ...}``).

Each entry declares what it needs from the study, and the rest of codesign reads those
declarations instead of the sampler's name:

* ``population``: the sampler works in populations of ``batch_size`` trials, which N local workers
  share (each evaluates ``batch_size / N``) rather than each asking whole batches;
* ``generations``: it tags each trial with its generation (CMA-ES), so a worker asks only while the
  current generation has room (:mod:`codesign.search.generations`);
* ``multi_objective``: it can minimise several objectives;
* ``constant_liar``: running trials count as bad, so parallel workers do not propose the same point;
* ``min_batch``: the smallest population it can start from.

A new sampler is one module (or one entry here) that calls :data:`SAMPLERS`'s ``register``.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Callable

import optuna

from codesign.registry import Registry

if TYPE_CHECKING:
    from codesign.spec import StudySpec

__all__ = ["SamplerKind", "SAMPLERS", "sampler"]


@dataclasses.dataclass(frozen=True)
class SamplerKind:
    """How to make one kind of sampler, and what it needs (see the module docstring)."""

    #: ``make(seed, population, constant_liar)``: the sampler; ``population`` is the study's batch
    #: size for a sampler with ``population``, else None.
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


def sampler(spec: StudySpec, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler for one worker (each worker gets its own seed, or two workers sampling the
    same state would propose the same candidates)."""
    kind = SAMPLERS[spec.sampler.name]
    seed = (spec.seed + 7919 * worker_index) % 2**32
    return kind.make(seed, spec.batch_size if kind.population else None, kind.constant_liar)


def _cmaes(seed: int, population: int | None, constant_liar: bool) -> optuna.samplers.BaseSampler:
    # CMA-ES warns at every tell (in every worker) that it ignores constraints. Ours, whether the
    # network fits the target, is decided by the network's size and is the same for every
    # candidate of a study: there is nothing to steer by, and the report never picks an
    # infeasible trial anyway (feasible()).
    warnings.filterwarnings("ignore", "Constraints have been set, but CmaEsSampler", UserWarning)
    with warnings.catch_warnings():  # consider_pruned_trials is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.CmaEsSampler(popsize=population, seed=seed, warn_independent_sampling=False,
                                            consider_pruned_trials=True)


#: CMA-ES starts from a batch of random rules, then from the centre of the bounds with a step of a
#: sixth of their width (Optuna's defaults); the batch is its population.
SAMPLERS.register("cmaes", SamplerKind(_cmaes, population=True, generations=True, min_batch=4,
                                       description="CMA-ES uses the batch as its population"))
SAMPLERS.register("tpe", SamplerKind(
    lambda seed, population, liar: optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=liar),
    multi_objective=True, constant_liar=True))
SAMPLERS.register("nsga2", SamplerKind(
    lambda seed, population, liar: optuna.samplers.NSGAIISampler(population_size=max(population or 2, 2), seed=seed),
    population=True, multi_objective=True))
SAMPLERS.register("random", SamplerKind(lambda seed, population, liar: optuna.samplers.RandomSampler(seed=seed),
                                        multi_objective=True))
