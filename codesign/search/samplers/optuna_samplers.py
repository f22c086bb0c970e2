"""Optuna's own samplers: CMA-ES, TPE, NSGA-II and random search."""

from __future__ import annotations

import copy
import pickle
import warnings

import optuna
from optuna.trial import FrozenTrial, TrialState

from codesign.search.samplers.base import SAMPLERS, SamplerKind

__all__ = ["BatchCmaEsSampler"]


class BatchCmaEsSampler(optuna.samplers.CmaEsSampler):
    """Optuna's CMA-ES, proposing the same trials, at less cost per ask when a batch is asked at once.

    At every ask Optuna restores the optimizer from the last finished trial that stores it (a pickle,
    hex-encoded) and, once the current generation has ``popsize`` finished trials, tells it their
    values and stores the told optimizer on the trial being asked. A batch's trials are all asked
    before any of them finishes, so each of them restored, told and stored it again: kilobytes of
    storage per trial, and most of the time of an ask. Here the told optimizer is kept, by the
    stored one it was told from and the trials it was told: a batch tells once and stores it on its
    first trial. Any other worker (or this one, if that trial fails) tells the same stored optimizer
    the same trials, which gives the same optimizer. The asks of a generation share one restored
    optimizer instead of unpickling or copying it each time (an ask only reseeds it). And a pruned
    trial, which CMA-ES ranks by its last intermediate value, is a shallow copy with that value rather
    than a deep copy (Optuna deep-copies every pruned trial at every ask). The search space (the
    intersection of the finished trials' spaces, which Optuna computes at every ask) is computed once
    per batch.

    This overrides four private methods of Optuna's sampler (``_get_trials``, ``_get_solution_trials``,
    ``_restore_optimizer``, ``_split_optimizer_str``, unchanged since Optuna 3.x);
    ``tests/test_samplers.py`` checks that the proposals are Optuna's own.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._stored: dict[int, tuple] = {}  # a trial's stored optimizer (pickle, and loaded), by id
        self._told: dict[tuple, object] = {}  # (stored optimizer's trial, told trials): the told optimizer
        self._telling: tuple | None = None
        self._finished: tuple = (None, [])  # (a batch's view of the storage, its finished trials as ranked)
        self._solutions: tuple = (None, {})  # (finished trials, {generation: that generation's})
        self._space: tuple = (None, {})  # (a batch's view of the storage, the search space of its finished trials)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict:
        # The intersection of the finished trials' spaces: one per batch, whose finished trials are fixed.
        view = study._storage if getattr(study._storage, "finished_trials_fixed", False) else None
        if view is None or self._space[0] is not view:
            self._space = (view, super().infer_relative_search_space(study, trial))
        return self._space[1]

    def _get_trials(self, study: optuna.Study) -> list[FrozenTrial]:
        # A batch's view of the storage (codesign.search.batches.BatchView) keeps the finished trials
        # it read for all the batch's asks: they are ranked once per batch, not at every ask.
        view = study._storage if getattr(study._storage, "finished_trials_fixed", False) else None
        if view is not None and self._finished[0] is view:
            return self._finished[1]
        trials = []
        for t in study._get_trials(deepcopy=False, use_cache=True):
            if t.state == TrialState.COMPLETE:
                trials.append(t)
            elif t.state == TrialState.PRUNED and t.intermediate_values and self._consider_pruned_trials:
                _, value = max(t.intermediate_values.items())
                if value is not None:
                    ranked = copy.copy(t)
                    ranked.value = value  # a new list of values: ``t`` is unchanged
                    trials.append(ranked)
        self._finished = (view, trials)
        return trials

    def _get_solution_trials(self, trials: list[FrozenTrial], generation: int) -> list[FrozenTrial]:
        # Asked twice per ask (of the stored optimizer's generation, and of the told one's).
        if self._solutions[0] is not trials:
            self._solutions = (trials, {})
        found = self._solutions[1]
        if generation not in found:
            found[generation] = super()._get_solution_trials(trials, generation)
        return found[generation]

    def _restore_optimizer(self, completed_trials: list[FrozenTrial]):  # noqa: ANN201
        self._telling = None
        prefix = self._attr_key_optimizer
        source = next((t for t in reversed(completed_trials) if any(k.startswith(prefix) for k in t.system_attrs)),
                      None)
        if source is None:
            return None
        if source._trial_id not in self._stored:
            chunks = {k: v for k, v in source.system_attrs.items() if k.startswith(prefix)}
            stored = bytes.fromhex(self._concat_optimizer_attrs(chunks))
            _keep(self._stored, source._trial_id, (stored, pickle.loads(stored)))
        stored, optimizer = self._stored[source._trial_id]
        solutions = self._get_solution_trials(completed_trials, optimizer.generation)
        if len(solutions) < optimizer.population_size:
            # Nothing to tell yet: Optuna only reseeds the optimizer and samples from it, which leaves
            # the distribution as it is, so every ask of the generation shares one copy.
            return optimizer
        key = (source._trial_id, tuple(t._trial_id for t in solutions[:optimizer.population_size]))
        if key in self._told:
            # Told already: Optuna asks from it without telling again. The told object, not a pickle:
            # a pickle keeps one triangle of the covariance, which changes the last digits of the candidates.
            return self._told[key]
        optimizer = pickle.loads(stored)
        self._telling = (key, optimizer)  # Optuna tells it now, then stores it (_split_optimizer_str)
        return optimizer

    def _split_optimizer_str(self, optimizer_str: str) -> dict[str, str]:
        if self._telling is not None:
            key, told = self._telling
            _keep(self._told, key, copy.deepcopy(told))  # a copy before Optuna samples from it
            self._telling = None
        return super()._split_optimizer_str(optimizer_str)


def _keep(cache: dict, key, value, size: int = 4) -> None:
    """Add to ``cache``, keeping the latest ``size`` entries: only the current generation's are asked for again."""
    cache[key] = value
    while len(cache) > size:
        del cache[next(iter(cache))]


def _cmaes(seed: int, population: int | None, constant_liar: bool) -> optuna.samplers.BaseSampler:
    # CMA-ES warns at every tell (in every worker) that it ignores constraints. Ours, whether the
    # network fits the target, is decided by the network's size and is the same for every
    # candidate of a study: there is nothing to steer by, and the report never picks an
    # infeasible trial anyway (feasible()).
    warnings.filterwarnings("ignore", "Constraints have been set, but CmaEsSampler", UserWarning)
    with warnings.catch_warnings():  # consider_pruned_trials is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return BatchCmaEsSampler(popsize=population, seed=seed, warn_independent_sampling=False,
                                            consider_pruned_trials=True)


#: CMA-ES starts from a batch of random rules, then from the centre of the bounds with a step of a
#: sixth of their width (Optuna's defaults); the batch is its population.
SAMPLERS.register("cmaes", SamplerKind(
    _cmaes, population=True, generations=True, min_batch=4,
    description="CMA-ES ranks a population of rules per generation (batch_size, or sampler.population)"))
SAMPLERS.register("tpe", SamplerKind(
    lambda seed, population, liar: optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=liar),
    multi_objective=True, constant_liar=True))
SAMPLERS.register("nsga2", SamplerKind(
    lambda seed, population, liar: optuna.samplers.NSGAIISampler(population_size=max(population or 2, 2), seed=seed),
    population=True, multi_objective=True))
SAMPLERS.register("random", SamplerKind(lambda seed, population, liar: optuna.samplers.RandomSampler(seed=seed),
                                        multi_objective=True))
