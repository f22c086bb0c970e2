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
from collections import Counter
from typing import Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from codesign.search import batches
from codesign.search.batches import BatchView, Result, finish
from codesign.search.liveness import WORKER_ATTR, claim, this_worker
from codesign.search.samplers import SAMPLERS
from codesign.search.study import study_population

__all__ = ["ask_batch", "population"]


def population(study: optuna.Study, sampler_name: str) -> tuple[str | None, int | None]:
    """(generation key, population size) of a study whose sampler has generations; (None, None) otherwise."""
    key = SAMPLERS[sampler_name].generation_key(study.sampler)
    return (key, study_population(study)) if key is not None else (None, None)


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


class _Room:
    """Whether the current CMA-ES generation takes another trial (:func:`_generation_open`), kept up to
    date as a batch's trials are asked, without reading every trial again after each."""

    def __init__(self, trials: Sequence[FrozenTrial], key: str | None, popsize: int | None) -> None:
        self.trials, self.key, self.popsize = list(trials), key, popsize
        self.current = max((t.system_attrs.get(key, -1) for t in self.trials), default=-1) if key else -1
        self._count()

    def _count(self) -> None:
        members = [t for t in self.trials if _in_generation(t, self.key, self.current)] if self.key else []
        self.members, self.unfinished = len(members), sum(not t.state.is_finished() for t in members)

    def open(self) -> bool:
        return self.key is None or not self.trials or self.members < self.popsize or self.unfinished == 0

    def add(self, trial: FrozenTrial) -> None:
        """A RUNNING trial just asked."""
        self.trials.append(trial)
        if self.key is None:
            return
        tag = trial.system_attrs.get(self.key)
        if tag is not None and tag > self.current:  # a new generation: count its members once
            self.current = tag
            self._count()
        elif tag is None or tag == self.current:
            self.members += 1
            self.unfinished += 1


def _fitting(trials: Sequence[FrozenTrial], mine: set[int], target: int, key: str | None,
             popsize: int | None) -> dict[int, bool]:
    """Whether each asked trial (ids ``mine``) is within the study's target and its CMA-ES generation.

    ``trials`` are the study's live trials read after asking. Workers check and then ask, so two
    can take the same last places. Trial numbers are handed out atomically by the storage, so the
    earlier live trials decide: a trial with ``target`` live trials before it, or ``popsize``
    before it in its generation, is surplus. Only earlier trials count, so of two workers racing
    for a place one always wins. A trial sampled at random (no generation tag: CMA-ES had no
    finished trial to start from, e.g. when every earlier candidate diverged) has no generation to
    overfill. One pass in trial order, counting the members of each generation so far.
    """
    fits: dict[int, bool] = {}
    earlier, tagged, untagged_running = 0, Counter(), 0
    for trial in sorted(trials, key=lambda t: t.number):
        tag = trial.system_attrs.get(key) if key is not None else None
        if trial._trial_id in mine:
            ok = earlier < target
            if ok and popsize is not None and tag is not None and tag != -1:
                ok = tagged[tag] + untagged_running < popsize  # as _in_generation counts them
            fits[trial._trial_id] = ok
        earlier += 1
        if trial.state == TrialState.WAITING:
            continue
        if tag is None:
            untagged_running += trial.state == TrialState.RUNNING
        else:
            tagged[tag] += 1
    return fits


def ask_batch(study: optuna.Study, space: dict[str, BaseDistribution], size: int, target: int,
              key: str | None, popsize: int | None) -> list[FrozenTrial]:
    """Ask up to ``size`` trials that will all be used: none past the target or the generation.

    ``key`` and ``popsize``: see :func:`population`. The sampler proposes the batch against the
    study as read once (:class:`codesign.search.batches.BatchView`); with a CMA-ES population it
    stops when the current generation is full. The new trials are then created in one write, owned
    by this worker (:func:`codesign.search.liveness.claim` for waiting retries taken), and checked
    against a fresh read: a trial found surplus is failed at once, unevaluated, with ``surplus``
    set. Returns the trials to evaluate, as stored.
    """
    view = BatchView(study._storage, study._study_id)
    asking = optuna.load_study(study_name=study.study_name, storage=view, sampler=study.sampler)
    room = _Room(view.get_all_trials(study._study_id, deepcopy=False, states=_LIVE) if key else [], key, popsize)
    asked = 0
    while asked < size and room.open():
        with warnings.catch_warnings():  # Optuna warns that its heartbeat is meant for optimize(); see liveness
            warnings.simplefilter("ignore", UserWarning)
            trial = asking.ask(space)
        room.add(view.get_trial(trial._trial_id))
        asked += 1
    trials = view.commit({WORKER_ATTR: this_worker()})
    taken = [study._storage.get_trial(i) for i in view.taken]
    claim(study, taken)
    trials += taken
    if not trials:
        return []
    if key is None:
        counts = batches.states(study)  # one read: several would miss trials changing state between them
        if sum(counts[state] for state in _LIVE) <= target:
            return sorted(trials, key=lambda t: t.number)  # the study is short of its target with them: all fit
    live = batches.live(study, _LIVE, [key] if key else [])
    fits = _fitting(live, {t._trial_id for t in trials}, target, key, popsize)
    finish(study._storage, [Result(t._trial_id, TrialState.FAIL, user_attrs={"surplus": True})
                            for t in trials if not fits[t._trial_id]])
    return sorted((t for t in trials if fits[t._trial_id]), key=lambda t: t.number)
