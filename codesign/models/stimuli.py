"""The stimulus library: inputs a model draws from the seed, one draw per candidate's input draw.

A stimulus kind turns the seed and the draws' constants into what a run needs: series for a
``TimedArray`` (the stimulus's name, used in the model's equations as ``NAME(t, i)``), spike trains for
a group of ``kind: spikes``, initial values of synapse variables, and facts its loss reads (the
covariance and principal components of Gaussian inputs). Every draw of a seed is the same whatever
the candidates (common random numbers), and held-out seeds need no new build: all of it goes in per run.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from codesign.registry import Registry
from codesign.schema import Where

__all__ = ["StimulusDraw", "Stimulus", "STIMULI", "stimulus_kind", "make_stimuli", "GaussianStimulus", "PoissonStimulus",
           "RecordedStimulus", "TwoChoiceStimulus"]


@dataclasses.dataclass
class StimulusDraw:
    """One seed's draws of one stimulus, draw-major (draw r first)."""

    #: TimedArray values, shape (steps, draws x columns): column ``r * columns + c`` is column c of draw r.
    series: np.ndarray | None = None
    #: Spike trains (indices, times in s); input ``r * size + i`` is input i of draw r.
    spikes: tuple[np.ndarray, np.ndarray] | None = None
    #: Initial values of synapse variables ("synapse.variable"): shape (draws, n_post, n_pre).
    initial: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    #: Facts for the loss, each with the draws as first axis.
    facts: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class Stimulus:
    """A stimulus kind: ``Params`` (its keys in a model file) and :meth:`draw`."""

    kind: ClassVar[str]
    Params: ClassVar[type]

    def __init__(self, name: str, params: Any, where: Where) -> None:
        self.name, self.params, self.where = name, params, where

    #: Whether it feeds a TimedArray (``NAME(t, i)`` in equations) or a group of spike inputs.
    feeds: ClassVar[str] = "timed"

    def columns(self, model: Any) -> int:
        """Columns per draw of its TimedArray."""
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, draws: Sequence[Mapping[str, Any]], model: Any,
             shapes: Mapping[str, tuple[int, int]]) -> StimulusDraw:
        """All draws of a seed; ``draws[r]`` holds draw r's constants, ``shapes`` the (n_post, n_pre)
        of each synapse the stimulus initialises."""
        raise NotImplementedError

    def expected_spikes(self, draws: Sequence[Mapping[str, Any]], model: Any) -> float:
        return 0.0

    def recording(self, model: Any) -> dict[str, Any]:
        """What a recording of a model fed by this stimulus holds and which loss fits it, where the
        stimulus decides (keys of :func:`codesign.models.recorder.recording_model`); empty: the model's
        rule does (the variable its ``y`` is bound to, fitted by ``trajectory_fit``)."""
        return {}

    def as_recorded(self, inputs: np.ndarray, activity: np.ndarray) -> np.ndarray:
        """The inputs a recordings file keeps (trajectories, steps, columns), given the recorded activity."""
        return inputs


@dataclasses.dataclass(frozen=True)
class _Spectrum:
    #: Range of the top eigenvalue, spread over the draws (log scale, stratified).
    top: tuple[float, float] = dataclasses.field(default=(0.5, 2.0), metadata={"min": 1e-6})
    #: Ratio of successive eigenvalues (the first ``gap_after`` when a gap is given).
    decay: float = dataclasses.field(default=0.5, metadata={"min": 1e-3, "max": 1.0})
    #: With ``gap_after: k``: eigenvalue k + 1 is ``gap`` times eigenvalue k, then ``rest_decay`` per step.
    gap_after: int | None = dataclasses.field(default=None, metadata={"min": 1})
    gap: float = dataclasses.field(default=0.25, metadata={"min": 1e-3, "max": 0.95})
    rest_decay: float = dataclasses.field(default=0.7, metadata={"min": 1e-3, "max": 1.0})

    def validate(self, where: Where) -> None:
        if self.top[0] > self.top[1]:
            raise where.child("top").error(f"range is reversed: {list(self.top)}", fix="write [low, high]")

    def eigenvalues(self, top: float, d: int) -> np.ndarray:
        if self.gap_after is None:
            return top * self.decay ** np.arange(d)
        k = self.gap_after
        upper = top * self.decay ** np.arange(k)
        return np.concatenate([upper, upper[-1] * self.gap * self.rest_decay ** np.arange(d - k)])


