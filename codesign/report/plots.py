"""Figures of a study: loss over trials, the Pareto front, and the comparison of targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna

from codesign.report.compare import energy_groups
from codesign.report.summary import pareto_front
from codesign.search.objectives import OBJECTIVES
from codesign.search.study import feasible, finished_trials
from codesign.spec import StudySpec

__all__ = ["plot_losses", "plot_pareto", "plot_comparison"]


def plot_losses(study: optuna.Study, path: Path) -> None:
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


def plot_pareto(spec: StudySpec, study: optuna.Study, path: Path, sweep: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = finished_trials(study)
    fitting = [t for t in trials if feasible(t)]
    front = pareto_front(spec, study)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter([t.values[1] for t in fitting], [t.values[0] for t in fitting], s=8, alpha=0.3, color="grey",
               label="trials")
    x = spec.objectives[1]
    if all(x in row for row in sweep):  # the sweep holds one value of x per row: weight widths
        for rounding in dict.fromkeys(row["rounding"] for row in sweep):
            rows = [row for row in sweep if row["rounding"] == rounding]
            ax.plot([row[x] for row in rows], [row["held_out_loss"] for row in rows], "s--",
                    label=f"best at each width, {rounding} rounding, held-out (n: trials there)")
            for row in rows:
                ax.annotate(str(row["n_trials"]), (row[x], row["held_out_loss"]), fontsize=6,
                            textcoords="offset points", xytext=(3, 3))
    ax.plot([t.values[1] for t in front], [t.values[0] for t in front], "o-", color="C3", label="Pareto front")
    unit = OBJECTIVES[x].unit
    ax.set_xlabel(x + (f" ({unit(spec)})" if unit else ""))
    ax.set_ylabel("loss")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_title(f"{spec.name} on {spec.target.name}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
