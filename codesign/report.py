"""What a study produced, for people: the best rules, tables, plots and files under ``results/``."""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np
import optuna

from codesign.errors import CodesignError
from codesign.hardware import ENERGY_KINDS, Target, energy_objective_kind
from codesign.rules import Candidate, save_candidate
from codesign.spec import StudySpec
from codesign.study import (EVAL_SEED_OFFSET, candidate, count_trials, distributions, feasible, finished_trials,
                            knob_values, make_task)
from codesign.models import Evaluation

__all__ = ["best_trial", "best_summary", "distinct_best", "write_results", "evaluate_candidate", "evaluate_candidates",
           "evaluate_front", "precision_sweep", "rule_summary", "adapt_to_target", "compare_targets", "energy_groups",
           "plot_comparison", "LOCAL_BACKEND"]


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

    ``coefficients`` maps the study's parameter names (``theta_abc`` for a one-slot model, else
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


def _evaluate(spec: StudySpec, cands: list[Candidate], seed: int, knobs: list[dict] | None,
              conditions: list[dict] | None = None) -> list[Evaluation]:
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
                                     knobs=knobs[chunk] if knobs else None, conditions=conditions,
                                     by_condition=conditions is not None)
    return evaluations


def evaluate_candidates(spec: StudySpec, cands: Sequence[Candidate], seed: int | None = None,
                        knobs: Sequence[dict[str, Any] | None] | None = None) -> tuple[list[Evaluation], int]:
    """Candidates on the study's model, a batch at a time, each with its hardware knobs (None: the
    target's precision), with held-out input seeds by default.

    Their losses and metrics are on the training conditions; where the study holds conditions out,
    metric ``conditions`` lists each held-out condition's values, loss and metrics (same seed)."""
    seed = held_out_seed(spec, seed)
    knobs = [k or {} for k in knobs] if knobs and any(knobs) else None
    evaluations = _evaluate(spec, list(cands), seed, knobs)
    if spec.conditions.held_out:
        held = _evaluate(spec, list(cands), seed, knobs, conditions=spec.conditions.held_out)
        for evaluation, on_held_out in zip(evaluations, held):
            evaluation.metrics["conditions"] = on_held_out.metrics["conditions"]
    return evaluations, seed


