"""Optuna glue: samplers, the batched ask/evaluate/tell loop and local workers.

One worker evaluates ``batch_size`` trials at a time in one network (``ModelTask.evaluate``). Several
workers share one storage (:mod:`codesign.storage`), on one machine or many; each process builds
its own network once and reuses it for every batch. Workers that die or hang lose nothing: see
:mod:`codesign.liveness`.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from codesign import liveness
from codesign.errors import CodesignError
from codesign.liveness import BatchGuard, TrialTimeout, claim
from codesign.rules import FAMILIES, Rule
from codesign.spec import StudySpec
from codesign.storage import ENV_VAR, RetryCallback, open_storage
from codesign.models import Evaluation, ModelTask
from codesign.models.spec import ParamSpec

__all__ = [
    "open_study",
    "make_task",
    "candidate",
    "searched_terms",
    "knob_values",
    "feasible",
    "run_worker",
    "run_study",
    "count_trials",
    "reclaim_dead_trials",
    "ask_batch",
    "WorkerStats",
    "TRAIN_SEED_OFFSET",
    "EVAL_SEED_OFFSET",
]

#: Input seeds: the study trains every candidate on the same draws (common random numbers, so the
#: loss is a deterministic function of the rule) and ``codesign eval`` uses draws never trained on.
TRAIN_SEED_OFFSET = 0
EVAL_SEED_OFFSET = 1_000_003

_WORKER_ATTR = liveness.WORKER_ATTR

optuna.logging.set_verbosity(optuna.logging.WARNING)


def distributions(spec: StudySpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """The search space: each slot's searched coefficients (a text rule's params with their own range,
    scale and type), and its trace time constants if searched."""
    space = {}
    for slot, rule in spec.rules.items():
        params = spec.model.rules[slot].params
        for term in rule.searched:
            space[spec.param_name(slot, term)] = (_param_distribution(params[term]) if term in params
                                                  else FloatDistribution(*rule.coefficient_bounds))
        if rule.tau_ms is not None:
            for extra in FAMILIES[rule.family].extras:
                space[spec.param_name(slot, extra)] = FloatDistribution(*rule.tau_ms, log=True)
    for bits in ("weight_bits", "trace_bits"):
        if getattr(spec.hardware, bits) is not None:
            space[f"hw.{bits}"] = IntDistribution(*getattr(spec.hardware, bits))
    if spec.hardware.rounding is not None:
        space["hw.rounding"] = CategoricalDistribution(spec.hardware.rounding)
    return space


def _param_distribution(param: ParamSpec) -> optuna.distributions.BaseDistribution:
    low, high = param.bounds
    if param.integer:
        return IntDistribution(int(low), int(high), log=param.log)
    return FloatDistribution(low, high, log=param.log)


def knob_values(spec: StudySpec, params: dict[str, float]) -> dict[str, float]:
    """The hardware knobs a trial's parameters set (``hw.weight_bits`` -> ``weight_bits``)."""
    return {knob: params[f"hw.{knob}"] for knob in spec.hardware.knobs if f"hw.{knob}" in params}


def _sampler(spec: StudySpec, worker_index: int) -> optuna.samplers.BaseSampler:
    # Each worker needs its own seed, or two workers sampling the same state would propose the
    # same candidates.
    seed = (spec.seed + 7919 * worker_index) % 2**32
    if spec.sampler.name == "cmaes":
        # CMA-ES warns at every tell (in every worker) that it ignores constraints. Ours, whether the
        # network fits the target, is decided by the network's size and is the same for every
        # candidate of a study: there is nothing to steer by, and the report never picks an
        # infeasible trial anyway (feasible()).
        warnings.filterwarnings("ignore", "Constraints have been set, but CmaEsSampler", UserWarning)
    with warnings.catch_warnings():  # consider_pruned_trials is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if spec.sampler.name == "cmaes":
            return optuna.samplers.CmaEsSampler(popsize=spec.batch_size, seed=seed, warn_independent_sampling=False,
                                                consider_pruned_trials=True)
        if spec.sampler.name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        if spec.sampler.name == "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=max(spec.batch_size, 2), seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(spec: StudySpec, storage_url: str | None = None, worker_index: int = 0) -> optuna.Study:
    """Create the study in its storage, or load it if it exists (a study run again resumes)."""
    url, file, key = spec.storage_source(storage_url)
    storage = open_storage(url, spec.heartbeat_s, spec.retries, file=file, key=key)
    return optuna.create_study(study_name=spec.name, storage=storage, sampler=_sampler(spec, worker_index),
                               directions=["minimize"] * len(spec.objectives), load_if_exists=True)


def make_task(spec: StudySpec) -> ModelTask:
    """The study's model on its target, with its searched knobs and conditions."""
    return ModelTask(spec.model, spec.target, searched_knobs=spec.hardware.knobs, conditions=spec.conditions.train,
                     held_out=spec.conditions.held_out)


