from __future__ import annotations

import numpy as np
import pytest

from codesign.backends import clear_simulations
from codesign.errors import CodesignError
from codesign.hardware import load_target
from codesign.rules.spike_trace import SPIKE_TERMS, SpikeTraceRule, vogels
from codesign.tasks.target_rate import TargetRateParams, TargetRateTask, draw_spikes, spike_capacity
from codesign.tasks.target_rate_reference import reference_run

from conftest import ROOT

#: A small network that still fires well above the target: 10x fewer inputs at 10x the rate.
SMALL = TargetRateParams(n_excitatory=80, n_inhibitory=20, rate_excitatory_hz=50.0, rate_inhibitory_hz=100.0,
                         w_excitatory=0.05, n_repeats=2, learn_s=0.5, measure_s=0.5)


def _random_rule(seed: int) -> SpikeTraceRule:
    rng = np.random.default_rng(seed)
    coefficients = {term: float(rng.uniform(-1.0, 1.0)) for term in SPIKE_TERMS}
    return SpikeTraceRule(coefficients, eta=0.02, tau_x_ms=float(rng.uniform(5, 40)),
                          tau_y_ms=float(rng.uniform(5, 40)), name="random")


def test_draw_spikes_are_on_the_grid_and_unique_per_step():
    indices, times = draw_spikes(SMALL, seed=1)
    dt = SMALL.dt_ms * 1e-3
    steps = np.round(times / dt)
    np.testing.assert_allclose(times, steps * dt, rtol=0, atol=1e-12)
    assert indices.max() < SMALL.n_repeats * SMALL.n_inputs
    assert len(set(zip(indices.tolist(), steps.tolist()))) == len(indices)


@pytest.mark.parametrize("target", ["cpu.yaml", "cpu-standalone.yaml"])
def test_brian2_matches_the_numpy_reference(target):
    """On the runtime and on the standalone build, whose input spikes come padded through run_args."""
    rules = [vogels(), SpikeTraceRule({}), _random_rule(3),
             # These two run into the clip: w_max (which silences the neuron) and 0.
             SpikeTraceRule({"pre_1": 1.0, "post_1": -0.5}, eta=0.05, tau_x_ms=7.0, tau_y_ms=45.0),
             SpikeTraceRule({"pre_1": -1.0, "post_x": 0.3}, eta=0.05, tau_x_ms=30.0, tau_y_ms=9.0)]
    task = TargetRateTask(SMALL, load_target(ROOT / "hw_targets" / target))
    evaluations = task.evaluate(rules, seed=4)
    counts, weights = reference_run(rules, SMALL, draw_spikes(SMALL, 4))
    assert counts.shape == (len(rules), SMALL.n_repeats)
    assert weights.shape == (len(rules), SMALL.n_repeats, SMALL.n_inhibitory)
    # The cases are not trivial: neurons fire, weights move (not without plasticity) and get clipped.
    assert (counts[[0, 1, 2, 4]] > 0).all()
    assert (weights[1] == SMALL.w_inhibitory_init).all()
    assert (weights[[0, 2, 3, 4]] != SMALL.w_inhibitory_init).all()
    assert (weights[3] == SMALL.w_max).any() and (weights[4] == 0.0).any()
    for k, evaluation in enumerate(evaluations):
        np.testing.assert_array_equal(np.asarray(evaluation.metrics["rates_hz"]), counts[k] / SMALL.measure_s)
        # The reference repeats the float operations of Brian2's generated numpy code in the same
        # order (including the order of the additions into ge and gi), so it agrees to the last bit;
        # the tolerance only leaves room for a different libm exp.
        np.testing.assert_allclose(evaluation.arrays["weights"], weights[k], rtol=1e-9, atol=1e-12)


