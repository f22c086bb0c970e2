"""How well a rule is inferred from worse recordings (Mehta et al. 2024's robustness curves): for each
measurement noise and each recorded fraction, recordings of a teacher are made (``codesign record``) and
the rule is inferred from them (``codesign infer``), several seeds per point; the held-out R^2 of
activity and weights and the error of the coefficients are tabulated and drawn."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["SweepSettings", "sweep", "coefficient_error"]


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """The teacher (``rule`` of ``model`` with ``constants``), the points swept (``noise`` at full recording,
    ``fractions`` without noise), ``seeds`` per point and the inference's terms and budget."""

    model: Any
    target: Any
    candidate: Any
    teacher: dict[str, Any]
    recorded: Any  # a codesign.models.recorder.Recorded
    output: Path
    noise: Sequence[float] = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)
    fractions: Sequence[float] = (1.0, 0.3, 0.1, 0.03, 0.01)
    seeds: Sequence[int] = (1, 2, 3)
    trajectories: int = 9
    fit: int = 6
    terms: Sequence[str] = ("theta_110", "theta_021", "theta_001", "theta_000")
    n_trials: int = 800
    batch_size: int = 16


def coefficient_error(found: dict[str, float], teacher: dict[str, float]) -> float:
    """||found - teacher|| / ||teacher|| over the searched terms (the teacher's absent terms are 0)."""
    terms = list(found)
    a = np.array([found[t] for t in terms])
    b = np.array([float(teacher.get(t, 0.0)) for t in terms])
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _point(settings: SweepSettings, axis: str, value: float, seed: int) -> dict[str, Any]:
    from codesign.models.recorder import record
    from codesign.models.recordings import save_trajectories
    from codesign.search.infer import InferSettings, infer

    noise, fraction = (value, 1.0) if axis == "noise" else (0.0, value)
    stem = f"{axis}-{value:g}-seed{seed}"
    path = settings.output / f"{stem}.npz"
    recorded = record(settings.model, settings.target, settings.candidate, settings.recorded,
                      trajectories=settings.trajectories, seed=seed, noise=noise, fraction=fraction,
                      teacher=settings.teacher)
    save_trajectories(path, recorded)
    result = infer(InferSettings(str(path), model=settings.model.file, terms=list(settings.terms), fit=settings.fit,
                                 n_trials=settings.n_trials, batch_size=settings.batch_size, seed=seed,
                                 storage=f"journal:{settings.output / (stem + '.journal.log')}"))
    (slot, teacher), = settings.teacher.items()
    scale = teacher["eta"] / result["eta"]
    expected = {t: v * scale for t, v in teacher["coefficients"].items()}
    return {"axis": axis, "value": value, "seed": seed, "units_recorded": int(recorded.recorded.sum()),
            "activity_r2": result["held_out"]["activity_r2"], "weights_r2": result["held_out"].get("weights_r2"),
            "coefficient_error": coefficient_error(result["coefficients"], expected),
            "coefficients": result["coefficients"], "seconds": result["seconds"]}


def sweep(settings: SweepSettings, progress: Callable[[dict[str, Any]], None] = lambda row: None) -> list[dict[str, Any]]:
    """Every point, each seed in turn; the rows are also written to ``output/robustness.json``."""
    settings.output.mkdir(parents=True, exist_ok=True)
    rows = []
    for axis, values in (("noise", settings.noise), ("recorded_fraction", settings.fractions)):
        for value in values:
            for seed in settings.seeds:
                rows.append(_point(settings, axis, value, seed))
                progress(rows[-1])
                (settings.output / "robustness.json").write_text(json.dumps(rows, indent=1))
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per axis and value: the median over seeds of each measure, and its range."""
    out = []
    for axis, value in dict.fromkeys((r["axis"], r["value"]) for r in rows):
        chosen = [r for r in rows if r["axis"] == axis and r["value"] == value]
        entry: dict[str, Any] = {"axis": axis, "value": value, "seeds": len(chosen)}
        for key in ("activity_r2", "weights_r2", "coefficient_error"):
            values = [r[key] for r in chosen if r[key] is not None]
            if values:
                entry[key] = {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values))}
        out.append(entry)
    return out