def evaluate_candidate(spec: StudySpec, cand: Candidate, seed: int | None = None,
                       knobs: dict[str, Any] | None = None) -> tuple[Evaluation, int]:
    """One candidate: see :func:`evaluate_candidates`."""
    evaluations, seed = evaluate_candidates(spec, [cand], seed, [knobs])
    return evaluations[0], seed


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
    energy = spec.objectives[1] == "energy"
    ax.set_xlabel(spec.objectives[1] + (f" ({energy_objective_kind(spec.target)} J over the run)" if energy else ""))
    ax.set_ylabel("loss")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_title(f"{spec.name} on {spec.target.name}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(spec: StudySpec, study: optuna.Study) -> dict[str, Path]:
    """Write the best rule (YAML), the loss over trials, and the loss's own plots."""
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
    plot = out / f"{spec.model.name}_best_rule.png"
    if task.plot(evaluation, plot, title="; ".join(r.readable() for r in best.values())):
        paths["model"] = plot
    if len(spec.objectives) > 1:
        sweep = precision_sweep(spec, study)
        if sweep:
            paths["sweep"] = out / "precision_sweep.json"
            paths["sweep"].write_text(json.dumps(sweep, indent=1))
        paths["pareto"] = out / "pareto_front.png"
        _plot_pareto(spec, study, paths["pareto"], sweep)
    manifold = out / f"{spec.model.name}_solutions.png"
    if task.plot_solutions(spec, finished_trials(study), manifold):
        paths["solutions"] = manifold
    return paths


def adapt_to_target(cand: Candidate, target: Target,
                    emulated: Collection[str] = ()) -> tuple[dict, list[str], list[str], list[str]]:
    """The candidate as ``target`` can run it: (candidate, what changed, what was not emulated, why it cannot run).

    Terms the learning engine cannot run are dropped (set to zero). Of the target's number formats,
    only the knobs in ``emulated`` (the model's ``knobs``) are applied by its emulation; the
    others are listed as not emulated, so that a report never claims what the simulation ignored.
    """
    from codesign.rules import FAMILIES

    learning = target.learning
    changes, blockers = [], []
    adapted = {}
    for slot, rule in cand.items():
        family = rule.to_dict()["family"]
        if FAMILIES[family].free_text:  # its params are values of its text, not terms an engine could drop
            if learning.engine != "any":
                blockers.append(f"{slot}: a free-text rule is not a program of a fixed learning engine")
            adapted[slot] = rule
            continue
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
    applied, ignored = _precision_emulation(target, emulated)
    if target.time_step_ms is not None:
        ignored.append(f"the {target.time_step_ms:g} ms time step (simulated at the model's own)")
    return adapted, changes + applied, ignored, blockers


def _precision_emulation(target: Target, emulated: Collection[str]) -> tuple[list[str], list[str]]:
    """What the simulation does of the target's number formats, and what it leaves out."""
    precision = target.precision
    rounding = f", {precision.rounding} rounding" if precision.rounding != "none" else ""
    applied, ignored = [], []
    for knob, what in (("weight_bits", "weights quantised to {} bits"), ("trace_bits", "traces in {}-bit registers")):
        bits = getattr(precision, knob)
        if bits is not None:
            (applied if knob in emulated else ignored).append(what.format(bits) + rounding)
    if ignored:
        ignored[-1] += " (the model's emulation applies " + (", ".join(emulated) or "no number format") + ")"
    return applied, ignored


def compare_targets(spec: StudySpec, cand: Candidate, targets: Sequence[Target | str | Path],
                    seed: int | None = None) -> list[dict[str, Any]]:
    """The same candidate and model on each target (a target object or file): one row per target.

    Each target is simulated on this machine (see ``LOCAL_BACKEND``); a target that cannot be
    loaded or evaluated gets a row with its ``error`` and the others are still compared. Rows hold
    the loss, the energy of each kind over the model's simulated duration (``energy``, never a
    total across kinds), cores, fit, what changed, what was not emulated and why it cannot run.
    """
    seed = held_out_seed(spec, seed)
    return [_compare_one(spec, cand, target, seed) for target in targets]


#: Backends that need hardware this machine may not have, and the local backend that computes the
#: same network with the same float type (precision emulation is the model's, on any backend).
LOCAL_BACKEND = {"cuda_standalone": "cpp_standalone"}


def _compare_one(spec: StudySpec, cand: Candidate, target: Target | str | Path, seed: int) -> dict[str, Any]:
    from codesign.hardware import load_target

    file = str(target) if isinstance(target, (str, Path)) else target.file
    row: dict[str, Any] = {"target": Path(file).stem if file else None, "file": file, "error": None,
                           "emulated_on": None, "loss": None, "duration_s": None, "energy": {}, "cores": None,
                           "fits": False, "changes": [], "not_emulated": [], "reasons": [], "unknown": [],
                           "metrics": {}}
    try:
        if not isinstance(target, Target):
            target = load_target(target)
        row["target"] = target.name
        _evaluate_on(spec, cand, target, seed, row)
    except CodesignError as exc:
        row["error"] = exc.one_line()
    return row


def _evaluate_on(spec: StudySpec, cand: Candidate, target: Target, seed: int, row: dict[str, Any]) -> None:
    from codesign.hardware import cost
    from codesign.models import ModelTask

    adapted, changes, ignored, blockers = adapt_to_target(cand, target, ModelTask(spec.model, target).knobs)
    local = dataclasses.replace(target, backend=LOCAL_BACKEND.get(target.backend, target.backend))
    object.__setattr__(local, "file", target.file)
    row["emulated_on"] = f"{local.backend} ({local.float_dtype})"
    if local.backend != target.backend:
        ignored.append(f"{target.backend}: simulated on {row['emulated_on']} instead")
    task = ModelTask(spec.model, local, conditions=spec.conditions.train, held_out=spec.conditions.held_out)
    evaluation = task.evaluate([adapted], seed, capacity=spec.batch_size)[0]
    row.update(loss=evaluation.loss, fits=not blockers, changes=changes, not_emulated=ignored,
               reasons=list(blockers), metrics=evaluation.metrics)
    c = cost(target, evaluation.counts)
    row.update(duration_s=c.duration_s, energy=c.energy_j, cores=c.cores, fits=c.fits and not blockers,
               unknown=list(c.unknown))
    row["reasons"] += list(c.reasons)
    if not c.energy_j:
        row["unknown"].append("no energy model for this target")


def energy_groups(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows that have an energy of each kind, by kind: only energies of one kind may be ranked."""
    groups: dict[str, list[dict[str, Any]]] = {kind: [] for kind in ENERGY_KINDS}
    for row in rows:
        for kind in row["energy"]:
            groups[kind].append(row)
    return {kind: members for kind, members in groups.items() if members}


def plot_comparison(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Loss per target, and one panel per energy kind holding only the targets with that kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = energy_groups(rows)
    fig, axes = plt.subplots(1, 1 + len(groups), figsize=(4 + 3.2 * len(groups), 3.8), squeeze=False)
    ax_loss, *ax_energy = axes[0]
    evaluated = [r for r in rows if r["loss"] is not None]
    ax_loss.bar([r["target"] for r in evaluated], [r["loss"] for r in evaluated],
                color=["C0" if r["fits"] else "C3" for r in evaluated])
    ax_loss.set_ylabel("loss (red: does not fit)")
    ax_loss.set_yscale("symlog", linthresh=1e-4)
    for ax, (kind, members) in zip(ax_energy, groups.items()):
        known = [(i, r) for i, r in enumerate(members) if r["energy"][kind] is not None]
        ax.bar([i for i, _ in known], [r["energy"][kind] for _, r in known],
               color=["C0" if r["fits"] else "C3" for _, r in known])
        for i, r in enumerate(members):
            if r["energy"][kind] is None:
                ax.text(i, 0.03, "unknown", ha="center", va="bottom", rotation=90, fontsize=8,
                        transform=ax.get_xaxis_transform())
        ax.set_xticks(range(len(members)), [r["target"] for r in members])
        ax.set_xlim(-0.6, len(members) - 0.4)
        ax.set_ylabel(f"J over the model's {members[0]['duration_s']:g} s")
        ax.set_title(f"{kind} energy", fontsize=9)
        if any(r["energy"][kind] for _, r in known):
            ax.set_yscale("log")
    for ax in axes[0]:
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.suptitle(title + ("\n" if title else "") + "energies of different kinds are in separate panels: "
                 "compare within a panel only", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
