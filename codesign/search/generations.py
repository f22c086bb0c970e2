"""Asking a batch of trials that will all be used: none past the study's target, none past the
sampler's current generation.

Workers check the study and then ask, so two can race for the last places; trial numbers are handed
out atomically by the storage, so the earlier live trials decide who wins (:func:`ask_batch`). A
sampler with generations (CMA-ES, see :mod:`codesign.search.samplers`) uses the first ``popsize``
finished trials of each generation and ignores later ones, so a worker waits while the current
generation is full but not finished.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from codesign.search.liveness import claim
from codesign.search.samplers import SAMPLERS

__all__ = ["ask_batch", "population"]


def population(study: optuna.Study, sampler_name: str, batch_size: int) -> tuple[str | None, int | None]:
    """(generation key, population size) of a study whose sampler has generations; (None, None) otherwise."""
    key = SAMPLERS[sampler_name].generation_key(study.sampler)
    return (key, batch_size) if key is not None else (None, None)


_LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def _in_generation(trial: FrozenTrial, key: str, generation: int) -> bool:
    """Whether ``trial`` is (or may be about to be) a member of CMA-ES generation ``generation``.

    A trial is numbered before the sampler tags it: a running trial without a tag yet may be about
    to join the current generation, so it counts as a member (the random first batch has no tag
    and counts as generation -1). A waiting trial (a retry) joins whichever generation is current
    when it is asked, so it is a member of none yet.
    """
    if trial.state == TrialState.WAITING:
        return False
    tag = trial.system_attrs.get(key)
    if tag is None:
        return generation == -1 or trial.state == TrialState.RUNNING
    return tag == generation


def _generation_open(trials: Sequence[FrozenTrial], key: str | None, popsize: int) -> bool:
    """Whether asking now gives a trial that CMA-ES will use (``trials``: the study's live trials).

    CMA-ES updates from the first ``popsize`` finished trials of a generation; it tags every asked
    trial with the current generation and ignores those past ``popsize``. So a worker waits while
    the current generation is full but not finished.
    """
    if key is None or not trials:
        return True
    current = max(t.system_attrs.get(key, -1) for t in trials)
    members = [t for t in trials if _in_generation(t, key, current)]
    return len(members) < popsize or all(t.state.is_finished() for t in members)


def _fits(trials: Sequence[FrozenTrial], trial: optuna.Trial, target: int, key: str | None,
          popsize: int | None) -> bool:
    """Whether an asked trial is within the study's target and its CMA-ES generation.

    ``trials`` are the study's live trials read after asking. Workers check and then ask, so two
    can take the same last places. Trial numbers are handed out atomically by the storage, so the
    earlier live trials decide: a trial with ``target`` live trials before it, or ``popsize``
    before it in its generation, is surplus. Only earlier trials count, so of two workers racing
    for a place one always wins.
    """
    earlier = [t for t in trials if t.number < trial.number]
    if len(earlier) >= target:
        return False
    if popsize is None or key is None:
        return True
    mine = next((t.system_attrs.get(key, -1) for t in trials if t.number == trial.number), -1)
    if mine == -1:
        # Sampled at random (CMA-ES has no finished trial to start from yet, e.g. when every
        # earlier candidate diverged): no generation to overfill.
        return True
    return sum(_in_generation(t, key, mine) for t in earlier) < popsize


def ask_batch(study: optuna.Study, space: dict[str, BaseDistribution], size: int, target: int,
              key: str | None, popsize: int | None) -> list[optuna.Trial]:
    """Ask up to ``size`` trials that will all be used: none past the target or the generation.

    ``key`` and ``popsize``: see :func:`population`.

    A trial found surplus after asking is failed at once, unevaluated, with ``surplus`` set. Each
    trial is claimed (owner, first heartbeat) as soon as it is asked. With a CMA-ES population the
    study is read after each ask, which decides whether the trial fits and whether to ask another;
    without one, the whole batch is asked and then checked with one read.
    """
    def ask() -> optuna.Trial:
        with warnings.catch_warnings():  # Optuna warns that its heartbeat is meant for optimize(); see liveness
            warnings.simplefilter("ignore", UserWarning)
            trial = study.ask(space)
        claim(study, [trial])
        return trial

    def surplus(trial: optuna.Trial) -> None:
        trial.set_user_attr("surplus", True)
        study.tell(trial, state=TrialState.FAIL)

    if key is None:
        asked = [ask() for _ in range(size)]
        live = study.get_trials(deepcopy=False, states=_LIVE)
        fits = [_fits(live, t, target, None, None) for t in asked]
        for trial, ok in zip(asked, fits):
            if not ok:
                surplus(trial)
        return [t for t, ok in zip(asked, fits) if ok]
    live = study.get_trials(deepcopy=False, states=_LIVE)
    trials = []
    while len(trials) < size and _generation_open(live, key, popsize):
        trial = ask()
        live = study.get_trials(deepcopy=False, states=_LIVE)
        if not _fits(live, trial, target, key, popsize):
            surplus(trial)
            break
        trials.append(trial)
    return trials
