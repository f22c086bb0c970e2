"""What a study produced, for people: the best rule, tables, plots and files under ``results/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna

from codesign.errors import CodesignError
from codesign.rules import PolynomialRule, save_rule
from codesign.spec import StudySpec
from codesign.study import EVAL_SEED_OFFSET, candidate_rule, finished_trials, make_task
from codesign.tasks import Evaluation

__all__ = ["best_trial", "best_summary", "write_results", "evaluate_rule"]


def best_trial(spec: StudySpec, study: optuna.Study) -> optuna.trial.FrozenTrial:
    if not finished_trials(study):
        raise CodesignError("the study has no finished trial yet", file=spec.file,
                            fix=f"run: codesign run {spec.file}")
    return study.best_trial


def best_summary(spec: StudySpec, study: optuna.Study) -> dict[str, Any]:
    """The best rule as a JSON-friendly dict: loss, coefficients, normalised ones, equation, metrics."""
    trial = best_trial(spec, study)
    rule = candidate_rule(spec, trial.params, name=f"{spec.name} trial {trial.number}")
    summary: dict[str, Any] = {
        "study": spec.name,
        "trial": trial.number,
        "n_finished": len(finished_trials(study)),
        "loss": trial.value,
        "coefficients": {t: rule.coefficient(t) for t in spec.rule.searched},
        "equation": rule.equation(),
        "readable": rule.readable(),
        "eta": rule.eta,
        "metrics": trial.user_attrs.get("metrics", {}),
    }
    if rule.coefficient("theta_110") != 0.0:
        normalised = rule.normalised("theta_110")
        summary["normalised"] = {t: normalised.get(t, 0.0) for t in spec.rule.searched}
    return summary


def evaluate_rule(spec: StudySpec, rule: PolynomialRule, seed: int | None = None) -> tuple[Evaluation, int]:
    """One rule on the study's task, with held-out input seeds by default."""
    seed = spec.seed + EVAL_SEED_OFFSET if seed is None else seed
    task = make_task(spec)
    # The study's terms and batch size: the network the study built is reused (no new build).
    terms = tuple(spec.rule.searched) + tuple(t for t in rule.coefficients if t not in spec.rule.searched)
    return task.evaluate([rule], seed, terms=terms, capacity=spec.batch_size)[0], seed


def _plot_losses(study: optuna.Study, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = sorted(finished_trials(study), key=lambda t: t.number)
    numbers = np.array([t.number for t in trials])
    values = np.array([t.value for t in trials])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter(numbers, values, s=6, alpha=0.4, label="trial")
    ax.plot(numbers, np.minimum.accumulate(values), color="C3", label="best so far")
    ax.set_yscale("log")
    ax.set_xlabel("trial")
    ax.set_ylabel("loss")
    ax.set_title(study.study_name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(spec: StudySpec, study: optuna.Study) -> dict[str, Path]:
    """Write the best rule (YAML), the loss over trials and the task's own plot of the best rule."""
    out = spec.results_dir
    out.mkdir(parents=True, exist_ok=True)
    summary = best_summary(spec, study)
    rule = candidate_rule(spec, study.best_trial.params, name=f"{spec.name} trial {summary['trial']}")
    paths = {"rule": out / "best_rule.yaml", "losses": out / "loss_over_trials.png"}
    save_rule(rule, paths["rule"], loss=summary["loss"], study=spec.name, trial=summary["trial"],
              metrics=summary["metrics"])
    _plot_losses(study, paths["losses"])
    evaluation, _ = evaluate_rule(spec, rule)
    task = make_task(spec)
    plot = out / f"{spec.task.kind}_best_rule.png"
    if task.plot(evaluation, plot, title=rule.readable()):
        paths["task"] = plot
    return paths
