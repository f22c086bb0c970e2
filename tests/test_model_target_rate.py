"""models/target-rate.yaml: its Poisson inputs, its Brian2 network against the NumPy reference
(tests/references/target_rate.py), what Vogels' rule does, hardware number formats and event counts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from codesign.backends import clear_simulations
from codesign.errors import CodesignError
from codesign.hardware import load_target
from codesign.models import ModelTask, Recordings, load_model
from codesign.models.stimuli import PoissonStimulus
from tests.references.target_rate import TargetRateNetwork, reference_run
from codesign.rules.spike_trace import SPIKE_TERMS, SpikeTraceRule, vogels
from codesign.schema import Where

from tests.conftest import ROOT

#: A small network that still fires well above the target: 10x fewer inputs at 10x the rate.
SMALL = {"n_excitatory": 80, "n_inhibitory": 20, "rate_excitatory": "50*Hz", "rate_inhibitory": "100*Hz",
         "w_e": 0.05, "learn": "0.5*second", "measure": "0.5*second"}
KNOBS = ("weight_bits", "trace_bits", "rounding")


def rate_task(constants: dict, draws: int = 2, target: str = "cpu.yaml", knobs=(), **replace) -> ModelTask:
    model = load_model(ROOT / "models/target-rate.yaml").with_constants(constants, Where("test"), draws)
    hw = load_target(ROOT / "hw_targets" / target)
    return ModelTask(model, dataclasses.replace(hw, **replace) if replace else hw, searched_knobs=knobs)


def _random_rule(seed: int) -> SpikeTraceRule:
    rng = np.random.default_rng(seed)
    coefficients = {term: float(rng.uniform(-1.0, 1.0)) for term in SPIKE_TERMS}
    return SpikeTraceRule(coefficients, eta=0.02, tau_x_ms=float(rng.uniform(5, 40)),
                          tau_y_ms=float(rng.uniform(5, 40)), name="random")


def test_input_spikes_are_on_the_grid_one_per_input_and_step():
    task = rate_task(SMALL)
    indices, times = task.inputs(1)["poisson"].spikes
    steps = np.round(times / 1e-4)
    np.testing.assert_allclose(times, steps * 1e-4, rtol=0, atol=1e-12)
    assert indices.max() < 2 * 100
    assert len(set(zip(indices.tolist(), steps.tolist()))) == len(indices)
    # Rates per input as the model's expression says: 50 Hz excitatory, 100 Hz inhibitory, over 1 s.
    per_input = np.bincount(indices, minlength=200).reshape(2, 100)
    assert abs(per_input[:, :80].mean() - 50) < 3 and abs(per_input[:, 80:].mean() - 100) < 6


@pytest.mark.parametrize("target", ["cpu.yaml", "cpu-standalone.yaml"])
def test_brian2_matches_the_numpy_reference(target):
    """On the runtime and on the standalone build, whose input spikes come padded through run_args."""
    rules = [vogels(), SpikeTraceRule({}), _random_rule(3),
             # These two run into the clip: w_max (which silences the neuron) and 0.
             SpikeTraceRule({"pre_1": 1.0, "post_1": -0.5}, eta=0.05, tau_x_ms=7.0, tau_y_ms=45.0),
             SpikeTraceRule({"pre_1": -1.0, "post_x": 0.3}, eta=0.05, tau_x_ms=30.0, tau_y_ms=9.0)]
    clear_simulations()
    task = rate_task(SMALL, target=target)
    evaluations = task.evaluate(rules, seed=4)
    clear_simulations()
    network = TargetRateNetwork.from_model(task.model)
    counts, weights = reference_run(rules, network, task.inputs(4)["poisson"].spikes)
    assert counts.shape == (len(rules), 2)
    assert weights.shape == (len(rules), 2, 20)
    # The cases are not trivial: neurons fire, weights move (not without plasticity) and get clipped.
    assert (counts[[0, 1, 2, 4]] > 0).all()
    assert (weights[1] == 0.05).all()
    assert (weights[[0, 2, 3, 4]] != 0.05).all()
    assert (weights[3] == 1.0).any() and (weights[4] == 0.0).any()
    for k, evaluation in enumerate(evaluations):
        np.testing.assert_array_equal(np.asarray(evaluation.metrics["rates_hz"]), counts[k] / 0.5)
        # The reference repeats the float operations of Brian2's generated numpy code in the same
        # order (including the order of the additions into ge and gi), so it agrees to the last bit;
        # C++ leaves room for another libm exp.
        rtol = 1e-12 if target == "cpu.yaml" else 1e-9
        np.testing.assert_allclose(evaluation.arrays["weights"], weights[k], rtol=rtol, atol=rtol * 1e-3)


def _losses_and_weights(task: ModelTask, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stochastic-rounding candidate and a float one, so that the seed of rand() matters too."""
    knobs = [{"weight_bits": 2, "trace_bits": 4, "rounding": "stochastic"},
             {"weight_bits": None, "trace_bits": None, "rounding": "nearest"}]
    evaluations = task.evaluate([vogels(eta=0.05), _random_rule(7)], seed=seed, knobs=knobs)
    return np.array([e.loss for e in evaluations]), np.array([e.arrays["weights"] for e in evaluations])


