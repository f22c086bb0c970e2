"""The search: Optuna glue between a study file and its trials.

One module per concept; import what you need from it (this package imports none of them, so that
:mod:`codesign.spec` can read the sampler and objective registries without loading the search):

* :mod:`~codesign.search.space`: the searched parameters as Optuna distributions, and the candidate
  (slot -> rule) and hardware knobs a trial's parameters stand for.
* :mod:`~codesign.search.samplers`: the sampler registry; each entry says what it needs (a
  population, several objectives, the constant-liar strategy).
* :mod:`~codesign.search.objectives`: the objective registry (loss, energy, searched bits).
* :mod:`~codesign.search.study`: opening a study on its storage, counting and reading its trials.
* :mod:`~codesign.search.generations`: asking a batch that fits the study's target and the sampler's
  current generation.
* :mod:`~codesign.search.worker`: the ask / evaluate / tell loop of one worker.
* :mod:`~codesign.search.launcher`: a study run by N local worker processes.
* :mod:`~codesign.search.sparsity` and :mod:`~codesign.search.rounds`: the L1 penalty, and a study
  searched in refinement rounds on the terms that survive.
* :mod:`~codesign.search.storage` and :mod:`~codesign.search.liveness`: storages, and workers that die.
"""