def _losses_and_weights(task: TargetRateTask, seed: int) -> tuple[np.ndarray, np.ndarray]:
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
    target = load_target(ROOT / "hw_targets/cpu-standalone.yaml")
    study_loss, study_w = _losses_and_weights(TargetRateTask(SMALL, target), seed=3)
    held_loss, held_w = _losses_and_weights(TargetRateTask(SMALL, target), seed=5)
    assert len(builds) == 1
    assert len(list((tmp_path / "first" / "cpp_standalone").glob("*/main"))) == 1
    assert not np.array_equal(study_loss, held_loss) and not np.array_equal(study_w, held_w)

    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path / "fresh"))
    clear_simulations()
    fresh_loss, fresh_w = _losses_and_weights(TargetRateTask(SMALL, target), seed=5)
    clear_simulations()
    assert len(builds) == 2
    np.testing.assert_allclose(held_loss, fresh_loss, rtol=0, atol=1e-12)
    np.testing.assert_allclose(held_w, fresh_w, rtol=0, atol=1e-12)


def test_the_spike_capacity_holds_the_draws_and_an_overflow_is_one_line(monkeypatch):
    capacity = spike_capacity(SMALL)
    counts = [len(draw_spikes(SMALL, seed)[0]) for seed in range(20)]
    assert max(counts) <= capacity < 1.2 * np.mean(counts)
    monkeypatch.setattr("codesign.tasks.target_rate.spike_capacity", lambda params: min(counts) - 1)
    with pytest.raises(CodesignError) as caught:
        TargetRateTask(SMALL, load_target(ROOT / "hw_targets/cpu.yaml")).evaluate([vogels()], seed=0)
    assert "input seed 0 draws" in caught.value.one_line() and "\n" not in caught.value.one_line()


@pytest.fixture(scope="module")
def standalone_rates() -> list[list[float]]:
    params = TargetRateParams(learn_s=10.0, measure_s=5.0, n_repeats=4)
    task = TargetRateTask(params, load_target(ROOT / "hw_targets/cpu-standalone.yaml"))
    rules = [vogels(), SpikeTraceRule({"pre_y": 1.0, "post_x": 1.0}, name="no depression")]
    return [evaluation.metrics["rates_hz"] for evaluation in task.evaluate(rules, seed=0)]


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
    task = TargetRateTask(TargetRateParams(runaway_rate_hz=50.0), load_target(ROOT / "hw_targets/cpu.yaml"))
    evaluation = task._summarise(np.array([10.0, 80.0]), np.zeros((2, 200)))
    assert evaluation.diverged
    assert evaluation.metrics["diverged_reason"] == "runaway rate 80.0 Hz > runaway_rate_hz 50"
    assert not task._summarise(np.array([10.0, 12.0]), np.zeros((2, 200))).diverged


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_weights_are_kept_on_the_targets_grid(rounding):
    import dataclasses

    from codesign.hardware.target import Precision

    target = dataclasses.replace(load_target(ROOT / "hw_targets/cpu.yaml"),
                                 precision=Precision(weight_bits=3, rounding=rounding))
    params = dataclasses.replace(SMALL, w_max=0.7)
    (evaluation,) = TargetRateTask(params, target).evaluate([vogels(eta=0.05)], seed=4)
    levels = evaluation.arrays["weights"] / (0.7 / 7)
    moved = evaluation.arrays["weights"] != params.w_inhibitory_init
    assert moved.any()
    np.testing.assert_allclose(levels[moved], np.round(levels[moved]), atol=1e-9)


def test_event_counts_for_the_cost_model():
    task = TargetRateTask(SMALL, load_target(ROOT / "hw_targets/cpu.yaml"))
    (evaluation,) = task.evaluate([vogels()], seed=4)
    spikes = draw_spikes(SMALL, 4)
    counts = evaluation.counts
    assert counts.synaptic_events == len(spikes[0]) / SMALL.n_repeats
    assert counts.neurons == 1 and counts.synapses == SMALL.n_inputs and counts.plastic_synapses == SMALL.n_inhibitory
    inhibitory = np.count_nonzero(spikes[0] % SMALL.n_inputs >= SMALL.n_excitatory) / SMALL.n_repeats
    assert counts.learning_updates == inhibitory + counts.spikes * SMALL.n_inhibitory
    assert counts.spikes >= np.mean(evaluation.metrics["rates_hz"]) * SMALL.measure_s