def test_one_standalone_build_serves_every_seed(tmp_path, monkeypatch):
    """Input spikes and the seed of rand() are given per run: a held-out seed compiles nothing, and
    gives what a build made for it gives."""
    from brian2.devices.cpp_standalone.device import CPPStandaloneDevice

    builds = []
    original = CPPStandaloneDevice.build
    monkeypatch.setattr(CPPStandaloneDevice, "build", lambda *a, **k: builds.append(1) or original(*a, **k))
    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path / "first"))
    clear_simulations()
    study_loss, study_w = _losses_and_weights(rate_task(SMALL, target="cpu-standalone.yaml", knobs=KNOBS), seed=3)
    held_loss, held_w = _losses_and_weights(rate_task(SMALL, target="cpu-standalone.yaml", knobs=KNOBS), seed=5)
    assert len(builds) == 1
    assert len(list((tmp_path / "first" / "cpp_standalone").glob("*/main"))) == 1
    assert not np.array_equal(study_loss, held_loss) and not np.array_equal(study_w, held_w)

    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path / "fresh"))
    clear_simulations()
    fresh_loss, fresh_w = _losses_and_weights(rate_task(SMALL, target="cpu-standalone.yaml", knobs=KNOBS), seed=5)
    clear_simulations()
    assert len(builds) == 2
    np.testing.assert_array_equal(held_loss, fresh_loss)
    np.testing.assert_array_equal(held_w, fresh_w)


def test_the_spike_capacity_holds_the_draws_and_an_overflow_is_one_line(monkeypatch):
    task = rate_task(SMALL)
    stimulus = task.stimuli["poisson"]
    capacity = stimulus.capacity(task.draw_constants(task.conditions), task.model)
    counts = [len(task.inputs(seed)["poisson"].spikes[0]) for seed in range(20)]
    assert max(counts) <= capacity < 1.2 * np.mean(counts)
    monkeypatch.setattr(PoissonStimulus, "capacity", lambda self, draws, model: min(counts) - 1)
    with pytest.raises(CodesignError) as caught:
        rate_task(SMALL).evaluate([vogels()], seed=0)
    assert "input seed 0 draws" in caught.value.one_line() and "\n" not in caught.value.one_line()


@pytest.fixture(scope="module")
def standalone_rates() -> list[list[float]]:
    """The model's network (800 + 200 inputs) learning 10 s and measured 5 s, on 4 draws."""
    task = rate_task({"learn": "10*second", "measure": "5*second"}, draws=4, target="cpu-standalone.yaml")
    named = task.named_candidates({"inhibitory": 0.01})
    clear_simulations()
    evaluations = task.evaluate([named["vogels"], named["no_depression"]], seed=0)
    clear_simulations()
    return [evaluation.metrics["rates_hz"] for evaluation in evaluations]


def test_vogels_rule_holds_the_target_rate(standalone_rates):
    vogels_rates, _ = standalone_rates
    assert len(vogels_rates) == 4
    # Vogels' rule settles some 5% above its target rate rho0 (its fixed point 2 rho tau = alpha
    # ignores that post spikes avoid the moments just after inhibitory input, which lowers the
    # potentiating x at post spikes), and 5 s of counting add a few % of noise per input draw
    # (10.2 to 11.0 Hz over seeds 0-3): the mean over draws is within 8%, each draw within 12%.
    assert np.mean(vogels_rates) == pytest.approx(10.0, rel=0.08)
    for rate in vogels_rates:
        assert rate == pytest.approx(10.0, rel=0.12)


