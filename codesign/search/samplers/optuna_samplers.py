"""Optuna's own samplers: CMA-ES, TPE, NSGA-II and random search."""

from __future__ import annotations

import warnings

import optuna

from codesign.search.samplers.base import SAMPLERS, SamplerKind

__all__: list[str] = []


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
