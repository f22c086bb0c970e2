"""Recordings of a network while it learns, per trajectory: its inputs, the sampled activity of the units
that were recorded and, when known, the weights; for synthetic recordings, the teacher rule that made them.

A recordings file (NumPy ``.npz``) is what ``codesign record`` writes and ``codesign infer`` fits a rule
to (Mehta et al. 2024, SCIENCE.md section 2). Its arrays, trajectory first:

- ``inputs`` (trajectories, steps, columns): the model's stimulus (``stimulus`` names it), one value per
  time step of ``dt`` seconds;
- ``activity`` (trajectories, samples, units): ``activity_var`` (``GROUP.VAR``) every ``every`` seconds
  from t = 0, NaN for the units not recorded; ``recorded`` (units,): which were;
- ``initial__SYNAPSE__VAR`` (trajectories, n_post, n_pre): initial values the simulation starts from;
- optional ``weights`` (trajectories, samples, n_post, n_pre): ``weights_var`` (``SYNAPSE.VAR``);
- ``info``: JSON text with the names above, ``dt``, ``every``, ``model`` and, for synthetic recordings,
  ``teacher`` ({slot: {family, eta, coefficients}}), ``noise``, ``recorded_fraction`` and ``seed``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from codesign.errors import CodesignError

__all__ = ["Trajectories", "load_trajectories", "save_trajectories"]

_INITIAL = "initial__"


@dataclasses.dataclass
class Trajectories:
    """The contents of a recordings file (see the module's docstring)."""

    inputs: np.ndarray
    activity: np.ndarray
    recorded: np.ndarray
    initial: dict[str, np.ndarray]
    info: dict[str, Any]
    weights: np.ndarray | None = None

    @property
    def count(self) -> int:
        return self.inputs.shape[0]

    @property
    def dt(self) -> float:
        return float(self.info["dt"])

    @property
    def every(self) -> float:
        return float(self.info["every"])

    @property
    def duration_s(self) -> float:
        return self.inputs.shape[1] * self.dt

    def block(self, first: int, count: int) -> Trajectories:
        """Trajectories ``first`` .. ``first + count - 1``."""
        part = slice(first, first + count)
        return Trajectories(self.inputs[part], self.activity[part], self.recorded,
                            {k: v[part] for k, v in self.initial.items()}, self.info,
                            None if self.weights is None else self.weights[part])


def save_trajectories(path: str | Path, trajectories: Trajectories) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"inputs": trajectories.inputs, "activity": trajectories.activity, "recorded": trajectories.recorded,
              "info": np.array(json.dumps(trajectories.info))}
    arrays.update({_INITIAL + name.replace(".", "__"): value for name, value in trajectories.initial.items()})
    if trajectories.weights is not None:
        arrays["weights"] = trajectories.weights
    with open(path, "wb") as handle:  # np.savez would append .npz to a name without it
        np.savez_compressed(handle, **arrays)


def load_trajectories(path: str | Path) -> Trajectories:
    """Read and check a recordings file; a one-line error names the file, the key and the fix."""
    return _load(str(Path(path).resolve()), Path(path).stat().st_mtime_ns if Path(path).is_file() else 0, str(path))


@functools.lru_cache(maxsize=4)
def _load(resolved: str, mtime: int, shown: str) -> Trajectories:
    def error(key: str, message: str, fix: str) -> CodesignError:
        return CodesignError(message, file=shown, key=key, fix=fix)

    if not mtime:
        raise CodesignError("recordings file not found", file=shown, fix="give the path of a .npz file that "
                            "codesign record wrote, or one with the same arrays")
    try:
        with np.load(resolved, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise CodesignError(f"not a NumPy .npz file: {exc}", file=shown, fix="write it with numpy.savez") from None
    for key in ("inputs", "activity", "recorded", "info"):
        if key not in arrays:
            raise error(key, "missing array", "record with codesign record, or add the array (see codesign.models.recordings)")
    try:
        info = json.loads(str(arrays["info"]))
    except json.JSONDecodeError as exc:
        raise error("info", f"not JSON: {exc}", "store info as JSON text") from None
    for key in ("dt", "every", "stimulus", "activity_var"):
        if key not in info:
            raise error(f"info.{key}", "missing", "add it to info (see codesign.models.recordings)")
    trajectories = Trajectories(
        inputs=np.asarray(arrays["inputs"], dtype=float), activity=np.asarray(arrays["activity"], dtype=float),
        recorded=np.asarray(arrays["recorded"], dtype=bool), info=info,
        initial={k[len(_INITIAL):].replace("__", "."): np.asarray(v, dtype=float)
                 for k, v in arrays.items() if k.startswith(_INITIAL)},
        weights=np.asarray(arrays["weights"], dtype=float) if "weights" in arrays else None)
    _check_shapes(trajectories, error)
    return trajectories


def _check_shapes(t: Trajectories, error: Any) -> None:
    n = t.inputs.shape[0] if t.inputs.ndim == 3 else 0
    if t.inputs.ndim != 3 or n < 1:
        raise error("inputs", f"shape {t.inputs.shape}, expected (trajectories, steps, columns)", "store one series per trajectory")
    if t.activity.ndim != 3 or t.activity.shape[0] != n:
        raise error("activity", f"shape {t.activity.shape}, expected ({n}, samples, units)",
                    "store one sampled series per trajectory")
    if t.recorded.shape != (t.activity.shape[2],) or not t.recorded.any():
        raise error("recorded", f"shape {t.recorded.shape} with {int(t.recorded.sum())} recorded units",
                    f"give one flag per unit ({t.activity.shape[2]}), at least one true")
    if not np.all(np.isfinite(t.activity[:, :, t.recorded])):
        raise error("activity", "NaN or infinite values in a recorded unit", "mark the unit as not recorded, or drop the trajectory")
    if not np.all(np.isfinite(t.inputs)):
        raise error("inputs", "NaN or infinite values", "inputs must be known at every step")
    if not t.dt > 0 or not t.every >= t.dt:
        raise error("info.every", f"samples every {t.every:g} s with dt {t.dt:g} s", "sample at a multiple of dt")
    if not t.initial:
        raise error("initial__SYNAPSE__VAR", "no initial values", "store the initial weights of each trajectory")
    for name, value in t.initial.items():
        if value.ndim != 3 or value.shape[0] != n:
            raise error(_INITIAL + name.replace(".", "__"), f"shape {value.shape}, expected ({n}, n_post, n_pre)",
                        "store one matrix per trajectory")
    if t.weights is not None and (t.weights.ndim != 4 or t.weights.shape[:2] != t.activity.shape[:2]):
        raise error("weights", f"shape {t.weights.shape}, expected ({n}, {t.activity.shape[1]}, n_post, n_pre)",
                    "sample the weights when the activity is sampled")