def test_without_depression_the_rate_collapses(standalone_rates):
    _, rates = standalone_rates
    for rate in rates:
        assert rate < 0.2 * 10.0


def test_a_runaway_rate_is_reported_as_diverged():
    task = rate_task(SMALL)
    present = {"inhibitory": np.arange(100)[None, :] >= 80}

    def evaluate(rates_hz):
        spikes = np.array(rates_hz)[:, None] * 0.5  # spikes in the 0.5 s measure phase
        return task.loss(Recordings({"inhibitory.w": np.zeros((2, 1, 100))}, {"neuron@measure": spikes}, {},
                                    [task.model.constants] * 2, 1.0, {"learn": (0.0, 0.5), "measure": (0.5, 1.0)},
                                    present, {"learn": 0.5, "measure": 0.5}))

    runaway = evaluate([10.0, 160.0])  # the model's runaway: 150 Hz
    assert runaway.diverged
    assert runaway.metrics["diverged_reason"] == "runaway rate 160.0 Hz > runaway 150"
    assert runaway.metrics["rates_hz"] == [10.0, 160.0]
    fine = evaluate([10.0, 12.0])
    assert not fine.diverged and fine.loss == pytest.approx((0.0 + 0.2**2) / 2)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_weights_are_kept_on_the_targets_grid(rounding):
    from codesign.hardware.target import Precision

    task = rate_task({**SMALL, "w_max": 0.7}, precision=Precision(weight_bits=3, rounding=rounding))
    (evaluation,) = task.evaluate([vogels(eta=0.05)], seed=4)
    levels = evaluation.arrays["weights"] / (0.7 / 7)
    moved = evaluation.arrays["weights"] != 0.05
    assert moved.mean() > 0.5
    np.testing.assert_allclose(levels[moved], np.round(levels[moved]), atol=1e-9)


def test_event_counts_for_the_cost_model():
    task = rate_task(SMALL)
    (evaluation,) = task.evaluate([vogels()], seed=4)
    indices, _ = task.inputs(4)["poisson"].spikes
    counts = evaluation.counts
    assert counts.synaptic_events == len(indices) / 2
    assert counts.neurons == 1 and counts.synapses == 100 and counts.plastic_synapses == 20
    inhibitory = np.count_nonzero(indices % 100 >= 80) / 2
    assert counts.learning_updates == inhibitory + counts.spikes * 20
    assert counts.spikes >= np.mean(evaluation.metrics["rates_hz"]) * 0.5
    assert counts.duration_s == 1.0


#: A synapse with the spike-trace rule from one input that fires at given steps (dt 0.1 ms) to
#: n_post neurons (which fire at given steps too); the loss hands over the final traces x and y
#: (tau 10 ms) of each synapse.
TRACE_MODEL = """
name: traces
constants:
  w_max: 1.0
dt: 0.1*ms
draws: 1
groups:
  pre:
    size: 1
    per: draw
    model: ""
    threshold: "{threshold}"
  post:
    size: {n_post}
    model: "v : 1"
    threshold: "{post_threshold}"
synapses:
  syn:
    source: pre
    target: post
    model: "w : 1"
    weights: {{w: [0, w_max]}}
    traces: [x, y]
    rule: {{slot: s, family: spike_trace, bind: {{w: w, x: x, y: y, w_max: w_max}}}}
protocol:
  - {{name: run, duration: {duration_ms}*ms}}
loss:
  kind: trace_probe:final_x
  record: [syn.x, syn.y]
"""


