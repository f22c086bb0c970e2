"""Recordings of a network while it learns, per trajectory: its inputs, the sampled activity of the units
that were recorded and, when known, the weights; for synthetic recordings, the teacher rule that made them.

A recordings file is what ``codesign record`` writes and ``codesign infer`` (and a stimulus of kind
``recorded``) fits a rule to (Mehta et al. 2024, SCIENCE.md section 2). Its suffix picks the format
(:data:`FORMATS`): NumPy ``.npz`` (below) or NWB ``.nwb`` (:mod:`codesign.models.recordings_nwb`, the layout
for real data). Both are read into one :class:`Trajectories` and checked alike. Its arrays, trajectory first:

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
from typing import Any, Callable

import numpy as np

from codesign.errors import CodesignError

__all__ = ["FORMATS", "RecordingsFormat", "Trajectories", "load_trajectories", "recordings_format",
           "save_trajectories"]

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


#: Makes the one-line error for a problem at a canonical key (an array name above, ``info.KEY``), of trajectory
#: ``trajectory`` where it is one trajectory's: ``error(key, message, fix, trajectory=0)``.
ErrorAt = Callable[..., CodesignError]


@dataclasses.dataclass(frozen=True)
class RecordingsFormat:
    """A file format for recordings: ``read`` a file into :class:`Trajectories` (the loader then checks them
    the same way for every format), ``write`` one, and ``locate`` a canonical key of trajectory ``k`` in the
    file (its array or object name), so that errors name what the user sees in it."""

    name: str
    read: Callable[[str, ErrorAt], Trajectories]
    write: Callable[[Path, Trajectories], None]
    locate: Callable[[str, int], str] = lambda key, k: key


def _write_npz(path: Path, trajectories: Trajectories) -> None:
    arrays = {"inputs": trajectories.inputs, "activity": trajectories.activity, "recorded": trajectories.recorded,
              "info": np.array(json.dumps(trajectories.info))}
    arrays.update({_INITIAL + name.replace(".", "__"): value for name, value in trajectories.initial.items()})
    if trajectories.weights is not None:
        arrays["weights"] = trajectories.weights
    with open(path, "wb") as handle:  # np.savez would append .npz to a name without it
        np.savez_compressed(handle, **arrays)


def _read_npz(path: str, error: ErrorAt) -> Trajectories:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise error(None, f"not a NumPy .npz file: {exc}", "write it with numpy.savez") from None
    for key in ("inputs", "activity", "recorded", "info"):
        if key not in arrays:
            raise error(key, "missing array", "record with codesign record, or add the array (see codesign.models.recordings)")
    return Trajectories(
        inputs=np.asarray(arrays["inputs"], dtype=float), activity=np.asarray(arrays["activity"], dtype=float),
        recorded=np.asarray(arrays["recorded"], dtype=bool), info=parse_info(str(arrays["info"]), error),
        initial={k[len(_INITIAL):].replace("__", "."): np.asarray(v, dtype=float)
                 for k, v in arrays.items() if k.startswith(_INITIAL)},
        weights=np.asarray(arrays["weights"], dtype=float) if "weights" in arrays else None)


#: Recordings formats by file suffix; :mod:`codesign.models.recordings_nwb` adds ``.nwb`` (the package
#: imports it).
FORMATS: dict[str, RecordingsFormat] = {
    ".npz": RecordingsFormat("NumPy .npz", _read_npz, _write_npz),
}


def recordings_format(path: str | Path, *, key: str | None = None) -> RecordingsFormat:
    """The format of a recordings file, by its suffix; a one-line error for any other suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise CodesignError(f"{suffix or 'no suffix'}: not a recordings format", key=key, file=None if key else str(path),
                            fix="name it " + " or ".join(f"FILE{s} ({f.name})" for s, f in FORMATS.items()))
    return FORMATS[suffix]


def save_trajectories(path: str | Path, trajectories: Trajectories) -> None:
    """Write ``trajectories`` in the format that ``path``'s suffix names."""
    path = Path(path)
    chosen = recordings_format(path, key="-o")
    path.parent.mkdir(parents=True, exist_ok=True)
    chosen.write(path, trajectories)


def load_trajectories(path: str | Path) -> Trajectories:
    """Read and check a recordings file; a one-line error names the file, the key and the fix."""
    return _load(str(Path(path).resolve()), Path(path).stat().st_mtime_ns if Path(path).is_file() else 0, str(path))


@functools.lru_cache(maxsize=4)
def _load(resolved: str, mtime: int, shown: str) -> Trajectories:
    if not mtime:
        raise CodesignError("recordings file not found", file=shown, fix="give the path of a file that codesign "
                            f"record wrote, or one in the same layout ({', '.join(FORMATS)})")
    chosen = recordings_format(shown)

    def error(key: str | None, message: str, fix: str, trajectory: int = 0) -> CodesignError:
        return CodesignError(message, file=shown, key=key and chosen.locate(key, trajectory), fix=fix)

    trajectories = chosen.read(resolved, error)
    for key in ("dt", "every", "stimulus", "activity_var"):
        if key not in trajectories.info:
            raise error(f"info.{key}", "missing", "add it to info (see codesign.models.recordings)")
    for key in ("dt", "every"):
        if isinstance(trajectories.info[key], bool) or not isinstance(trajectories.info[key], (int, float)):
            raise error(f"info.{key}", f"{trajectories.info[key]!r} is not a number of seconds", "give it in seconds")
    _check_shapes(trajectories, error)
    return trajectories


def parse_info(text: str, error: ErrorAt) -> dict[str, Any]:
    """A recordings file's ``info`` (JSON text)."""
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error("info", f"not JSON: {exc}", "store info as JSON text") from None
    if not isinstance(info, dict):
        raise error("info", f"JSON {type(info).__name__}, not an object", "store info as a JSON object {...}")
    return info


def _check_shapes(t: Trajectories, error: ErrorAt) -> None:
    n = t.inputs.shape[0] if t.inputs.ndim == 3 else 0
    if t.inputs.ndim != 3 or n < 1:
        raise error("inputs", f"shape {t.inputs.shape}, expected (trajectories, steps, columns)", "store one series per trajectory")
    if t.activity.ndim != 3 or t.activity.shape[0] != n:
        raise error("activity", f"shape {t.activity.shape}, expected ({n}, samples, units)",
                    "store one sampled series per trajectory")
    if t.recorded.shape != (t.activity.shape[2],) or not t.recorded.any():
        raise error("recorded", f"shape {t.recorded.shape} with {int(t.recorded.sum())} recorded units",
                    f"give one flag per unit ({t.activity.shape[2]}), at least one true")
    bad = np.flatnonzero(~np.isfinite(t.activity[:, :, t.recorded]).all(axis=(1, 2)))
    if bad.size:
        raise error("activity", f"NaN or infinite values in a recorded unit (trajectory {bad[0]})",
                    "mark the unit as not recorded, or drop the trajectory", trajectory=bad[0])
    bad = np.flatnonzero(~np.isfinite(t.inputs).all(axis=(1, 2)))
    if bad.size:
        raise error("inputs", f"NaN or infinite values (trajectory {bad[0]})", "inputs must be known at every step",
                    trajectory=bad[0])
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