def _trace_after(spike_ms, trace_bits, rounding, n_synapses=1):
    """The trace register x of ``n_synapses`` synapses after input spikes at ``spike_ms``, as the
    target-rate task's emulation stores it (tau_x = 10 ms)."""
    import brian2 as b2

    from codesign.hardware.target import trace_grid
    from codesign.tasks.target_rate import _trace

    b2.start_scope()
    b2.set_device("runtime")
    b2.prefs.codegen.target = "numpy"
    b2.seed(11)
    step, top = trace_grid(trace_bits)
    post = b2.NeuronGroup(1, "x_step : 1\nx_max : 1\nstochastic : 1\ntau_x : second")
    post.x_step, post.x_max, post.stochastic, post.tau_x = step, min(top, 1e30), float(rounding == "stochastic"), 10 * b2.ms
    pre = b2.SpikeGeneratorGroup(1, np.zeros(len(spike_ms), dtype=int), np.array(spike_ms) * b2.ms)
    syn = b2.Synapses(pre, post, "dx/dt = -x / tau_x_post : 1 (event-driven)", on_pre=_trace("x", " + 1"))
    syn.connect(i=np.zeros(n_synapses, dtype=int), j=np.zeros(n_synapses, dtype=int))
    b2.run((max(spike_ms) + 1) * b2.ms)
    return np.asarray(syn.x[:])


def test_trace_registers_are_quantised_as_computed_by_hand():
    from codesign.hardware.target import trace_grid

    assert trace_grid(7) == (1 / 16, 127 / 16)  # Loihi: 7 bits, an impulse of 16 units
    assert trace_grid(4) == (0.5, 7.5)
    # Floats: 1, then 1 e^-0.5 + 1 = 1.6065, then 1.6065 e^-0.1 + 1 = 2.4536.
    exact = 1 + (1 + np.exp(-0.5)) * np.exp(-0.1)
    np.testing.assert_allclose(_trace_after([0, 5, 6], None, "nearest"), [exact], rtol=1e-12)
    # 4 bits, to nearest: 1 -> 1.6065 -> 1.5 -> 1.5 e^-0.1 + 1 = 2.357 -> 2.5.
    assert _trace_after([0, 5, 6], 4, "nearest").tolist() == [2.5]
    # 3 bits (whole spikes): 1 -> 1.6065 -> 2 -> 2 e^-0.1 + 1 = 2.81 -> 3.
    assert _trace_after([0, 5, 6], 3, "nearest").tolist() == [3.0]
    # Saturation: 30 spikes 0.1 ms apart would reach about 29 as floats; the register stops at 7.5.
    assert _trace_after(list(np.arange(30) * 0.1), 4, "nearest").tolist() == [7.5]


def test_stochastic_trace_rounding_keeps_the_expected_value():
    # 1.6065 on a grid of 0.5: 1.5 with probability 0.787, 2.0 with 0.213 (4000 synapses).
    x = _trace_after([0, 5], 4, "stochastic", n_synapses=4000)
    assert set(np.unique(x)) == {1.5, 2.0}
    assert abs(x.mean() - (1 + np.exp(-0.5))) < 0.02  # about 6 standard errors (0.0032)


@pytest.mark.parametrize("target", ["cpu.yaml", "cpu-standalone.yaml"])
def test_stochastic_rounding_is_reproducible(target):
    """rand() is seeded: the same batch gives the same weights twice, on the runtime and standalone."""
    task = TargetRateTask(SMALL, load_target(ROOT / "hw_targets" / target))
    knobs = [{"weight_bits": 2, "trace_bits": 4, "rounding": "stochastic"}]
    first, second = (task.evaluate([vogels(eta=0.05)], seed=3, knobs=knobs)[0] for _ in range(2))
    np.testing.assert_array_equal(first.arrays["weights"], second.arrays["weights"])
    moved = first.arrays["weights"] != SMALL.w_inhibitory_init
    assert moved.mean() > 0.5
    levels = first.arrays["weights"][moved] / (SMALL.w_max / 3)
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)  # and on the 2-bit grid