def candidate(spec: StudySpec, params: dict[str, float], name: str | None = None) -> dict[str, Rule]:
    """The candidate (slot -> rule) that a trial's parameters stand for."""
    out = {}
    for slot, rule in spec.rules.items():
        fam = FAMILIES[rule.family]
        coefficients = {t: params[spec.param_name(slot, t)] for t in rule.searched
                        if spec.param_name(slot, t) in params}
        extras = {e: params[spec.param_name(slot, e)] for e in fam.extras if spec.param_name(slot, e) in params}
        out[slot] = fam.rule(spec.model.rules[slot], coefficients, eta=rule.learning_rate, name=name, **extras)
    return out


def searched_terms(spec: StudySpec) -> dict[str, tuple[str, ...]]:
    return {slot: rule.searched for slot, rule in spec.rules.items()}


def count_trials(study: optuna.Study) -> tuple[int, int]:
    """(finished, running): finished trials count towards ``n_trials``; failed ones do not."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running


def _retry(spec: StudySpec) -> RetryCallback:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryCallback(max_retry=spec.retries)


def reclaim_dead_trials(study: optuna.Study, spec: StudySpec) -> int:
    """Fail the RUNNING trials of workers that died and queue them again (see :mod:`codesign.liveness`).

    A worker killed mid-batch cannot say so; its trials would stay RUNNING for ever and block the
    study from reaching ``n_trials``. Returns how many trials were reclaimed.
    """
    return liveness.reclaim_dead_trials(study, 2 * spec.heartbeat_s, _retry(spec))


_LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def _generation_key(study: optuna.Study) -> str | None:
    """The system attribute in which Optuna's CMA-ES sampler tags each trial with its generation."""
    sampler = study.sampler
    return sampler._attr_key_generation if isinstance(sampler, optuna.samplers.CmaEsSampler) else None


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


