"""What ``codesign run`` leaves under ``results/NAME/``: the best rule, its figures, the precision sweep."""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from codesign.report.evaluate import evaluate_candidate, precision_sweep
from codesign.report.plots import plot_losses, plot_pareto
from codesign.report.summary import best_trial
from codesign.rules import save_candidate
from codesign.search.space import candidate, knob_values
from codesign.search.study import finished_trials, make_task
from codesign.spec import StudySpec

__all__ = ["write_results"]


def write_results(spec: StudySpec, study: optuna.Study, workers: int = 1) -> dict[str, Path]:
    """Write the best rule (YAML), the loss over trials, and the loss's own plots; the held-out runs of the
    precision sweep use up to ``workers`` processes."""
    out = spec.results_dir
    out.mkdir(parents=True, exist_ok=True)
    trial = best_trial(spec, study)
    best = candidate(spec, trial.params, name=f"{spec.name} trial {trial.number}")
    paths = {"rule": out / "best_rule.yaml", "losses": out / "loss_over_trials.png"}
    save_candidate(best, paths["rule"], loss=trial.values[0], study=spec.name, trial=trial.number,
                   metrics=trial.user_attrs.get("metrics", {}))
    plot_losses(study, paths["losses"])
    evaluation, _ = evaluate_candidate(spec, best, knobs=knob_values(spec, trial.params) or None)
    task = make_task(spec)
    plot = out / f"{spec.model.name}_best_rule.png"
    if task.plot(evaluation, plot, title="; ".join(r.readable() for r in best.values())):
        paths["model"] = plot
    if len(spec.objectives) > 1:
        sweep = precision_sweep(spec, study, workers=workers)
        if sweep:
            paths["sweep"] = out / "precision_sweep.json"
            paths["sweep"].write_text(json.dumps(sweep, indent=1))
        paths["pareto"] = out / "pareto_front.png"
        plot_pareto(spec, study, paths["pareto"], sweep)
    manifold = out / f"{spec.model.name}_solutions.png"
    solutions = [(candidate(spec, t.params), t.values[0], t.user_attrs.get("metrics", {}))
                 for t in finished_trials(study) if t.values]
    if task.plot_solutions(spec, solutions, manifold):
        paths["solutions"] = manifold
    return paths
