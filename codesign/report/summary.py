"""The best rules of a study: the best trial, the Pareto front, the best few distinct rules, as dicts."""

from __future__ import annotations

import collections
import re
from typing import Any, Sequence

import numpy as np
import optuna

from codesign.errors import CodesignError
from codesign.rules import FAMILIES
from codesign.search.rounds import Round, best_finished
from codesign.search.space import candidate, distributions
from codesign.search.study import count_trials, feasible, finished_trials
from codesign.spec import StudySpec

__all__ = ["best_trial", "pareto_front", "rule_summary", "round_summary", "distinct_best", "best_summary"]


def best_trial(spec: StudySpec, study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best trial; in a multi-objective study, the lowest-loss feasible trial of the Pareto front. Trials
    the stability check rejected (:mod:`codesign.report.stability`) are passed over."""
    rejected = rejected_trials(study)
    trials = [t for t in finished_trials(study) if t.number not in rejected]
    if not trials:
        raise _no_best_trial(spec, study)
    if len(spec.objectives) == 1:
        if not rejected:
            return study.best_trial
        return min(trials, key=lambda t: (not feasible(t), t.values[0], t.number))
    front = [t for t in pareto_front(spec, study) if t.number not in rejected] or trials
    return min(front, key=lambda t: t.values[0])


def rejected_trials(study: optuna.Study) -> set[int]:
    """The trials the study's last stability check rejected (:mod:`codesign.report.stability`)."""
    return {int(number) for number in study.user_attrs.get("stability", {}).get("rejected", {})}


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
    rules ``normalised`` divides by ``|theta_110|`` of the same slot (the family's ``scale_term``).
    """
    cand = candidate(spec, trial.params, name=f"{spec.name} trial {trial.number}")
    summary: dict[str, Any] = {"trial": trial.number, "loss": trial.values[0],
                               "objectives": dict(zip(spec.objectives, trial.values)),
                               "coefficients": dict(trial.params), "rules": {}, "normalised": {}}
    for slot, rule in cand.items():
        summary["rules"][slot] = {"family": spec.rules[slot].family, "equation": rule.equation(),
                                  "readable": rule.readable(), **rule.to_dict()}
        scale = FAMILIES[spec.rules[slot].family].scale_term
        if scale is not None and rule.coefficient(scale) != 0.0:
            normalised = rule.normalised(scale)
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


def round_summary(r: Round) -> dict[str, Any]:
    """One refinement round: its Optuna study, the parameters it searched, those it dropped from the
    round before (with their size there), and its best (penalised) loss and trial."""
    best = best_finished(r.spec, r.study)
    return {"round": r.spec.round, "study": r.spec.study_name, "searched": list(distributions(r.spec)),
            "dropped": r.dropped, "from_trial": r.from_trial, "n_finished": count_trials(r.study)[0],
            "best_trial": None if best is None else best.number, "best_loss": None if best is None else best.values[0]}


def best_summary(spec: StudySpec, study: optuna.Study, top: int = 5,
                 rounds: Sequence[Round] = ()) -> dict[str, Any]:
    """The best candidate (see :func:`rule_summary`) and the best few distinct ones under ``top``; with
    refinement ``rounds`` (:func:`codesign.search.rounds.existing_rounds`), each round's terms, what it
    dropped and its best loss; and the stability check's outcome, if the study had one."""
    pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    summary = {"study": spec.name, "n_finished": count_trials(study)[0], "n_pruned": len(pruned),
               **rule_summary(spec, best_trial(spec, study))}
    if rounds:
        summary["rounds"] = [round_summary(r) for r in rounds]
    if "stability" in study.user_attrs:
        summary["stability"] = study.user_attrs["stability"]
    summary["top"] = [rule_summary(spec, t) for t in distinct_best(spec, study, top)]
    if len(spec.objectives) > 1:
        summary["pareto"] = [{"trial": t.number, **dict(zip(spec.objectives, t.values)), "params": t.params}
                             for t in pareto_front(spec, study)]
    return summary
