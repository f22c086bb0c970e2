"""What a study produced, for people: the best rules, held-out evaluations, figures, files, and the
comparison of targets.

* :mod:`~codesign.report.summary`: best trial, Pareto front, best distinct rules.
* :mod:`~codesign.report.evaluate`: candidates again on held-out draws and conditions.
* :mod:`~codesign.report.stability`: the best trials on held-out seeds; those that diverge are rejected.
* :mod:`~codesign.report.plots`: figures.
* :mod:`~codesign.report.files`: ``results/NAME/``.
* :mod:`~codesign.report.compare`: one candidate on several targets.
"""

from __future__ import annotations

from codesign.report.compare import compare_targets, energy_groups
from codesign.report.evaluate import (evaluate_candidate, evaluate_candidates, evaluate_front, evaluate_seeds,
                                      held_out_seed, precision_sweep)
from codesign.report.files import write_results
from codesign.report.plots import plot_comparison
from codesign.report.stability import check_stability
from codesign.report.summary import best_summary, best_trial, distinct_best, pareto_front, rule_summary

__all__ = ["best_trial", "best_summary", "distinct_best", "pareto_front", "rule_summary", "write_results",
           "evaluate_candidate", "evaluate_candidates", "evaluate_front", "evaluate_seeds", "held_out_seed", "precision_sweep",
           "compare_targets", "energy_groups", "plot_comparison", "check_stability"]