@dataclasses.dataclass(frozen=True)
class GaussianParams:
    size: int = dataclasses.field(metadata={"min": 1, "max": 100000})
    #: ``random`` (a covariance per draw) or an explicit symmetric positive-definite matrix.
    covariance: str | list[list[float]] = "random"
    spectrum: _Spectrum = _Spectrum()
    #: Initial values of synapse variables drawn per draw after the series: "synapse.variable" ->
    #: standard deviation of a zero-mean normal (matrix n_post x n_pre).
    initial: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Principal components the loss needs unique (the top ``unique`` eigenvalues distinct).
    unique: int = dataclasses.field(default=1, metadata={"min": 1})

    def validate(self, where: Where) -> None:
        from codesign.models.gaussian import check_covariance

        if self.unique > self.size:
            raise where.child("unique").error(f"{self.unique} unique components of {self.size} inputs",
                                              fix="ask for at most size components")
        gap_after = self.spectrum.gap_after
        if gap_after is not None and gap_after >= self.size:
            raise where.child("spectrum").child("gap_after").error(
                f"a gap after eigenvalue {gap_after} of {self.size} inputs leaves no eigenvalue below it",
                fix="make gap_after smaller than size")
        check_covariance(self.covariance, self.size, self.unique, where)


class GaussianStimulus(Stimulus):
    """Zero-mean Gaussian input vectors, a fresh sample per time step, with a covariance per draw.

    Facts: ``cov`` (draws, d, d), ``eigenvalues`` (draws, d) descending, ``eigenvectors`` (draws, d, d)
    in the same order (column k is component k).
    """

    kind = "gaussian"
    Params = GaussianParams

    def columns(self, model: Any) -> int:
        return self.params.size

    def draw(self, rng, draws, model, shapes) -> StimulusDraw:
        p = self.params
        d, steps = p.size, int(round(model.duration_s / model.dt_s))
        xs, covs, values_, vectors_ = [], [], [], []
        initial: dict[str, list[np.ndarray]] = {name: [] for name in p.initial}
        low, high = p.spectrum.top
        for r in range(len(draws)):
            if p.covariance == "random":
                rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
                # Stratified over the range (log scale), so that every draw set spans the input scales
                # and no rule can fit one scale by chance.
                top = low * (high / low) ** ((r + rng.uniform()) / len(draws))
                cov = (rotation * p.spectrum.eigenvalues(top, d)) @ rotation.T
            else:
                cov = np.asarray(p.covariance, dtype=float)
            values, vectors = np.linalg.eigh(cov)
            order = np.argsort(values)[::-1]
            values_.append(values[order])
            vectors_.append(vectors[:, order])
            covs.append(cov)
            xs.append(rng.standard_normal((steps, d)) @ np.linalg.cholesky(cov).T)
            for name, std in p.initial.items():
                initial[name].append(rng.normal(0.0, std, shapes[name]))
        series = np.stack(xs).transpose(1, 0, 2).reshape(steps, len(draws) * d)
        return StimulusDraw(series=series, initial={k: np.stack(v) for k, v in initial.items()},
                            facts={"cov": np.stack(covs), "eigenvalues": np.stack(values_),
                                   "eigenvectors": np.stack(vectors_)})


@dataclasses.dataclass(frozen=True)
class PoissonParams:
    #: The group of ``kind: spikes`` it feeds.
    group: str
    #: Rate of input i (an expression of the constants and ``i``, in Hz).
    rate: str

    def validate(self, where: Where) -> None:
        pass


#: Standard deviations above the mean number of input spikes a network makes room for.
SPIKE_MARGIN_SD = 10


class PoissonStimulus(Stimulus):
    """Poisson spike trains, at most one spike per input and time step, on the time grid."""

    kind = "poisson"
    Params = PoissonParams
    feeds = "spikes"

    def rates(self, constants: Mapping[str, Any], model: Any) -> np.ndarray:
        from brian2 import Hz

        size = model.integer(model.groups[self.params.group].size, model.where.child("groups").child(self.params.group))
        key = self.where.child("rate")
        try:
            from codesign.expressions import evaluate

            rate = evaluate(self.params.rate, {**constants, "i": np.arange(size)})
            hz = np.broadcast_to(np.asarray(rate / Hz, dtype=float), (size,))
        except Exception as exc:
            raise key.error(f"cannot evaluate {self.params.rate!r} as a rate in Hz per input: {exc}",
                            fix="write an expression of i and the constants with units of Hz") from None
        if not np.all(np.isfinite(hz)) or hz.min() < 0:
            raise key.error("rates must be finite and at least 0 Hz", fix="check the rate expression")
        if hz.max() * model.dt_s > 1.0:
            raise key.error(f"a rate of {hz.max():g} Hz is more than one spike per time step of {model.dt_s * 1e3:g} ms",
                            fix=f"keep rates below {1.0 / model.dt_s:g} Hz, or shorten dt")
        return np.array(hz)

    def expected_spikes(self, draws, model) -> float:
        return float(sum(self.rates(c, model).sum() for c in draws) * model.duration_s)

    def draw(self, rng, draws, model, shapes) -> StimulusDraw:
        dt, duration = model.dt_s, model.duration_s
        steps = int(round(duration / dt))
        indices, times = [], []
        offset = 0
        for constants in draws:
            rates = self.rates(constants, model)
            counts = rng.poisson(rates * duration)
            for i in np.flatnonzero(counts):
                step = np.unique(rng.integers(0, steps, counts[i]))
                indices.append(np.full(len(step), offset + i))
                times.append(step * dt)
            offset += len(rates)
        if not indices:
            return StimulusDraw(spikes=(np.zeros(0, dtype=int), np.zeros(0)))
        return StimulusDraw(spikes=(np.concatenate(indices), np.concatenate(times)))

    def capacity(self, draws, model) -> int:
        """How many spikes the network holds for any seed: mean + 10 sd + 10 (exceeded with p < 1e-20)."""
        lam = self.expected_spikes(draws, model)
        return max(1, math.ceil(lam + SPIKE_MARGIN_SD * math.sqrt(lam) + 10))


