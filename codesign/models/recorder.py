"""Making recordings (``codesign record``) and models that fit them (``codesign infer``): a model whose loss
fits a sampled variable (``trajectory_fit``, or the loss its stimulus names: ``choice_likelihood`` for a
choice task), playing a recordings file's trajectories, or a teacher rule's run on the model's own draws
with measurement noise and a recorded fraction (:mod:`codesign.models.recordings` holds the file format)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from codesign.models.recordings import Trajectories, load_trajectories

__all__ = ["Recorded", "record", "recording_model", "default_recorded", "timed_stimulus"]


def timed_stimulus(model: Any, where: Any) -> str:
    """The model's one stimulus that plays a series through a TimedArray: what recordings replace."""
    from codesign.models.stimuli import stimulus_kind

    timed = [name for name, s in model.stimuli.items() if stimulus_kind(s.kind).feeds == "timed"]
    if len(timed) != 1:
        raise where.error(f"model {model.name} has {len(timed)} stimuli that play a series ({', '.join(timed) or 'none'})",
                          fix="record and fit a model with exactly one, e.g. models/oja.yaml's gaussian stimulus")
    return timed[0]


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What a recording holds (variables ``GROUP.VAR`` / ``SYNAPSE.VAR``, sampled every ``every`` seconds)
    and the loss that fits a rule to it, with that loss's ``probability`` variable where it takes one."""

    activity: str
    weights: str | None
    every: float
    fit: str = "trajectory_fit"
    probability: str | None = None
    #: Why measurement noise does not apply to the activity (None: it does).
    noiseless: str | None = None

    def loss(self, stimulus: str) -> Any:
        from codesign.models.spec import LibrarySpec

        params = {"activity": self.activity, "weights": self.weights, "stimulus": stimulus, "every": self.every}
        return LibrarySpec(self.fit, {**params, **({"probability": self.probability} if self.probability else {})})


def recording_model(model: Any, recorded: Recorded, where: Any, file: str | None = None, first: int = 0,
                    count: int | None = None) -> Any:
    """``model`` that records what ``recorded`` says, its loss the one that fits it; with ``file``, its timed
    stimulus plays that recordings file's trajectories ``first`` .. ``first + count - 1`` (one per draw)
    from their recorded initial values."""
    from codesign.models.spec import LibrarySpec

    stimulus = timed_stimulus(model, where)
    stimuli = dict(model.stimuli)
    draws = model.draws if count is None else count
    if file is not None:
        initial = sorted(load_trajectories(file).initial)
        stimuli[stimulus] = LibrarySpec("recorded", {"file": str(file), "first": first, "initial": initial})
    return dataclasses.replace(model, stimuli=stimuli, loss=recorded.loss(stimulus), draws=draws, raw_draws=draws)


def record(model: Any, target: Any, candidate: Any, recorded: Recorded, *, trajectories: int, seed: int, noise: float,
           fraction: float, teacher: dict[str, Any]) -> Trajectories:
    """Synthetic recordings: ``candidate`` (the teacher) learning on ``trajectories`` input draws of
    ``seed``. Measurement noise of ``noise`` times each unit's standard deviation is added to the
    activity (drawn once, here), and a random ``fraction`` of the units is kept (at least one)."""
    from codesign.errors import CodesignError
    from codesign.models.task import ModelTask
    from codesign.schema import Where

    if not 0 < fraction <= 1:
        raise CodesignError(f"{fraction:g} is not a fraction of the units", key="--recorded-fraction",
                            fix="give a number above 0 and at most 1")
    if not 0 <= noise < float("inf"):
        raise CodesignError(f"noise {noise:g}", key="--noise", fix="give a finite number of at least 0")
    if noise and recorded.noiseless:
        raise CodesignError(f"noise {noise:g}: {recorded.noiseless}", key="--noise", fix="record with --noise 0")
    where = Where(model.file)
    recorder = recording_model(model, recorded, where, count=trajectories)
    task = ModelTask(recorder, target)
    recordings, inputs = task.recordings(candidate, seed)
    stimulus = recorder.loss.params["stimulus"]
    names = task.loss.records()
    clean = recordings.series[names[0]]
    if not np.all(np.isfinite(clean)):
        raise CodesignError("the teacher rule diverged: NaN or infinite activity", key="--rule",
                            fix="record a rule that stays bounded, or shorten the model's duration")
    rng = np.random.default_rng([seed, 7])
    units = clean.shape[2]
    kept = np.zeros(units, dtype=bool)
    kept[rng.choice(units, max(1, int(round(fraction * units))), replace=False)] = True
    spread = clean.reshape(-1, units).std(axis=0)
    activity_values = clean + noise * spread * rng.standard_normal(clean.shape)
    activity_values[:, :, ~kept] = np.nan
    series = inputs[stimulus].series
    played = task.stimuli[stimulus].as_recorded(series.reshape(len(series), trajectories, -1).transpose(1, 0, 2), clean)
    info = {"dt": recorder.dt_s, "every": recorded.every, "stimulus": stimulus, "activity_var": recorded.activity,
            "weights_var": recorded.weights, "fit": recorded.fit, "probability_var": recorded.probability,
            "model": model.file, "constants": model.raw_constants, "teacher": teacher, "noise": noise,
            "recorded_fraction": fraction, "seed": seed}
    return Trajectories(inputs=played, activity=activity_values, recorded=kept, initial=dict(inputs[stimulus].initial),
                        info=info, weights=None if recorded.weights is None else recordings.series[names[1]])


def default_recorded(model: Any, where: Any) -> dict[str, Any]:
    """What a recording of ``model`` holds by default (keys of :class:`Recorded`): what its timed stimulus
    says (a choice task: the choices), else the postsynaptic variable its one plastic synapse's rule is
    bound to (``y: y_post`` -> ``output.y``); and that synapse's weight."""
    from codesign.models.stimuli import make_stimuli

    found: dict[str, Any] = {}
    plastic = [(name, s) for name, s in model.synapses.items() if s.rule is not None]
    if len(plastic) == 1:
        name, synapse = plastic[0]
        found["weights"] = f"{name}.{synapse.rule.bind.get('w', 'w')}"
        post = synapse.rule.bind.get("y", "")
        if post.endswith("_post") and post[:-5].isidentifier():
            found["activity"] = f"{synapse.target}.{post[:-5]}"
    timed = [s for s in make_stimuli(model).values() if s.feeds == "timed"]
    if len(timed) == 1:
        found.update(timed[0].recording(model))
    if "activity" not in found or "weights" not in found:
        raise where.error(f"cannot tell which variable of model {model.name} to record",
                          fix="give --activity GROUP.VAR and --weights SYNAPSE.VAR")
    return found