@pytest.fixture
def trace_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The trace register ``read`` (x, or y) of ``n_synapses`` synapses after input spikes at
    ``spike_ms`` and output spikes at ``post_ms``, as the emulation stores it (tau_x = tau_y = 10 ms),
    for ``trace_bits`` (None: floats) and ``rounding``."""
    (tmp_path / "trace_probe.py").write_text("def final_x(recordings):\n"
                                             "    return 0.0, {'x': recordings['syn.x'], 'y': recordings['syn.y']}\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def at(spike_ms) -> str:
        return " or ".join(f"t_in_timesteps == {int(round(t * 10))}" for t in spike_ms) or "False"

    def run(spike_ms, trace_bits, rounding, n_synapses=1, post_ms=(), read="x"):
        path = tmp_path / "traces.yaml"
        path.write_text(TRACE_MODEL.format(threshold=at(spike_ms), post_threshold=at(post_ms), n_post=n_synapses,
                                           duration_ms=max(spike_ms) + 1))
        task = ModelTask(load_model(path), load_target(ROOT / "hw_targets/cpu.yaml"), searched_knobs=KNOBS)
        rule = SpikeTraceRule({}, tau_x_ms=10.0, tau_y_ms=10.0)
        knobs = [{"weight_bits": None, "trace_bits": trace_bits, "rounding": rounding}]
        (evaluation,) = task.evaluate([rule], seed=11, knobs=knobs)
        return evaluation.metrics[read].ravel()

    return run


def test_trace_registers_are_quantised_as_computed_by_hand(trace_after):
    from codesign.hardware.target import trace_grid

    assert trace_grid(7) == (1 / 16, 127 / 16)  # Loihi: 7 bits, an impulse of 16 units
    assert trace_grid(4) == (0.5, 7.5)
    # Floats: 1, then 1 e^-0.5 + 1 = 1.6065, then 1.6065 e^-0.1 + 1 = 2.4536.
    exact = 1 + (1 + np.exp(-0.5)) * np.exp(-0.1)
    np.testing.assert_allclose(trace_after([0, 5, 6], None, "nearest"), [exact], rtol=1e-12)
    # 4 bits, to nearest: 1 -> 1.6065 -> 1.5 -> 1.5 e^-0.1 + 1 = 2.357 -> 2.5.
    assert trace_after([0, 5, 6], 4, "nearest").tolist() == [2.5]
    # ... and up: 1 e^-0.25 + 1 = 1.779 (3.56 steps of 0.5) -> 2.0.
    assert trace_after([0, 2.5], 4, "nearest").tolist() == [2.0]
    # 3 bits (whole spikes): 1 -> 1.6065 -> 2 -> 2 e^-0.1 + 1 = 2.81 -> 3.
    assert trace_after([0, 5, 6], 3, "nearest").tolist() == [3.0]
    # Saturation: 30 spikes 0.1 ms apart would reach about 29 as floats; the register stops at 7.5.
    assert trace_after(list(np.arange(30) * 0.1), 4, "nearest").tolist() == [7.5]
    # A trace a spike reads but does not write is rounded too: y = e^-0.5 = 0.61 at the pre spike -> 0.5.
    np.testing.assert_allclose(trace_after([5], None, "nearest", post_ms=[0], read="y"), [np.exp(-0.5)], rtol=1e-12)
    assert trace_after([5], 4, "nearest", post_ms=[0], read="y").tolist() == [0.5]


def test_stochastic_trace_rounding_keeps_the_expected_value(trace_after):
    # 1.6065 on a grid of 0.5: 1.5 with probability 0.787, 2.0 with 0.213 (4000 synapses).
    x = trace_after([0, 5], 4, "stochastic", n_synapses=4000)
    assert set(np.unique(x)) == {1.5, 2.0}
    assert abs(x.mean() - (1 + np.exp(-0.5))) < 0.02  # about 6 standard errors (0.0032)


@pytest.mark.parametrize("target", ["cpu.yaml", "cpu-standalone.yaml"])
def test_stochastic_rounding_is_reproducible(target):
    """rand() is seeded: the same batch gives the same weights twice, on the runtime and standalone."""
    clear_simulations()
    task = rate_task(SMALL, target=target, knobs=KNOBS)
    knobs = [{"weight_bits": 2, "trace_bits": 4, "rounding": "stochastic"}]
    first, second = (task.evaluate([vogels(eta=0.05)], seed=3, knobs=knobs)[0] for _ in range(2))
    clear_simulations()
    np.testing.assert_array_equal(first.arrays["weights"], second.arrays["weights"])
    moved = first.arrays["weights"] != 0.05
    assert moved.mean() > 0.5
    levels = first.arrays["weights"][moved] / (1.0 / 3)
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)  # and on the 2-bit grid