@dataclasses.dataclass(frozen=True)
class RecordedParams:
    #: A recordings file (:mod:`codesign.models.recordings`) whose inputs this stimulus plays.
    file: str
    #: Its trajectories ``first`` .. ``first + draws - 1`` are the model's draws.
    first: int = dataclasses.field(default=0, metadata={"min": 0})
    #: The synapse variables ("synapse.variable") it sets to each trajectory's recorded initial values.
    initial: list[str] = dataclasses.field(default_factory=list)

    def validate(self, where: Where) -> None:
        pass


class RecordedStimulus(Stimulus):
    """The inputs of a recordings file, one trajectory per draw, whatever the seed: the recorded
    trajectories are the data. Initial values of synapse variables are the recorded ones.

    Facts: ``activity`` (draws, samples, units), ``recorded`` (draws, units) and, when recorded,
    ``weights`` (draws, samples, n_post, n_pre).
    """

    kind = "recorded"
    Params = RecordedParams

    def trajectories(self, model: Any):
        from codesign.models.recordings import load_trajectories

        recorded = load_trajectories(self.params.file)
        available = recorded.count - self.params.first
        if available < model.draws:
            raise self.where.child("first").error(
                f"{self.params.file} holds {recorded.count} trajectories; from {self.params.first} on there are "
                f"{max(available, 0)}, and the model takes {model.draws} draws", fix="lower draws or first")
        steps = int(round(model.duration_s / model.dt_s))
        if abs(recorded.dt - model.dt_s) > 1e-12 or recorded.inputs.shape[1] != steps:
            raise self.where.child("file").error(
                f"{recorded.inputs.shape[1]} steps of {recorded.dt:g} s recorded, the model runs {steps} of "
                f"{model.dt_s:g} s", fix="set the model's dt and duration to the recordings' (record with the same model)")
        return recorded.block(self.params.first, model.draws)

    def columns(self, model: Any) -> int:
        return self.trajectories(model).inputs.shape[2]

    def draw(self, rng, draws, model, shapes) -> StimulusDraw:
        recorded = self.trajectories(model)
        for name, shape in shapes.items():
            if name not in recorded.initial or recorded.initial[name].shape[1:] != shape:
                raise self.where.child("file").error(f"no initial values of {name} of shape {shape} recorded",
                                                     fix="record with the same model")
        series = recorded.inputs.transpose(1, 0, 2).reshape(recorded.inputs.shape[1], -1)
        facts = {"activity": recorded.activity,
                 "recorded": np.broadcast_to(recorded.recorded, (recorded.count, len(recorded.recorded)))}
        if recorded.weights is not None:
            facts["weights"] = recorded.weights
        return StimulusDraw(series=series, initial={name: recorded.initial[name] for name in shapes}, facts=facts)


