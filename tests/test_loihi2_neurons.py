"""Neuron groups on Loihi 2 (codesign/hardware/loihi2/neurons.py): which Brian2 groups lava's LIF runs,
their constants in Lava units, and the refusals.

The Lava runs check the mapping against Brian2 running the group's own text: each equation's Euler
step, in Lava's order within a step (the spikes of the step before enter the currents, the new
currents enter v), with the group's threshold, reset and refractory period, on the chip's 1 ms step.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from codesign.errors import CodesignError
from codesign.hardware.loihi2.neurons import lava_neuron
from codesign.models.spec import GroupSpec, load_model
from tests.conftest import ROOT

b2 = pytest.importorskip("brian2")

CONSTANTS = {"E_l": -65 * b2.mV, "v_th": -50 * b2.mV, "v_reset": -70 * b2.mV, "tau_m": 20 * b2.ms,
             "tau_s": 5 * b2.ms, "R": 10 * b2.Mohm, "w": 0.15 * b2.nA}
CUBA = GroupSpec(size=1, model="dv/dt = (E_l - v + R*I)/tau_m : volt (unless refractory)\n"
                               "dI/dt = -I/tau_s : amp",
                 threshold="v > v_th", reset="v = v_reset", method="euler", initial={"v": "E_l"})
DT = 1 * b2.ms
STEPS, INPUTS, RATE = 600, 20, 150.0  # Hz: about 3 input spikes a step drive v past threshold

# Two currents with one time constant, so that spikes still jump into ge and gi as the target-rate
# model's synapses write it (its cell constants; weights that make the cell fire about every 20 steps).
TWO_CONSTANTS = {"E_l": -60 * b2.mV, "E_e": 0 * b2.mV, "E_i": -80 * b2.mV, "v_th": -50 * b2.mV,
                 "v_reset": -60 * b2.mV, "tau_m": 20 * b2.ms, "tau_s": 5 * b2.ms, "w_e": 0.03, "w_i": 0.1}
TWO_CURRENTS = GroupSpec(size=1, model="dv/dt = ((E_l - v) + ge * (E_e - E_l) + gi * (E_i - E_l)) / tau_m : volt\n"
                                       "dge/dt = -ge / tau_s : 1\n"
                                       "dgi/dt = -gi / tau_s : 1",
                         threshold="v > v_th", reset="v = v_reset", method="euler",
                         initial={"v": "E_l", "ge": "0.5", "gi": "0.25"})


def test_current_based_lif_maps_to_lava_units_by_hand():
    neuron = lava_neuron("cell", CUBA, CONSTANTS, DT, fixed_point=True)
    scale = 12000 / 0.020  # Lava units per volt: vth over v_th - v_reset
    assert neuron.process == "LIF" and set(neuron.inputs) == {"I"} and neuron.offset == pytest.approx(-0.070)
    assert neuron.scale == pytest.approx(scale)
    expected = {"du": 1 / 5, "dv": 1 / 20, "vth": 12000, "bias_mant": scale * 1e-3 * 0.005 / 0.020,
                "v": scale * 0.005, "u": 0.0}
    assert {k: neuron.floating_pt[k] for k in expected} == pytest.approx(expected, rel=1e-12)
    assert neuron.inputs["I"] == pytest.approx(scale * 1e-3 * 10e6 / 0.020)  # dt R / tau_m, in Lava units
    # lava's fixed point: du decays by du + 1; bias 150 is 9600 after the 6-bit shift, 2400 << 2 in 13 bits.
    assert neuron.fixed_pt == {"du": 818, "dv": 205, "vth": 12000, "bias_mant": 2400, "bias_exp": 2,
                               "u": 0, "v": 192000}


def test_spikes_into_the_membrane_itself_make_u_the_input_of_one_step():
    group = dataclasses.replace(CUBA, model="dv/dt = (E_l - v)/tau_m : volt")
    neuron = lava_neuron("cell", group, CONSTANTS, DT, fixed_point=True)
    assert neuron.inputs == pytest.approx({"v": neuron.scale})
    assert neuron.floating_pt["du"] == 1.0 and neuron.fixed_pt["du"] == 4095  # lava decays u by du + 1: to 0


def test_two_currents_with_one_decay_sum_into_u_each_with_its_coupling():
    neuron = lava_neuron("cell", TWO_CURRENTS, TWO_CONSTANTS, DT, fixed_point=False)
    scale = 12000 / 0.010  # Lava units per volt: vth over v_th - v_reset
    # a jump of ge moves v by dt (E_e - E_l) / tau_m per unit, one of gi by dt (E_i - E_l) / tau_m
    inputs = {"ge": scale * 1e-3 * 0.060 / 0.020, "gi": scale * 1e-3 * -0.020 / 0.020}
    assert neuron.inputs == pytest.approx(inputs, rel=1e-12)
    assert neuron.inputs["ge"] / neuron.inputs["gi"] == pytest.approx(-3, rel=1e-12)
    assert neuron.floating_pt["du"] == pytest.approx(1 / 5, rel=1e-12)
    assert neuron.floating_pt["u"] == pytest.approx(0.5 * inputs["ge"] + 0.25 * inputs["gi"], rel=1e-12)
    assert neuron.floating_pt["bias_mant"] == pytest.approx(0, abs=1e-9)  # E_l is the reset: no drive


def test_exact_method_takes_exponential_decays_and_keeps_the_resting_value():
    neuron = lava_neuron("cell", dataclasses.replace(CUBA, method="exact"), CONSTANTS, DT, fixed_point=False)
    dv = 1 - np.exp(-1 / 20)
    assert neuron.floating_pt["du"] == pytest.approx(1 - np.exp(-1 / 5), rel=1e-12)
    assert neuron.floating_pt["dv"] == pytest.approx(dv, rel=1e-12)
    # rest: bias / dv = scale * (E_l - v_reset)
    assert neuron.floating_pt["bias_mant"] / dv == pytest.approx(neuron.scale * 0.005, rel=1e-12)


def input_spikes(seed: int = 3, inputs: int = INPUTS, rate: float = RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((inputs, STEPS)) < rate * float(DT)).astype(np.int8)


def run_brian2_chip_order(group: GroupSpec, namespace: dict, populations: list[tuple[str, np.ndarray, str]]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(spike steps, v after each step) of ``group``'s text, Euler steps in Lava's order; each
    population (current, spikes, weight's name) jumps into its current's pending input ``X_in``,
    added at the next step as lava's a_in is."""
    from codesign.backends.runtime import configure_runtime
    from codesign.hardware import Target

    configure_runtime(Target(name="loihi2-reference", codegen="numpy"))
    equations = b2.Equations(group.model)
    names = sorted(equations.diff_eq_names, key=lambda name: name == "v")  # currents before v, as in Lava
    currents = [name for name in names if name != "v"]
    held = {name for name in names if "unless refractory" in equations[name].flags and group.refractory}

    def unit(name: str) -> str:
        return "1" if equations[name].dim.is_dimensionless else repr(b2.get_unit(equations[name].dim))

    model = "\n".join([f"{name} : {unit(name)}" for name in names] + [f"{name}_in : {unit(name)}" for name in currents])
    step = "\n".join([f"{name} = {name} + dt*({equations[name].expr.code})"
                      + ("*int(not_refractory)" if name in held else "") + (f" + {name}_in" if name in currents else "")
                      for name in names] + [f"{name}_in = 0*{name}_in" for name in currents])
    clock = b2.Clock(DT)
    neuron = b2.NeuronGroup(1, model, threshold=group.threshold, reset=group.reset,
                            refractory=group.refractory or False, clock=clock, namespace=namespace)
    neuron.run_regularly(step, when="start")
    for name, text in group.initial.items():
        setattr(neuron, name, text)
    objects = [neuron]
    for current, spikes, weight in populations:
        index, when = np.nonzero(spikes)
        order = np.lexsort((index, when))
        source = b2.SpikeGeneratorGroup(len(spikes), index[order], when[order] * DT, clock=clock)
        synapses = b2.Synapses(source, neuron, on_pre=f"{current}_in_post += {weight}", clock=clock,
                               namespace=namespace)
        synapses.connect()
        objects += [source, synapses]
    spike_monitor = b2.SpikeMonitor(neuron)
    v_monitor = b2.StateMonitor(neuron, "v", record=0, when="end", clock=clock)
    b2.Network(*objects, spike_monitor, v_monitor).run(STEPS * DT, namespace={})
    return np.rint(np.asarray(spike_monitor.t / DT)).astype(int), np.asarray(v_monitor.v[0])


