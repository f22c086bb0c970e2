"""What a study produced, for people: the best rules, tables, plots and files under ``results/``."""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from codesign.errors import CodesignError
from codesign.rules import Candidate, save_candidate
from codesign.spec import StudySpec
from codesign.study import (EVAL_SEED_OFFSET, candidate, count_trials, distributions, feasible, finished_trials,
                            knob_values, make_task)
from codesign.tasks import Evaluation

__all__ = ["best_trial", "best_summary", "distinct_best", "write_results", "evaluate_candidate", "evaluate_front",
           "precision_sweep",
           "rule_summary"]


def best_trial(spec: StudySpec, study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best trial; in a multi-objective study, the lowest-loss feasible trial of the Pareto front."""
    if not finished_trials(study):
        raise _no_best_trial(spec, study)
    if len(spec.objectives) == 1:
        return study.best_trial
    front = pareto_front(spec, study) or list(finished_trials(study))
    return min(front, key=lambda t: t.values[0])


def _no_best_trial(spec: StudySpec, study: optuna.Study) -> CodesignError:
    """Why a study has no best trial: none finished yet, or every finished one diverged (the reasons, counted)."""
    pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    if not pruned:
        return CodesignError("the study has no finished trial yet", file=spec.file, fix=f"run: codesign run {spec.file}")
    # Reasons that differ only in their numbers (the runaway rate, how many draws) are counted together.
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for trial in pruned:
        reason = str(trial.user_attrs.get("diverged_reason", "pruned"))
        groups[re.sub(r"[0-9][0-9.e+-]*", "#", reason)].append(reason)
    shown = []
    for reasons in sorted(groups.values(), key=len, reverse=True)[:3]:
        example = collections.Counter(reasons).most_common(1)[0][0]
        similar = " or similar" if len(set(reasons)) > 1 else ""
        shown.append(f"{example}{similar} ({len(reasons)} trial{'s' if len(reasons) > 1 else ''})")
    if len(groups) > 3:
        shown.append(f"{len(groups) - 3} other reasons")
    rule = "rule" if len(spec.rules) == 1 else "rules.SLOT"
    which = f"all {len(pruned)} finished trials" if len(pruned) > 1 else "the only finished trial"
    return CodesignError(f"{which} diverged: {'; '.join(shown)}", file=spec.file,
                         fix=f"narrow {rule}.bounds or lower {rule}.eta, and rename the study: these trials count "
                             "towards its n_trials")


def pareto_front(spec: StudySpec, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Feasible trials that no other feasible trial beats on every objective, by increasing loss."""
    fitting = [t for t in finished_trials(study) if feasible(t)]
    front = [t for t in fitting
             if not any(all(a <= b for a, b in zip(o.values, t.values)) and o.values != t.values for o in fitting)]
    distinct = {tuple(t.values): t for t in sorted(front, key=lambda t: -t.number)}  # ties: keep the first
    return sorted(distinct.values(), key=lambda t: t.values[0])


def rule_summary(spec: StudySpec, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trial's candidate as a JSON-friendly dict.

    ``coefficients`` maps the study's parameter names (``theta_abc`` for a one-slot task, else
    ``slot.term``) to values; ``rules`` gives each slot's rule with its equation; for polynomial
    rules ``normalised`` divides by ``|theta_110|`` of the same slot.
    """
    cand = candidate(spec, trial.params, name=f"{spec.name} trial {trial.number}")
    summary: dict[str, Any] = {"trial": trial.number, "loss": trial.values[0],
                               "objectives": dict(zip(spec.objectives, trial.values)),
                               "coefficients": dict(trial.params), "rules": {}, "normalised": {}}
    for slot, rule in cand.items():
        summary["rules"][slot] = {"family": spec.rules[slot].family, "equation": rule.equation(),
                                  "readable": rule.readable(), **rule.to_dict()}
        if spec.rules[slot].family == "polynomial" and rule.coefficient("theta_110") != 0.0:
            normalised = rule.normalised("theta_110")
            for term in spec.rules[slot].searched:
                summary["normalised"][spec.param_name(slot, term)] = normalised.get(term, 0.0)
    if len(cand) == 1:
        (rule,) = cand.values()
        summary["equation"], summary["readable"], summary["eta"] = rule.equation(), rule.readable(), rule.eta
    else:
        summary["equation"] = "; ".join(f"{slot}: {r.equation()}" for slot, r in cand.items())
    summary["metrics"] = trial.user_attrs.get("metrics", {})
    return summary


def distinct_best(spec: StudySpec, study: optuna.Study, n: int = 5, min_distance: float = 0.1) -> list[Any]:
    """The ``n`` best finished trials whose parameters differ by at least ``min_distance``.

    Distance: Euclidean over the parameters, each scaled by its search range (log range for the
    time constants); many trials near the optimum are the same rule, and the best few *distinct*
    rules show whether the answer is a point or a manifold.
    """
    space = distributions(spec)

    def scaled(trial: optuna.trial.FrozenTrial) -> np.ndarray:
        out = []
        for name, dist in space.items():
            value = trial.params.get(name, 0.0)
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                out.append(dist.choices.index(value) / max(len(dist.choices) - 1, 1) if value in dist.choices else 0)
            elif dist.log:
                out.append((np.log(value) - np.log(dist.low)) / (np.log(dist.high) - np.log(dist.low)))
            else:
                out.append((value - dist.low) / (dist.high - dist.low))
        return np.array(out)

    chosen: list[tuple[optuna.trial.FrozenTrial, np.ndarray]] = []
    for trial in sorted(finished_trials(study), key=lambda t: t.values[0]):
        point = scaled(trial)
        if all(np.linalg.norm(point - other) >= min_distance for _, other in chosen):
            chosen.append((trial, point))
        if len(chosen) == n:
            break
    return [trial for trial, _ in chosen]


def best_summary(spec: StudySpec, study: optuna.Study, top: int = 5) -> dict[str, Any]:
    """The best candidate (see :func:`rule_summary`) and the best few distinct ones under ``top``."""
    pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    summary = {"study": spec.name, "n_finished": count_trials(study)[0], "n_pruned": len(pruned),
               **rule_summary(spec, best_trial(spec, study))}
    summary["top"] = [rule_summary(spec, t) for t in distinct_best(spec, study, top)]
    if len(spec.objectives) > 1:
        summary["pareto"] = [{"trial": t.number, **dict(zip(spec.objectives, t.values)), "params": t.params}
                             for t in pareto_front(spec, study)]
    return summary


def held_out_seed(spec: StudySpec, seed: int | None) -> int:
    """``seed``, or by default the input seed of draws the study never trained on."""
    return spec.seed + EVAL_SEED_OFFSET if seed is None else seed


def _evaluate(spec: StudySpec, cands: list[Candidate], seed: int, knobs: list[dict] | None) -> list[Evaluation]:
    if not cands:
        return []
    task = make_task(spec)
    # The study's terms and batch size: the network the study built is reused (no new build).
    terms = {slot: tuple(spec.rules[slot].searched) + tuple(t for c in cands for t in c[slot].coefficients
                                                             if t not in spec.rules[slot].searched)
             for slot in cands[0]}
    evaluations = []
    for start in range(0, len(cands), spec.batch_size):
        chunk = slice(start, start + spec.batch_size)
        evaluations += task.evaluate(cands[chunk], seed, terms=terms, capacity=spec.batch_size,
                                     knobs=knobs[chunk] if knobs else None)
    return evaluations


def evaluate_candidate(spec: StudySpec, cand: Candidate, seed: int | None = None,
                       knobs: dict[str, Any] | None = None) -> tuple[Evaluation, int]:
    """One candidate on the study's task (with these hardware knobs), with held-out input seeds by default."""
    seed = held_out_seed(spec, seed)
    return _evaluate(spec, [cand], seed, [knobs] if knobs else None)[0], seed


def evaluate_front(spec: StudySpec, study: optuna.Study, seed: int | None = None) -> list[dict[str, Any]]:
    """Every Pareto-optimal trial again, with its knobs, on held-out inputs: is the trade-off real?"""
    seed = held_out_seed(spec, seed)
    front = pareto_front(spec, study)
    knobs = [knob_values(spec, t.params) for t in front]
    evaluations = _evaluate(spec, [candidate(spec, t.params) for t in front], seed,
                            knobs if spec.hardware.knobs else None)
    return [{"trial": t.number, **dict(zip(spec.objectives, t.values)), "knobs": k,
             "held_out_loss": e.loss, "held_out_diverged": e.diverged}
            for t, k, e in zip(front, knobs, evaluations)]


def _plot_losses(study: optuna.Study, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = sorted(finished_trials(study), key=lambda t: t.number)
    numbers = np.array([t.number for t in trials])
    values = np.array([t.values[0] for t in trials])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter(numbers, values, s=6, alpha=0.4, label="trial")
    ax.plot(numbers, np.minimum.accumulate(values), color="C3", label="best so far")
    ax.set_yscale("log")
    ax.set_xlabel("trial")
    ax.set_ylabel("loss" if len(study.directions) == 1 else "loss (first objective)")
    ax.set_title(study.study_name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def precision_sweep(spec: StudySpec, study: optuna.Study, seed: int | None = None) -> list[dict[str, Any]]:
    """At every weight width (and rounding mode) the study tried: its best trial there, run again on
    held-out inputs, and how many trials the sampler spent there.

    What each bit costs, with the rule re-tuned for each width (a rule found for 3-bit weights is
    not the best rule for 8 bits, so one rule swept over widths would not say it), and without the
    selection bias of the study's own losses (the best of many noisy losses is optimistic).
    """
    if spec.hardware.weight_bits is None:
        return []
    seed = held_out_seed(spec, seed)
    default_rounding = spec.target.precision.rounding
    groups: dict[tuple[str, int], list[optuna.trial.FrozenTrial]] = {}
    for t in finished_trials(study):
        if feasible(t):
            key = (t.params.get("hw.rounding", default_rounding), int(t.params["hw.weight_bits"]))
            groups.setdefault(key, []).append(t)
    best = {key: min(trials, key=lambda t: t.values[0]) for key, trials in sorted(groups.items())}
    trials = list(best.values())
    knobs = [knob_values(spec, t.params) for t in trials]
    evaluations = _evaluate(spec, [candidate(spec, t.params) for t in trials], seed, knobs)
    return [{"rounding": rounding, "weight_bits": bits, "trial": t.number, "n_trials": len(groups[rounding, bits]),
             "study_loss": t.values[0], "held_out_loss": e.loss, "diverged": e.diverged}
            for ((rounding, bits), t), e in zip(best.items(), evaluations)]


def _plot_pareto(spec: StudySpec, study: optuna.Study, path: Path, sweep: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = finished_trials(study)
    fitting = [t for t in trials if feasible(t)]
    front = pareto_front(spec, study)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter([t.values[1] for t in fitting], [t.values[0] for t in fitting], s=8, alpha=0.3, color="grey",
               label="trials")
    if spec.objectives[1] == "weight_bits":
        for rounding in dict.fromkeys(row["rounding"] for row in sweep):
            rows = [row for row in sweep if row["rounding"] == rounding]
            ax.plot([row["weight_bits"] for row in rows], [row["held_out_loss"] for row in rows], "s--",
                    label=f"best at each width, {rounding} rounding, held-out (n: trials there)")
            for row in rows:
                ax.annotate(str(row["n_trials"]), (row["weight_bits"], row["held_out_loss"]), fontsize=6,
                            textcoords="offset points", xytext=(3, 3))
    ax.plot([t.values[1] for t in front], [t.values[0] for t in front], "o-", color="C3", label="Pareto front")
    ax.set_xlabel(spec.objectives[1] + (" (J per s of operation)" if spec.objectives[1] == "energy" else ""))
    ax.set_ylabel("task loss")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_title(f"{spec.name} on {spec.target.name}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(spec: StudySpec, study: optuna.Study) -> dict[str, Path]:
    """Write the best rule (YAML), the loss over trials, and the task's own plots."""
    out = spec.results_dir
    out.mkdir(parents=True, exist_ok=True)
    trial = best_trial(spec, study)
    best = candidate(spec, trial.params, name=f"{spec.name} trial {trial.number}")
    paths = {"rule": out / "best_rule.yaml", "losses": out / "loss_over_trials.png"}
    save_candidate(best, paths["rule"], loss=trial.values[0], study=spec.name, trial=trial.number,
                   metrics=trial.user_attrs.get("metrics", {}))
    _plot_losses(study, paths["losses"])
    evaluation, _ = evaluate_candidate(spec, best, knobs=knob_values(spec, trial.params) or None)
    task = make_task(spec)
    plot = out / f"{spec.task.kind}_best_rule.png"
    if task.plot(evaluation, plot, title="; ".join(r.readable() for r in best.values())):
        paths["task"] = plot
    if len(spec.objectives) > 1:
        sweep = precision_sweep(spec, study)
        if sweep:
            paths["sweep"] = out / "precision_sweep.json"
            paths["sweep"].write_text(json.dumps(sweep, indent=1))
        paths["pareto"] = out / "pareto_front.png"
        _plot_pareto(spec, study, paths["pareto"], sweep)
    manifold = out / f"{spec.task.kind}_solutions.png"
    if task.plot_solutions(spec, finished_trials(study), manifold):
        paths["solutions"] = manifold
    return paths


def adapt_to_target(cand: Candidate, target) -> tuple[dict, list[str], list[str]]:
    """The candidate as ``target`` can run it: (candidate, what changed, why it cannot run).

    Terms the learning engine cannot run are dropped (set to zero); weights are quantised by the
    task's emulation according to the target's precision.
    """
    from codesign.rules import FAMILIES

    learning = target.learning
    changes, blockers = [], []
    adapted = {}
    for slot, rule in cand.items():
        family = rule.to_dict()["family"]
        allowed = FAMILIES[family].terms if learning.terms == "all" else tuple(learning.terms)
        if learning.engine == "none":
            allowed = ()
        elif learning.engine == "sum_of_products" and family != "spike_trace":
            blockers.append(f"{slot}: a rate-based rule is not a program of the spike-trace learning engine")
        dropped = [t for t, v in rule.coefficients.items() if v != 0.0 and t not in allowed]
        if dropped:
            changes.append(f"{slot}: dropped {', '.join(dropped)}" +
                           (" (no on-chip learning)" if learning.engine == "none" else " (not supported)"))
            kept = {t: v for t, v in rule.coefficients.items() if t in allowed}
            rule = dataclasses.replace(rule, coefficients=kept)
        adapted[slot] = rule
    bits = target.precision.weight_bits
    if bits is not None:
        changes.append(f"weights on a {bits}-bit grid, {target.precision.rounding} rounding")
    return adapted, changes, blockers


def compare_targets(spec: StudySpec, cand: Candidate, targets: list, seed: int | None = None) -> list[dict[str, Any]]:
    """The same candidate and task on each target: loss, energy, cores, fit, and what had to change."""
    from codesign.hardware import cost
    from codesign.tasks import task_class

    seed = held_out_seed(spec, seed)
    rows = []
    for target in targets:
        adapted, changes, blockers = adapt_to_target(cand, target)
        task = task_class(spec.task.kind)(spec.task.params, target)
        evaluation = task.evaluate([adapted], seed, capacity=spec.batch_size)[0]
        row: dict[str, Any] = {"target": target.name, "file": target.file, "loss": evaluation.loss,
                               "energy_j": None, "energy_per_s_j": None, "cores": None,
                               "fits": not blockers, "changes": changes, "reasons": list(blockers),
                               "unknown": [], "energy_kinds": [], "metrics": evaluation.metrics}
        if evaluation.counts is not None:
            c = cost(target, evaluation.counts)
            row.update(energy_per_s_j=c.energy_w, cores=c.cores, fits=c.fits and not blockers,
                       energy_j=None if c.energy_w is None else c.energy_w * evaluation.counts.duration_s,
                       unknown=[f"not published: {', '.join(c.unknown)}"] if c.unknown else [],
                       energy_kinds=list(c.kinds))
            row["reasons"] += list(c.reasons)
        else:
            row["unknown"].append(f"task {spec.task.kind} does not count events: no energy or core estimate")
        if target.energy == type(target.energy)() and evaluation.counts is not None:
            row["unknown"].append("no energy model for this target")
        rows.append(row)
    return rows


def plot_comparison(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["target"] for r in rows]
    fig, (ax_loss, ax_energy) = plt.subplots(1, 2, figsize=(9, 3.6))
    colours = ["C0" if r["fits"] else "C3" for r in rows]
    ax_loss.bar(names, [r["loss"] for r in rows], color=colours)
    ax_loss.set_ylabel("task loss (red: does not fit)")
    energies = [r["energy_per_s_j"] if r["energy_per_s_j"] is not None else 0.0 for r in rows]
    ax_energy.bar(names, energies, color=colours)
    for i, r in enumerate(rows):
        if r["energy_per_s_j"] is None:
            ax_energy.text(i, 0, "unknown", ha="center", va="bottom", rotation=90, fontsize=8)
    ax_energy.set_ylabel("energy per second of operation (J/s)")
    ax_energy.set_yscale("symlog", linthresh=1e-9)
    for ax in (ax_loss, ax_energy):
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