def ask_batch(study: optuna.Study, space: dict[str, FloatDistribution], size: int, target: int,
              popsize: int | None) -> list[optuna.Trial]:
    """Ask up to ``size`` trials that will all be used: none past the target or the generation.

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

    key = _generation_key(study) if popsize is not None else None
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


def _objectives(spec: StudySpec, evaluation: Evaluation, knobs: dict[str, float]) -> tuple[list[float], bool]:
    """The objective values of an evaluation, and whether the candidate fits its target."""
    if len(spec.objectives) == 1 and evaluation.counts is None:
        return [evaluation.loss], True
    from codesign.hardware import cost, energy_objective_kind

    fits, values = True, [evaluation.loss]
    if evaluation.counts is not None:
        result = cost(spec.target, evaluation.counts)
        fits = result.fits
    for objective in spec.objectives[1:]:
        if objective == "energy":  # one kind only (load_study checked the target can give it)
            energy = result.energy_j.get(energy_objective_kind(spec.target))
            values.append(float("inf") if energy is None else energy)
        else:  # a searched knob (weight_bits, trace_bits)
            values.append(float(knobs[objective]))
    return values, fits


def _tell(spec: StudySpec, study: optuna.Study, trial: optuna.Trial, evaluation: Evaluation,
          knobs: dict[str, float]) -> None:
    """Record a result. A diverged candidate (NaN weights, runaway rate) is pruned with its reason.

    With one objective its loss (the ceiling) is reported as an intermediate value first, so that
    samplers that take pruned trials into account (CMA-ES here) still rank it and a generation
    stays complete. A candidate that does not fit its target is told as infeasible (constraints).
    A trial failed meanwhile (its worker was taken for dead) keeps its state: the result is dropped,
    and the trial's retry counts instead.
    """
    try:
        _tell_result(spec, study, trial, evaluation, knobs)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def _tell_result(spec: StudySpec, study: optuna.Study, trial: optuna.Trial, evaluation: Evaluation,
                 knobs: dict[str, float]) -> None:
    trial.set_user_attr("metrics", evaluation.metrics)
    values, fits = _objectives(spec, evaluation, knobs)
    trial.set_constraint("fits_target", 0.0 if fits else 1.0)  # samplers avoid infeasible candidates
    if evaluation.diverged:
        trial.set_user_attr("diverged_reason", evaluation.metrics.get("diverged_reason", "diverged"))
        if len(values) == 1:
            trial.report(evaluation.loss, step=0)
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    else:
        study.tell(trial, values if len(values) > 1 else values[0], skip_if_finished=True)


@dataclasses.dataclass
class WorkerStats:
    """Where a worker's time went: ``storage_s`` is asking and telling (Optuna's sampler and storage)."""

    trials: int = 0
    timed_out: int = 0
    wall_s: float = 0.0
    startup_s: float = 0.0
    build_s: float = 0.0
    evaluate_s: float = 0.0
    wait_s: float = 0.0
    #: After the first batch (which builds the network): trials, and CPU seconds of this process and
    #: of the processes it ran (C++ standalone simulations), so CPU per trial is comparable between runs.
    steady_trials: int = 0
    steady_cpu_s: float = 0.0

    @property
    def storage_s(self) -> float:
        return max(0.0, self.wall_s - self.startup_s - self.build_s - self.evaluate_s - self.wait_s)

    def summary(self) -> str:
        n = max(self.trials, 1)
        return (f"{self.trials} trials in {self.wall_s:.1f} s; per trial {1e3 * self.evaluate_s / n:.1f} ms simulating, "
                f"{1e3 * self.storage_s / n:.1f} ms asking and telling; {self.wait_s:.1f} s waiting, "
                f"{self.startup_s + self.build_s:.1f} s starting and building"
                + (f"; {self.timed_out} timed out" if self.timed_out else ""))


def run_worker(spec: StudySpec, storage_url: str | None = None, n_trials: int | None = None,
               worker_index: int = 0, batch_size: int | None = None,
               on_batch: Callable[[optuna.Study], None] | None = None, poll_s: float = 0.05) -> WorkerStats:
    """Ask, evaluate and tell batches until the study has ``n_trials`` finished trials.

    ``batch_size`` (default: the study's) is how many trials this worker evaluates at once; with
    CMA-ES the study's ``batch_size`` is the population, and N local workers each take a share of
    it. Returns where the time went. Trials of a batch that raises are marked failed before the
    error propagates, so no trial is left RUNNING by a live worker; a batch that runs past
    ``trial_timeout_s`` is failed and the worker goes on (:class:`codesign.liveness.BatchGuard`).
    Every second (while it evaluates too) the worker reclaims the trials of dead workers.
    """
    from codesign.backends import build_seconds

    started = time.perf_counter()
    stats = WorkerStats()
    target = n_trials or spec.n_trials
    share = batch_size or spec.batch_size
    popsize = spec.batch_size if spec.sampler.name == "cmaes" else None
    study = open_study(spec, storage_url, worker_index)
    if spec.sampler.name == "cmaes":
        import cmaes  # noqa: F401  (Optuna imports it, and SciPy with it, on the first ask: part of starting up)
    task = make_task(spec)
    space = distributions(spec)
    seed = spec.seed + TRAIN_SEED_OFFSET
    retry = _retry(spec)
    sweep_every = min(1.0, float(spec.heartbeat_s))
    last_sweep = -float("inf")
    stats.startup_s = time.perf_counter() - started

    def wait() -> None:
        stats.wait_s += poll_s
        time.sleep(poll_s)

    def cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    steady_from: tuple[int, float] | None = None

    while True:
        if time.monotonic() - last_sweep >= sweep_every:
            liveness.reclaim_dead_trials(study, 2 * spec.heartbeat_s, retry)
            last_sweep = time.monotonic()
        finished, running = count_trials(study)
        size = min(share, target - finished - running)
        if size <= 0:
            if finished >= target:
                break
            wait()  # the last trials are running elsewhere; if their worker dies, the sweep takes them over
            continue
        trials = ask_batch(study, space, size, target, popsize)
        if not trials:
            wait()  # this generation is being evaluated by other workers
            continue
        guard = BatchGuard(study, trials, spec.heartbeat_s, spec.trial_timeout_s, build_seconds,
                           sweep=lambda: liveness.reclaim_dead_trials(study, 2 * spec.heartbeat_s, retry),
                           sweep_s=sweep_every)
        built, began = build_seconds(), time.perf_counter()
        try:
            try:
                with guard:
                    candidates = [candidate(spec, t.params, name=f"trial {t.number}") for t in trials]
                    knobs = [knob_values(spec, t.params) for t in trials]
                    evaluations = task.evaluate(candidates, seed, terms=searched_terms(spec), capacity=share,
                                                knobs=knobs if spec.hardware.knobs else None)
            except TrialTimeout:
                pass  # raised on the way out of the guard: its trials are failed already
        except BaseException:
            for trial in trials:
                liveness.fail_trial(study, trial._trial_id, None)
            raise
        finally:
            stats.build_s += build_seconds() - built
            stats.evaluate_s += time.perf_counter() - began - (build_seconds() - built)
        if guard.timed_out:
            stats.timed_out += len(trials)
            numbers = ", ".join(str(t.number) for t in trials)
            print(f"codesign: trials {numbers} ran past trial_timeout_s = {spec.trial_timeout_s:g} s of simulation; "
                  "failed (not retried)", file=sys.stderr)
            continue
        for trial, evaluation, knob in zip(trials, evaluations, knobs):
            _tell(spec, study, trial, evaluation, knob)
        stats.trials += len(trials)
        if steady_from is None:
            steady_from = (stats.trials, cpu())
        if on_batch is not None:
            on_batch(study)
    stats.wall_s = time.perf_counter() - started
    if steady_from is not None:
        stats.steady_trials = stats.trials - steady_from[0]
        stats.steady_cpu_s = cpu() - steady_from[1]
    return stats


def best_value(study: optuna.Study) -> float | None:
    """The best loss so far (the first objective, over feasible trials in a multi-objective study)."""
    losses = [t.values[0] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if feasible(t)]
    return min(losses) if losses else None


def run_study(spec: StudySpec, storage_url: str | None = None, n_trials: int | None = None, workers: int = 1,
              on_progress: Callable[[int, int, float | None], None] | None = None,
              stats_dir: Path | None = None) -> optuna.Study:
    """Run the study to ``n_trials`` finished trials with ``workers`` local processes.

    With one worker the batches run in this process; with more, each is a ``codesign worker``
    subprocess on the same storage and this process only watches the storage for progress. The
    storage URL reaches the workers in ``$CODESIGN_STORAGE``, not on their command lines (which
    anyone on the machine can read). A worker that is killed does not stop the study: the others
    retry its trials. ``stats_dir``: each worker writes its :class:`WorkerStats` there as JSON.
    """
    target = n_trials or spec.n_trials
    study = open_study(spec, storage_url)
    reclaim_dead_trials(study, spec)

    def report(s: optuna.Study) -> None:
        if on_progress is not None:
            on_progress(count_trials(s)[0], target, best_value(s))

    report(study)
    if workers <= 1:
        stats = run_worker(spec, storage_url, target, 0, on_batch=report)
        if stats_dir is not None:
            _write_stats(stats, Path(stats_dir) / "worker-0.json")
        return study
    # A population (CMA-ES, NSGA-II) is shared out between the workers; without one, each worker
    # evaluates whole batches, which simulate more cheaply per trial than small ones.
    share = -(-spec.batch_size // workers) if spec.sampler.name in ("cmaes", "nsga2") else spec.batch_size
    command = [sys.executable, "-m", "codesign", "worker", spec.file, "--trials", str(target),
               "--batch-size", str(share), "--quiet"]
    if spec.target.file:
        command += ["--target", spec.target.file]  # the study's, or the one --target gave
    env = {**os.environ, ENV_VAR: spec.storage_url(storage_url)}
    # Each worker's stderr goes to a file: a worker that fails must not print a traceback over the
    # parent's one line, and its whole output stays there to read.
    logs = [spec.results_dir / "workers" / f"worker-{i}.log" for i in range(workers)]
    logs[0].parent.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, log in enumerate(logs):
        extra = ["--stats", str(Path(stats_dir) / f"worker-{i}.json")] if stats_dir is not None else []
        with log.open("w") as stderr:
            procs.append(subprocess.Popen(command + ["--worker-index", str(i)] + extra, env=env, stderr=stderr))
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            report(study)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
    report(study)
    _check_workers(spec, procs, logs)
    killed = [-p.returncode for p in procs if p.returncode < 0]
    finished = count_trials(study)[0]
    if finished < target:
        raise CodesignError(f"all {workers} workers stopped (killed by signals {killed}) with {finished} of "
                            f"{target} trials finished", file=spec.file, fix="run the same command again to resume")
    if killed:
        print(f"codesign: {len(killed)} worker(s) killed by signal(s) {killed}; the others retried their trials",
              file=sys.stderr)
    return study


def _check_workers(spec: StudySpec, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    """Pass on what the workers said (trials past their time limit); one line for the first that failed."""
    outputs = [log.read_text(errors="replace") for log in logs]
    for proc, output in zip(procs, outputs):
        if proc.returncode <= 0 and output.strip():
            sys.stderr.write(output)
    failed = [i for i, proc in enumerate(procs) if proc.returncode > 0]
    if not failed:
        return
    i = failed[0]
    lines = outputs[i].strip().splitlines()
    last = lines[-1] if lines else "(no output)"
    what = f"{len(failed)} of {len(procs)} workers failed; worker {i} (exit code {procs[i].returncode})"
    if last.startswith("codesign: error: "):  # the worker's own one-line error, with its fix
        raise CodesignError(f"{what}: {last[len('codesign: error: '):]}")
    raise CodesignError(f"{what}: {last}", file=spec.file,
                        fix=f"its whole output is in {logs[i]}; finished trials are saved, run the same command "
                            "to resume")


def _write_stats(stats: WorkerStats, path: Path) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**dataclasses.asdict(stats), "storage_s": stats.storage_s}))


def feasible(trial: FrozenTrial) -> bool:
    """Whether a trial's candidate fits its target (every Optuna constraint at or below zero)."""
    return all(value <= 0.0 for value in trial.constraints.values())


def finished_trials(study: optuna.Study) -> Sequence[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