def run_lava(neuron, populations: list[tuple[np.ndarray, float]], fixed_point: bool
             ) -> tuple[np.ndarray, np.ndarray]:
    """(spike steps, v after each step) of the lava process with ``neuron``'s parameters; each
    population (spikes, weight in Lava units) drives the cell's a_in through its own Dense."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.monitor.process import Monitor
    from lava.utils.weightutils import SignMode

    cell = neuron.process_class()(shape=(1,), **neuron.params(fixed_point))
    sink, monitor = Sink(shape=(1,), buffer=STEPS), Monitor()
    for spikes, weight in populations:
        source = Source(data=spikes.astype(float))
        dense = Dense(weights=np.full((1, len(spikes)), weight), num_weight_bits=8,
                      sign_mode=SignMode.EXCITATORY if weight >= 0 else SignMode.INHIBITORY)
        source.s_out.connect(dense.s_in)
        dense.a_out.connect(cell.a_in)
    cell.s_out.connect(sink.a_in)
    monitor.probe(cell.v, STEPS)
    try:
        cell.run(condition=RunSteps(num_steps=STEPS), run_cfg=Loihi2SimCfg(select_tag="fixed_pt" if fixed_point
                                                                             else "floating_pt"))
        out = np.array(sink.data.get()).ravel()
        v = np.array(monitor.get_data()[cell.name]["v"], dtype=float).ravel()
    finally:
        cell.stop()
    return np.flatnonzero(out > 0), v


@pytest.mark.lava
@pytest.mark.parametrize("refractory", [None, "3*ms"])
def test_lava_float_matches_brian2_in_chip_order(refractory):
    group = dataclasses.replace(CUBA, refractory=refractory)
    neuron = lava_neuron("cell", group, CONSTANTS, DT, fixed_point=False)
    assert neuron.process == ("LIF" if refractory is None else "LIFRefractory")
    spikes = input_spikes()
    brian_steps, brian_v = run_brian2_chip_order(group, CONSTANTS, [("I", spikes, "w")])
    lava_steps, lava_v = run_lava(neuron, [(spikes, neuron.inputs["I"] * float(CONSTANTS["w"]))], False)
    assert_same_run(neuron, CONSTANTS, (lava_steps, lava_v), (brian_steps, brian_v))


def assert_same_run(neuron, constants, lava, brian2) -> None:
    """The same spike steps, and v within 1e-12 of the threshold distance."""
    assert len(brian2[0]) > 20
    np.testing.assert_array_equal(lava[0], brian2[0])
    threshold_distance = float(constants["v_th"] - constants["v_reset"])
    assert np.max(np.abs(neuron.to_brian2(lava[1]) - brian2[1])) <= 1e-12 * threshold_distance


@pytest.mark.lava
def test_lava_float_matches_brian2_in_chip_order_with_two_currents():
    neuron = lava_neuron("cell", TWO_CURRENTS, TWO_CONSTANTS, DT, fixed_point=False)
    excitatory, inhibitory = input_spikes(seed=4), input_spikes(seed=5, inputs=10, rate=100.0)
    brian_steps, brian_v = run_brian2_chip_order(TWO_CURRENTS, TWO_CONSTANTS,
                                                 [("ge", excitatory, "w_e"), ("gi", inhibitory, "w_i")])
    lava_steps, lava_v = run_lava(neuron, [(excitatory, neuron.inputs["ge"] * TWO_CONSTANTS["w_e"]),
                                           (inhibitory, neuron.inputs["gi"] * TWO_CONSTANTS["w_i"])], False)
    assert_same_run(neuron, TWO_CONSTANTS, (lava_steps, lava_v), (brian_steps, brian_v))


@pytest.mark.lava
def test_lava_fixed_point_keeps_the_spike_count():
    neuron = lava_neuron("cell", CUBA, CONSTANTS, DT, fixed_point=True)
    spikes = input_spikes()
    brian_steps, _ = run_brian2_chip_order(CUBA, CONSTANTS, [("I", spikes, "w")])
    weight = round(neuron.inputs["I"] * float(CONSTANTS["w"]))  # 45 Lava units: 8-bit, exact here
    assert weight == pytest.approx(neuron.inputs["I"] * float(CONSTANTS["w"]), rel=1e-9)
    lava_steps, lava_v = run_lava(neuron, [(spikes, weight)], True)
    # du, dv round to 12 bits (0.02 %, 0.1 %) and u, v truncate each step: a few spikes at most move.
    assert abs(len(lava_steps) - len(brian_steps)) <= max(2, 0.03 * len(brian_steps))
    assert np.max(lava_v) <= neuron.fixed_pt["vth"] * 2**6  # v held in the shifted registers, reset to 0


def test_target_rate_conductance_based_neuron_is_refused_naming_the_group():
    model = load_model(ROOT / "models/target-rate.yaml")
    with pytest.raises(CodesignError) as error:
        lava_neuron("neuron", model.groups["neuron"], model.constants, DT, fixed_point=True, file=model.file)
    line = str(error.value)
    assert "\n" not in line and "groups.neuron" in line and "target-rate.yaml" in line
    assert "conductance-based: v multiplies ge, gi" in line


ADAPTIVE = ("dv/dt = (E_l - v + R*I - a)/tau_m : volt\ndI/dt = -I/tau_s : amp\n"
            "da/dt = ((v - E_l) - a)/(100*ms) : volt")
EXPONENTIAL = "dv/dt = (E_l - v + 2*mV*exp((v - v_th)/(2*mV)) + R*I)/tau_m : volt\ndI/dt = -I/tau_s : amp"


@pytest.mark.parametrize("change, reason", [
    ({"model": ADAPTIVE}, "two compartments: da/dt depends on v"),
    ({"model": EXPONENTIAL}, "is not a polynomial of the variables (nonlinear)"),
    ({"model": "dv/dt = (v - E_l + R*I)/tau_m : volt\ndI/dt = -I/tau_s : amp"}, "grows without bound"),
    ({"model": "dv/dt = (E_l - v + R*I)/tau_m : volt\ndI/dt = (1*nA - I)/tau_s : amp"}, "is not a decay"),
    ({"reset": "v = v_reset\nI = 0*amp"}, "reset 'v = v_reset\\nI = 0*amp' is not 'v = constant'"),
    ({"threshold": "v > v_th + R*I"}, "threshold 'v > v_th + R*I': its bound 'I*R + v_th' is not a constant"),
    ({"threshold": "v >= v_th"}, "is not 'v > constant'"),
    ({"refractory": "2.5*ms"}, "2.5 chip steps, not a whole number"),
    ({"refractory": "2*ms", "model": CUBA.model.replace(" (unless refractory)", "")}, "refractory holds nothing"),
])
def test_groups_lava_cannot_run_are_refused_in_one_line(change, reason):
    with pytest.raises(CodesignError) as error:
        lava_neuron("cell", dataclasses.replace(CUBA, **change), CONSTANTS, DT, fixed_point=False)
    assert reason in str(error.value) and "groups.cell" in str(error.value) and "\n" not in str(error.value)


def test_refractory_is_refused_in_fixed_point_where_lava_has_no_model():
    group = dataclasses.replace(CUBA, refractory="2*ms")
    assert lava_neuron("cell", group, CONSTANTS, DT, fixed_point=False).floating_pt["refractory_period"] == 2
    with pytest.raises(CodesignError, match="LIFRefractory has no fixed_pt model"):
        lava_neuron("cell", group, CONSTANTS, DT, fixed_point=True)


def test_currents_that_decay_differently_are_refused_naming_them_and_their_taus():
    group = dataclasses.replace(TWO_CURRENTS, model=TWO_CURRENTS.model.replace("-gi / tau_s", "-gi / (2*tau_s)"))
    with pytest.raises(CodesignError) as error:
        lava_neuron("neuron", group, TWO_CONSTANTS, DT, fixed_point=False, file="models/x.yaml")
    assert str(error.value) == ("models/x.yaml: groups.neuron: not a neuron lava-nc 0.10.0 runs: ge decays with "
                                "tau 5 ms, gi with 10 ms: Lava's LIF has one current u (fix: give them one time "
                                "constant in the loihi2: variant)")