@dataclasses.dataclass(frozen=True)
class TwoChoiceParams:
    #: Inputs per trial (Kenyon cells): the columns 0 .. size - 1; column ``size`` is a uniform number the
    #: model's choice compares with its probability, column ``size + 1`` the reward a choice would get.
    size: int = dataclasses.field(metadata={"min": 1, "max": 100000})
    #: The model's variables (``GROUP.VAR``): the choice made each trial (0 or 1), and its probability.
    choice: str
    probability: str
    #: Odours; each trial presents one at random, as a pattern uniform in [0, 1) per input and draw.
    odors: int = dataclasses.field(default=2, metadata={"min": 2})
    #: Standard deviation of the Gaussian trial-to-trial variability added to the pattern.
    jitter: float = dataclasses.field(default=0.1, metadata={"min": 0.0})
    #: Range of each odour's reward probability, spread over the draws (stratified, as Gaussian spectra).
    reward: tuple[float, float] = dataclasses.field(default=(0.0, 1.0), metadata={"min": 0.0, "max": 1.0})
    #: Initial values of synapse variables: "synapse.variable" -> standard deviation of a zero-mean normal.
    initial: dict[str, float] = dataclasses.field(default_factory=dict)

    def validate(self, where: Where) -> None:
        if self.reward[0] > self.reward[1]:
            raise where.child("reward").error(f"range is reversed: {list(self.reward)}", fix="write [low, high]")
        for key in ("choice", "probability"):
            owner, dot, var = getattr(self, key).partition(".")
            if not (dot and owner.isidentifier() and var.isidentifier()):
                raise where.child(key).error(f"{getattr(self, key)!r} is not GROUP.VAR", fix="name a variable of a group")


class TwoChoiceStimulus(Stimulus):
    """A probabilistic reward-learning task (Mehta et al. 2024, after fly experiments): each trial one of
    ``odors`` odours, a choice to accept it drawn with the model's probability, and a reward with the
    odour's probability if accepted. Recordings keep the behaviour only: the choices (the activity),
    and the inputs with the uniform column set to force each recorded choice (-1: accepted, 2: not, for
    a probability in [0, 1]) and the reward column set to the reward received. A candidate fitted to them
    learns from the animal's own choices and rewards, and the loss is their likelihood.

    Facts: ``odor`` (draws, steps), ``reward_probability`` (draws, odors).
    """

    kind = "two_choice"
    Params = TwoChoiceParams

    def columns(self, model: Any) -> int:
        return self.params.size + 2

    def draw(self, rng, draws, model, shapes) -> StimulusDraw:
        p = self.params
        steps, n = int(round(model.duration_s / model.dt_s)), len(draws)
        series = np.zeros((n, steps, p.size + 2))
        odors, chances = np.zeros((n, steps), dtype=int), np.zeros((n, p.odors))
        initial: dict[str, list[np.ndarray]] = {name: [] for name in p.initial}
        low, high = p.reward
        for r in range(n):
            patterns = rng.uniform(0.0, 1.0, (p.odors, p.size))
            odors[r] = rng.integers(0, p.odors, steps)
            chances[r] = low + (high - low) * (rng.permutation(p.odors) + rng.uniform(size=p.odors)) / p.odors
            series[r, :, :p.size] = patterns[odors[r]] + p.jitter * rng.standard_normal((steps, p.size))
            series[r, :, p.size] = rng.uniform(size=steps)
            series[r, :, p.size + 1] = rng.uniform(size=steps) < chances[r][odors[r]]
            for name, std in p.initial.items():
                initial[name].append(rng.normal(0.0, std, shapes[name]))
        return StimulusDraw(series=series.transpose(1, 0, 2).reshape(steps, -1),
                            initial={k: np.stack(v) for k, v in initial.items()},
                            facts={"odor": odors, "reward_probability": chances})

    def recording(self, model: Any) -> dict[str, Any]:
        return {"activity": self.params.choice, "probability": self.params.probability, "every": model.dt_s,
                "fit": "choice_likelihood", "noiseless": "choices are recorded as they were made"}

    def as_recorded(self, inputs: np.ndarray, activity: np.ndarray) -> np.ndarray:
        size, chosen = self.params.size, activity[:, :inputs.shape[1], 0] > 0.5
        out = inputs.copy()
        out[:, :, size] = np.where(chosen, -1.0, 2.0)
        out[:, :, size + 1] *= chosen
        return out


#: Every stimulus kind by the name used in model files (``stimuli: {NAME: {kind: ...}}``).
STIMULI: Registry[type[Stimulus]] = Registry("stimulus kind")
for _cls in (GaussianStimulus, PoissonStimulus, RecordedStimulus, TwoChoiceStimulus):
    STIMULI.register(_cls.kind, _cls)


def stimulus_kind(kind: str, **where: str | None) -> type[Stimulus]:
    return STIMULI.get_named(kind, **where)


def make_stimuli(model: Any) -> dict[str, Stimulus]:
    """The stimuli of ``model``, each made from its checked parameters (constants resolved)."""
    from codesign.models.losses.base import resolve_values
    from codesign.schema import build

    out = {}
    for name, stim in model.stimuli.items():
        where = model.where.child("stimuli").child(name)
        cls = stimulus_kind(stim.kind, file=model.file, key=where.key + ".kind")
        out[name] = cls(name, build(cls.Params, resolve_values(stim.params, model, where, cls.Params), where), where)
    return out

