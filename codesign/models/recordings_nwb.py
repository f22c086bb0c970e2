"""Recordings in NWB (Neurodata Without Borders, through pynwb): the layout a lab's own data can be put in.

One NWB file holds every trajectory (a learning episode: the network from its initial weights, driven by
its inputs). ``K`` is the trajectory's number, 0, 1, ... without gaps; every series starts at t = 0 (the
start of its trajectory) and is sampled regularly, by ``rate`` or by ``timestamps``. Required:

- ``stimulus/inputs_K``: a TimeSeries (steps, columns) of the model's stimulus, one row per time step;
  its sampling interval is the model's ``dt``;
- ``acquisition/activity_K``: a TimeSeries (samples, units) of the recorded variable, one column per unit
  of the model's group (a 1-D series is one unit), NaN in the units not recorded; its sampling interval
  is ``every``, the same for every trajectory;
- ``processing/codesign/recorded_units``: a DynamicTable with one row per unit (per column of the
  activity) and a boolean column ``recorded``, true for the units that were recorded;
- ``processing/codesign/initial__SYNAPSE__VAR_K``: a TimeSeries of one sample at t = 0, shape
  (1, n_post, n_pre): the values of ``SYNAPSE.VAR`` (e.g. ``initial__plastic__w_0`` for ``plastic.w``)
  the simulation of trajectory K starts from;
- ``scratch/codesign_info``: JSON text (``nwbfile.add_scratch(text, name="codesign_info", ...)``) with at
  least ``stimulus`` (the model's stimulus the inputs replace) and ``activity_var`` (``GROUP.VAR``), and
  ``model`` unless ``codesign infer --model`` names it. ``dt`` and ``every`` come from the series (if info
  gives them too, they must agree).

Optional: ``acquisition/weights_K``, a TimeSeries (samples, n_post, n_pre) of ``weights_var`` sampled with
the activity, for every trajectory or none; in info, ``weights_var``, ``constants`` (of the model),
``fit`` and ``probability_var`` (the loss that fits the activity: ``trajectory_fit`` by default,
``choice_likelihood`` with the choice probability for recorded choices) and, for synthetic recordings,
``teacher``, ``noise``, ``recorded_fraction``, ``seed`` (:mod:`codesign.models.recordings`).
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from codesign.models.recordings import FORMATS, ErrorAt, RecordingsFormat, Trajectories, parse_info

__all__ = ["read", "write", "locate"]

MODULE = "codesign"
MASK = "recorded_units"
INFO = "codesign_info"
_INITIAL = "initial__"
#: Where each canonical key of :mod:`codesign.models.recordings` is in the NWB file, for trajectory ``k``.
_PLACES = {"inputs": "stimulus/inputs_{k}", "activity": "acquisition/activity_{k}",
           "weights": "acquisition/weights_{k}", "recorded": f"processing/{MODULE}/{MASK}",
           "info.every": "acquisition/activity_{k}", "info": f"scratch/{INFO}"}
_LAYOUT = "see the layout in codesign.models.recordings_nwb"
_RELATIVE = 1e-9


def locate(key: str, k: int) -> str:
    """The NWB object behind a canonical key (``activity`` of trajectory 2: ``acquisition/activity_2``)."""
    if key.startswith(_INITIAL):
        return f"processing/{MODULE}/{key}_{k}"
    head, dot, rest = key.partition(".")
    place = _PLACES.get(key) or (_PLACES[head] + dot + rest if head in _PLACES else key)
    return place.format(k=k)


def write(path: Path, t: Trajectories) -> None:
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.core import DynamicTable, VectorData

    info = t.info
    nwb = NWBFile(session_description=f"codesign recordings: {t.count} trajectories of {info.get('model', 'a model')}",
                  identifier=str(uuid.uuid4()), session_start_time=datetime.datetime.now(datetime.timezone.utc))

    def series(name: str, data: np.ndarray, interval: float, what: str) -> Any:
        return TimeSeries(name=name, data=data, rate=1 / interval, starting_time=0.0, unit="n.a.", description=what)

    module = nwb.create_processing_module(MODULE, "what codesign needs besides the series: the recorded units "
                                                  "and the initial values of each trajectory")
    module.add(DynamicTable(name=MASK, description=f"one row per unit of {info.get('activity_var')}", columns=[
        VectorData(name="recorded", description="whether the unit was recorded", data=t.recorded.tolist())]))
    for k in range(t.count):
        nwb.add_stimulus(series(f"inputs_{k}", t.inputs[k], t.dt, f"the model's stimulus {info.get('stimulus')}"))
        nwb.add_acquisition(series(f"activity_{k}", t.activity[k], t.every,
                                   f"{info.get('activity_var')}, NaN in the units not recorded"))
        if t.weights is not None:
            nwb.add_acquisition(series(f"weights_{k}", t.weights[k], t.every, f"{info.get('weights_var')}"))
        for name, value in t.initial.items():
            module.add(TimeSeries(name=f"{_INITIAL}{name.replace('.', '__')}_{k}", data=value[k][None],
                                  timestamps=[0.0], unit="n.a.", description=f"{name} at t = 0"))
    nwb.add_scratch(json.dumps(info), name=INFO, description="codesign's recordings info (JSON)")
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def read(path: str, error: ErrorAt) -> Trajectories:
    io, nwb = _opened(path, error)
    with io:
        inputs = _numbered(nwb.stimulus, "inputs", None, error)
        count = len(inputs)
        activity = _numbered(nwb.acquisition, "activity", count, error)
        weights = _numbered(nwb.acquisition, "weights", count, error, optional=True)
        info = _info(nwb, error)
        info.update(dt=_agreeing(info, "dt", _interval(inputs, error), error),
                    every=_agreeing(info, "every", _interval(activity + weights, error), error))
        module = nwb.processing.get(MODULE)
        return Trajectories(inputs=_stack(inputs, "inputs", error, columns=True),
                            activity=_stack(activity, "activity", error, columns=True),
                            recorded=_mask(module, error), initial=_initial(module, count, error), info=info,
                            weights=_stack(weights, "weights", error) if weights else None)


def _opened(path: str, error: ErrorAt) -> tuple[Any, Any]:
    """The open NWBHDF5IO and the NWBFile it read."""
    from pynwb import NWBHDF5IO

    io = None
    try:
        io = NWBHDF5IO(path, "r")
        return io, io.read()
    except Exception as exc:  # h5py, hdmf and pynwb raise OSError, TypeError, ValueError, ... for a foreign file
        if io is not None:
            io.close()
        raise error(None, f"not an NWB file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                    f"write it with pynwb ({_LAYOUT})") from None


def _numbered(container: Any, prefix: str, count: int | None, error: ErrorAt, optional: bool = False) -> list[Any]:
    """The TimeSeries ``PREFIX_0``, ``PREFIX_1``, ... of ``container``: ``count`` of them (any number when
    None, at least one); none at all when optional."""
    from pynwb import TimeSeries

    found = {int(m.group(1)): obj for name, obj in container.items() if (m := re.fullmatch(rf"{prefix}_(\d+)", name))}
    if optional and not found:
        return []
    wanted = range(count if count is not None else max(found, default=-1) + 1)
    missing = [k for k in wanted if k not in found] or ([0] if not found else [])
    if missing:
        raise error(prefix, "missing TimeSeries" + (f" ({len(wanted)} trajectories)" if count else ""),
                    f"add one TimeSeries per trajectory, numbered from 0 ({_LAYOUT})", trajectory=missing[0])
    extra = sorted(set(found) - set(wanted))
    if extra:
        raise error(prefix, f"trajectory {extra[0]} has no stimulus/inputs_{extra[0]}",
                    "give every trajectory its inputs, or drop the series", trajectory=extra[0])
    for k in wanted:
        if not isinstance(found[k], TimeSeries):
            raise error(prefix, f"a {type(found[k]).__name__}, not a TimeSeries", f"store a TimeSeries ({_LAYOUT})", trajectory=k)
    return [found[k] for k in wanted]


def _interval(series: list[Any], error: ErrorAt) -> float:
    """The sampling interval the series share; each starts at t = 0."""
    intervals = []
    for s in series:
        where, _, number = s.name.rpartition("_")
        k = int(number)
        if s.rate is not None:
            start, interval = s.starting_time or 0.0, 1 / s.rate
        else:
            times = np.asarray(s.timestamps[:], dtype=float)
            steps = np.diff(times)
            start, interval = (times[0] if times.size else 0.0), (steps[0] if steps.size else np.nan)
            if not steps.size or not np.allclose(steps, interval, rtol=1e-6, atol=0):
                raise error(where, "timestamps not regularly spaced", "sample at a fixed interval", trajectory=k)
        if abs(start) > 1e-9:
            raise error(where, f"starts at {start:g} s", "start each trajectory's series at t = 0", trajectory=k)
        if intervals and abs(interval - intervals[0]) > _RELATIVE * intervals[0]:
            raise error(where, f"sampled every {interval:g} s, {series[0].name} every {intervals[0]:g} s",
                        "sample every trajectory's series alike", trajectory=k)
        intervals.append(interval)
    return intervals[0]


def _agreeing(info: dict[str, Any], key: str, interval: float, error: ErrorAt) -> Any:
    """info's ``key`` where it agrees with the series' interval (kept as given), else the interval."""
    given = info.get(key)
    if given is None:
        return float(interval)
    if not isinstance(given, (int, float)) or abs(given - interval) > _RELATIVE * interval:
        raise error(f"scratch/{INFO}.{key}", f"{given!r} s, but the series are sampled every {interval:g} s",
                    f"drop {key} from info, or make it agree")
    return given


def _stack(series: list[Any], key: str, error: ErrorAt, columns: bool = False) -> np.ndarray:
    arrays = [np.asarray(s.data[:], dtype=float) for s in series]
    if columns:  # a 1-D series is one column
        arrays = [a.reshape(len(a), 1) if a.ndim == 1 else a for a in arrays]
    for k, a in enumerate(arrays):
        if a.shape != arrays[0].shape:
            raise error(key, f"shape {a.shape}, {series[0].name}'s is {arrays[0].shape}",
                        "record every trajectory for as long, with the same units", trajectory=k)
    return np.stack(arrays)


def _info(nwb: Any, error: ErrorAt) -> dict[str, Any]:
    if INFO not in nwb.scratch:
        raise error("info", "missing", f"add the JSON info: nwbfile.add_scratch(json.dumps(info), name={INFO!r}, "
                                       f"description=...) ({_LAYOUT})")
    text = nwb.get_scratch(INFO)
    text = text.item() if isinstance(text, np.ndarray) else text
    return parse_info(text.decode() if isinstance(text, bytes) else str(text), error)


def _mask(module: Any, error: ErrorAt) -> np.ndarray:
    table = module.data_interfaces.get(MASK) if module is not None else None
    if table is None or "recorded" not in getattr(table, "colnames", ()):
        raise error("recorded", "missing" if table is None else "no column 'recorded'",
                    f"add a DynamicTable {MASK!r} with a boolean column 'recorded', one row per unit, to the "
                    f"processing module {MODULE!r} ({_LAYOUT})")
    return np.asarray(table["recorded"].data[:], dtype=bool)


def _initial(module: Any, count: int, error: ErrorAt) -> dict[str, np.ndarray]:
    """Initial values per ``SYNAPSE.VAR``, trajectory first; none when the module holds none."""
    names = {m.group(1) for name in (module.data_interfaces if module is not None else ())
             if (m := re.fullmatch(rf"{_INITIAL}(\w+?)_(\d+)", name))}
    initial = {}
    for name in sorted(names):
        series = _numbered(module.data_interfaces, _INITIAL + name, count, error)
        values = _stack(series, _INITIAL + name, error)
        if values.shape[1] != 1:
            raise error(_INITIAL + name, f"{values.shape[1]} samples, expected one at t = 0",
                        "store the initial values as one sample, shape (1, n_post, n_pre)")
        initial[name.replace("__", ".")] = values[:, 0]
    return initial


# pynwb is imported on first use, in the functions above: it takes a second or two to import.
FORMATS[".nwb"] = RecordingsFormat("NWB", read, write, locate)
