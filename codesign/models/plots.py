"""Plots of what a model's candidates learned (drawn for the losses that have them)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["plot_pc1", "plot_pca", "plot_rate_solutions", "plot_trial_learning", "plot_trajectories",
           "plot_robustness"]


def plot_pc1(weights: np.ndarray, pc1: np.ndarray, path: Path, title: str = "") -> None:
    """Learned weights against PC1, one panel per draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(weights)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.4 * rows + 0.4), squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for r, ax in zip(range(n), axes.flat):
        sign = 1.0 if np.dot(weights[r], pc1[r]) >= 0 else -1.0
        index = np.arange(len(pc1[r]))
        ax.bar(index - 0.2, sign * pc1[r], width=0.4, label="PC1")
        ax.bar(index + 0.2, weights[r], width=0.4, label="learned w")
        ax.set_xlabel("input")
        ax.set_title(f"draw {r}: |cos| {abs(np.dot(weights[r], pc1[r])) / np.linalg.norm(weights[r]):.3f}",
                     fontsize=9)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pca(arrays: dict[str, np.ndarray], path: Path, title: str = "") -> None:
    """Per draw: |cos| between each learned feed-forward row and each eigenvector of C (largest first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w, vectors = arrays["w"], arrays["eigenvectors"]
    angles, corrs = arrays["angles_deg"], arrays["correlations"]
    repeats, k, d = w.shape
    cols = min(repeats, 4)
    rows = -(-repeats // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols + 1.0, 1.0 + (0.4 * k + 1.5) * rows),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[repeats:]:
        ax.axis("off")
    image = None
    for r, ax in zip(range(repeats), axes.flat):
        with np.errstate(all="ignore"):
            rows_unit = w[r] / np.linalg.norm(w[r], axis=1, keepdims=True)
            overlap = np.abs(rows_unit @ vectors[r])
        image = ax.imshow(np.nan_to_num(overlap), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.axvline(k - 0.5, color="w", lw=1.5)
        ax.set_xticks(range(d))
        ax.set_xticklabels([f"PC{i + 1}" for i in range(d)], fontsize=6, rotation=90)
        ax.set_yticks(range(k))
        ax.set_yticklabels([f"y{i + 1}" for i in range(k)], fontsize=7)
        off = np.abs(corrs[r] - np.eye(k)).max()
        ax.set_title(f"draw {r}: max angle {angles[r].max():.1f} deg\nmax |corr| {off:.3f}", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="|cos(W row, PC)|")
    fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_rate_solutions(params: Any, input_rates: Sequence[float], solutions: Sequence[tuple[Any, float, dict]],
                        path: Path) -> bool:
    """Good rules in the plane (potentiation, depression offset), with Vogels' relation drawn in.

    With the neuron at rate rho and inhibitory inputs at rate rho_in, the mean weight drift of a
    rule vanishes when (pre spikes) rho_in (pre_1 + pre_y rho tau_y + pre_w w) + (post spikes)
    rho (post_1 + post_x rho_in tau_x + post_w w) = 0, that is when the depression offset
    ``alpha = -(pre_1 + pre_w w)`` equals ``rho * P`` with the potentiation
    ``P = pre_y tau_y + post_x tau_x + (post_1 + post_w w) / rho_in``. For Vogels' rule
    (pre_y = post_x = 1, tau_x = tau_y = tau, no other term) this is ``alpha = 2 rho0 tau``.
    A rule that holds the rate at rho0 lies on the line ``alpha = rho0 P`` (w: its final mean
    inhibitory weight): the solutions form a manifold, not a point. ``input_rates``: rho_in of each
    training condition; with several, 1 / rho_in is their mean, as a rule's loss and mean weight are means
    over the conditions' draws.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codesign.rules import SpikeTraceRule

    good = [(cand, loss, metrics) for cand, loss, metrics in solutions if loss < params.good_loss]
    if not good or any(len(cand) != 1 or not isinstance(next(iter(cand.values())), SpikeTraceRule)
                       for cand, _, _ in good):
        return False
    inverse_rate = float(np.mean(1.0 / np.asarray(input_rates)))
    potentiation, alpha = [], []
    for cand, _, metrics in good:
        (rule,) = cand.values()
        w = metrics.get("mean_weight", 0.0)
        c = rule.coefficient
        potentiation.append(c("pre_y") * rule.tau_y_ms * 1e-3 + c("post_x") * rule.tau_x_ms * 1e-3
                            + (c("post_1") + c("post_w") * w) * inverse_rate)
        alpha.append(-(c("pre_1") + c("pre_w") * w))
    potentiation, alpha = np.array(potentiation), np.array(alpha)
    fig, ax = plt.subplots(figsize=(5.8, 4.4))
    points = ax.scatter(potentiation, alpha, c=[loss for _, loss, _ in good], cmap="viridis_r", s=14)
    fig.colorbar(points, ax=ax, label="loss")
    rho0 = params.target
    x = np.linspace(min(0.0, potentiation.min()), max(potentiation.max(), 0.05), 50)
    ax.plot(x, rho0 * x, color="C3", label=f"alpha = rho0 P (Vogels' relation), rho0 = {rho0:g} Hz")
    ax.scatter([0.04], [rho0 * 0.04], marker="*", s=150, color="C3", label="Vogels et al. (tau = 20 ms)")
    ax.set_xlabel("potentiation P = pre_y tau_y + post_x tau_x + (post_1 + post_w w) / rho_in  (s)")
    ax.set_ylabel("depression offset alpha = -(pre_1 + pre_w w)")
    ax.set_title(f"{len(good)} rules with loss < {params.good_loss:g}", fontsize=10)
    ax.xaxis.label.set_size(8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_trial_learning(rates: np.ndarray, trials: Sequence[str], threshold: float,
                        burst_probability: dict[str, np.ndarray], path: Path, title: str = "") -> None:
    """Learning over passes through the trials: each trial's rate (mean over draws) against the threshold
    that decides it, and beside it the burst probability of each part that has one (e.g. hidden layers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_trials = len(trials)
    per_pass = rates.mean(axis=0).reshape(-1, n_trials)  # (passes, trials)
    panels = 2 if burst_probability else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.4), squeeze=False)
    ax = axes[0, 0]
    passes = np.arange(1, len(per_pass) + 1)
    for k, label in enumerate(trials):
        ax.plot(passes, per_pass[:, k], marker="." if len(passes) < 40 else None, label=label)
    ax.axhline(threshold, color="k", lw=0.8, ls="--", label=f"{threshold:g} Hz")
    ax.set_xlabel("pass through the trials (epoch)")
    ax.set_ylabel("rate (Hz)")
    ax.legend(fontsize=7)
    if burst_probability:
        ax = axes[0, 1]
        for part, bp in burst_probability.items():  # over each pass's trials
            ax.plot(passes, bp.reshape(-1, n_trials).mean(axis=1), label=part)
        ax.set_xlabel("pass through the trials (epoch)")
        ax.set_ylabel("burst probability (mean over the trials)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    fig.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_trajectories(arrays: dict[str, np.ndarray], every: float, path: Path, title: str = "", shown: int = 3) -> None:
    """Simulated against recorded activity (and weights, where recorded) for the first trajectories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("simulated", "recorded", "activity")]
    if "recorded_weights" in arrays:
        panels.append(("simulated_weights", "recorded_weights", "weights"))
    n = min(shown, len(arrays["recorded"]))
    fig, axes = plt.subplots(len(panels), n, figsize=(3.2 * n, 2.4 * len(panels) + 0.4), squeeze=False)
    for row, (sim_key, rec_key, label) in enumerate(panels):
        for r in range(n):
            ax = axes[row, r]
            recorded = arrays[rec_key][r].reshape(len(arrays[rec_key][r]), -1)[:, :4]
            simulated = arrays[sim_key][r].reshape(len(arrays[sim_key][r]), -1)[:, :4]
            t = np.arange(len(recorded)) * every
            ax.plot(t, recorded, color="0.6", lw=2.5)
            ax.plot(t, simulated, lw=1)
            ax.set_title(f"trajectory {r}: {label}", fontsize=9)
            ax.set_xlabel("time (s)")
    axes[0, 0].plot([], [], color="0.6", lw=2.5, label="recorded")
    axes[0, 0].plot([], [], lw=1, label="simulated")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_robustness(summary: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Held-out R^2 and coefficient error against measurement noise and against the recorded fraction
    (medians over seeds, bars from the lowest to the highest seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_names = [(axis, label) for axis, label in (("noise", "measurement noise (x unit SD)"),
                                                    ("recorded_fraction", "fraction of units recorded"))
                  if any(s["axis"] == axis for s in summary)]
    fig, axes = plt.subplots(2, len(axes_names), figsize=(4 * len(axes_names), 5.6), squeeze=False)
    for col, (axis, label) in enumerate(axes_names):
        points = [s for s in summary if s["axis"] == axis]
        x = np.array([s["value"] for s in points], dtype=float)
        for row, keys in enumerate((("weights_r2", "activity_r2"), ("coefficient_error",))):
            ax = axes[row, col]
            for key in keys:
                have = [i for i, s in enumerate(points) if key in s]
                if not have:
                    continue
                med = np.array([points[i][key]["median"] for i in have])
                low = med - np.array([points[i][key]["min"] for i in have])
                high = np.array([points[i][key]["max"] for i in have]) - med
                ax.errorbar(x[have], med, yerr=[low, high], marker="o", capsize=3, label=key.replace("_", " "))
            ax.set_xscale("symlog", linthresh=0.01) if axis == "noise" else ax.set_xscale("log")
            if row == 1:
                ax.set_yscale("log")
                ax.set_xlabel(label)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("held-out R^2")
    axes[1, 0].set_ylabel("coefficient error")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
