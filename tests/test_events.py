"""Counts of a group's custom events (``events:``): records ``group:EVENT@phase`` and
``group:EVENT@phase/trial``, and the rate losses' ``event:`` key.

A small model of four neurons, each driven by a constant current that a phase and a trial scale,
with two custom events: ``early``, the spike condition on neurons 0 and 1 only (so its counts are
those neurons' spikes, and zero elsewhere, by construction), and ``above``, true at every time step
that v is above 0.8 (a count of time steps, not of crossings). Every count is checked against a
plain Brian2 run of the same text, its protocol run phase by phase with EventMonitors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from codesign.backends import clear_simulations
from codesign.errors import CodesignError
from codesign.hardware import load_target
from codesign.models import ModelTask, load_model
from codesign.rules import SpikeTraceRule
from tests.conftest import ROOT

EQUATIONS = "dv/dt = (I_ext * (drive + 0.5 * i) - v) / tau : 1"
EVENTS = {"early": "i < 2 and v > 1", "above": "v > 0.8"}
#: (phase, duration in ms, I_ext)
PHASES = [("warm", 20, 0.6), ("test", 30, 1.0)]
TRIALS = [{"drive": 1.5, "goal": "20*Hz"}, {"drive": 2.5, "goal": "60*Hz"}]
REPEAT = 2
CYCLES = REPEAT * len(TRIALS)
N = 4
DT_MS = 0.1

MODEL = {
    "name": "events",
    "constants": {"tau": "10*ms", "I_ext": 1, "drive": 1, "w_max": 1, "goal": "0*Hz"},
    "dt": f"{DT_MS}*ms",
    "draws": 2,
    "groups": {"cell": {"size": N, "model": EQUATIONS, "threshold": "v > 1", "reset": "v = 0", "method": "euler",
                        "events": EVENTS}},
    # A rule slot, as every model has; with w = 0 and the zero rule it changes nothing.
    "synapses": {"syn": {"source": "cell", "target": "cell", "connect": "i == j", "model": "w : 1",
                         "on_pre": "v_post += w", "initial": {"w": 0}, "weights": {"w": [0, "w_max"]},
                         "rule": {"slot": "s", "family": "spike_trace"}}},
    "protocol": [{"name": name, "duration": f"{ms}*ms", "values": {"I_ext": current}} for name, ms, current in PHASES],
    "repeat": REPEAT,
    "trials": TRIALS,
}

RECORDS = ["cell:early@test", "cell:above@test", "cell:above@warm", "cell@test", "cell:spike@test",
           "cell:above@test/trial", "cell:early@warm/trial", "cell@test/trial", "cell:above@warm/trial"]

PROBE = """
def counts(recordings):
    return 0.0, {name: value.tolist() for name, value in recordings.items()}
"""

ZERO = [SpikeTraceRule({}), SpikeTraceRule({})]  # two candidates: copies of the batch must not mix


def model_file(tmp_path: Path, loss: dict, **changes) -> Path:
    path = tmp_path / "events.yaml"
    path.write_text(yaml.safe_dump({**MODEL, **changes, "loss": loss}, sort_keys=False))
    return path


def evaluate(path: Path, target: str = "cpu.yaml") -> list:
    task = ModelTask(load_model(path), load_target(ROOT / "hw_targets" / target))
    return task.evaluate(ZERO, seed=1)


@pytest.fixture(scope="module")
def reference() -> dict[tuple[str, str], np.ndarray]:
    """(event, phase) -> (passes, n) counts of a plain Brian2 run of the model's text."""
    import brian2 as b2

    b2.set_device("runtime")
    b2.prefs.codegen.target = "numpy"
    dt = DT_MS * b2.ms
    group = b2.NeuronGroup(N, EQUATIONS, threshold="v > 1", reset="v = 0", events=dict(EVENTS), method="euler",
                           dt=dt)  # a copy: Brian2 adds "spike" to it
    monitors = {event: b2.EventMonitor(group, event) for event in ("spike", *EVENTS)}
    network = b2.Network(group, *monitors.values())
    windows = []  # (phase, pass, first step, end step)
    for cycle in range(CYCLES):
        for phase, ms, current in PHASES:
            first = int(round(network.t / dt))
            network.run(ms * b2.ms, namespace={"tau": 10 * b2.ms, "I_ext": current,
                                               "drive": TRIALS[cycle % len(TRIALS)]["drive"]})
            windows.append((phase, cycle, first, int(round(network.t / dt))))
    out = {}
    for event, monitor in monitors.items():
        steps = np.rint(monitor.t / dt).astype(int)
        for phase, cycle, first, end in windows:
            counts = out.setdefault((event, phase), np.zeros((CYCLES, N)))
            inside = (steps >= first) & (steps < end)
            counts[cycle] = np.bincount(monitor.i[inside], minlength=N)
    return out


def test_the_reference_counts_what_the_tests_need(reference):
    """Nonzero counts that differ between neurons, phases and passes: a mix-up cannot pass unseen."""
    early, spikes = reference[("early", "test")], reference[("spike", "test")]
    np.testing.assert_array_equal(early[:, :2], spikes[:, :2])  # early is the spike of neurons 0 and 1
    assert early[:, :2].min() > 0 and early[:, 2:].max() == 0
    above = reference[("above", "test")]
    assert len(np.unique(above)) > 4 and (above > spikes).all()  # steps above 0.8, not crossings
    assert reference[("above", "warm")].sum() > 0 and not np.array_equal(reference[("above", "warm")], above)


@pytest.mark.parametrize("target", ["cpu.yaml", "cpu-standalone.yaml"])
def test_event_counts_per_phase_and_per_pass_match_brian2(tmp_path, monkeypatch, reference, target):
    (tmp_path / "events_probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = model_file(tmp_path, {"kind": "events_probe:counts", "record": RECORDS})
    evaluations = evaluate(path, target)
    assert len(evaluations) == 2
    for evaluation in evaluations:
        got = {name: np.array(value) for name, value in evaluation.metrics.items()}
        for name in RECORDS:
            owner, _, phase = name.partition("@")
            event = owner.partition(":")[2] or "spike"
            expected = reference[(event, phase.removesuffix("/trial"))]
            if not phase.endswith("/trial"):
                expected = expected.sum(axis=0)  # a phase's counts add up over its passes
            # Every draw (2) of every candidate runs the same deterministic network.
            np.testing.assert_array_equal(got[name], np.broadcast_to(expected, (2,) + expected.shape), err_msg=name)
    clear_simulations()


#: Each rate loss with ``event: above``: its keys, and where its rates are (Hz, mean over neurons).
RATE_LOSSES = {
    "trial_rates": ({"target": "goal"}, lambda e: e.arrays["rates"]),  # (draws, passes)
    "classification": ({"label": "label"}, lambda e: e.arrays["rates"].mean(axis=2)),  # (draws, passes, classes)
    "rate_to_target": ({"target": 10}, lambda e: np.array(e.metrics["rates_hz"])),  # (draws,), all passes
}


@pytest.mark.parametrize("kind", list(RATE_LOSSES))
def test_rate_losses_read_the_rate_of_their_event(tmp_path, reference, kind):
    keys, read = RATE_LOSSES[kind]
    loss = {"kind": kind, "group": "cell", "phase": "test", "event": "above", **keys}
    # classification: each trial's class, a neuron of cell
    path = model_file(tmp_path, loss, constants={**MODEL["constants"], "label": 0},
                      trials=[{**trial, "label": c} for c, trial in enumerate(TRIALS)])
    evaluation = evaluate(path)[0]
    above = reference[("above", "test")] / 0.030  # Hz, per pass and neuron
    expected = above.mean(axis=(0, 1)) if kind == "rate_to_target" else above.mean(axis=1)
    np.testing.assert_allclose(read(evaluation), np.broadcast_to(expected, (2,) + expected.shape), rtol=1e-12)


@pytest.mark.parametrize("loss, key", [
    ({"kind": "trial_rates", "group": "cell", "phase": "test", "target": "goal", "event": "burst"}, "loss.event"),
    ({"kind": "rate_to_target", "group": "cell", "phase": "test", "target": 10, "event": "burst"}, "loss.event"),
    ({"kind": "events_probe:counts", "record": ["cell:burst@test/trial"]}, "loss"),
])
def test_an_unknown_event_is_a_one_line_error_listing_the_groups_events(tmp_path, monkeypatch, loss, key):
    (tmp_path / "events_probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CodesignError) as error:
        evaluate(model_file(tmp_path, loss))
    assert error.value.key == key
    line = error.value.one_line()
    assert "\n" not in line and "'burst'" in line and "spike, early, above" in line


def test_an_event_drawn_at_random_follows_the_seed(tmp_path, monkeypatch):
    """rand() in an event's condition (a burst drawn with some probability): the run is seeded."""
    (tmp_path / "events_probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    cell = {**MODEL["groups"]["cell"], "events": {"coin": "rand() < 0.3"}}
    path = model_file(tmp_path, {"kind": "events_probe:counts", "record": ["cell:coin@test/trial"]},
                      groups={"cell": cell})
    task = ModelTask(load_model(path), load_target(ROOT / "hw_targets" / "cpu.yaml"))
    first, again, other = (np.array(task.evaluate(ZERO[:1], seed=s)[0].metrics["cell:coin@test/trial"])
                           for s in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert abs(first.mean() / 300 - 0.3) < 0.05  # 300 steps per pass


@pytest.mark.parametrize("target", ["cpu.yaml", "cpu-standalone.yaml"])
def test_the_cost_model_counts_a_pathway_on_a_custom_event_per_event_not_per_spike(tmp_path, reference, target):
    """Synaptic events and learning updates of pathways that act on custom events (``on_event``):
    ``pre`` on ``early`` (neurons 0 and 1's spikes only) and ``post`` on ``above`` (every step above
    0.8, more often than spikes), both plastic, each synapse i -> i (one target each)."""
    syn = {**MODEL["synapses"]["syn"], "on_event": {"pre": "early", "post": "above"},
           "on_post": "w = clip(w + 0, 0, w_max)"}
    path = model_file(tmp_path, {"kind": "rate_to_target", "group": "cell", "phase": "test", "target": 10},
                      synapses={"syn": syn})
    counts = evaluate(path, target)[0].counts
    total = lambda event: sum(reference[(event, phase)].sum() for phase, _, _ in PHASES)  # noqa: E731
    assert total("early") < total("spike") < total("above")  # three different answers
    assert counts.synaptic_events == total("early")
    assert counts.learning_updates == total("early") + total("above")
    assert counts.spikes == total("spike")
    clear_simulations()


@pytest.mark.parametrize("on_event, words", [
    ({"pre": "burst"}, ["no event 'burst'", "spike, early, above"]),
    ({"forward": "early"}, ["unknown pathway 'forward'", "(pre, post)"]),
    ({"post": "early"}, ["no on_post", "write on_post"]),  # neither the synapse nor its rule has on_post
])
def test_on_event_names_a_pathway_the_synapse_has_and_an_event_of_its_side(tmp_path, on_event, words):
    syn = {**MODEL["synapses"]["syn"], "on_event": on_event, "rule": {"slot": "s", "family": "text", "model": "w : 1",
                                                                       "on_pre": "w = clip(w + eta, 0, w_max)",
                                                                       "params": {"eta": {"bounds": [0, 1]}}}}
    with pytest.raises(CodesignError) as error:
        evaluate(model_file(tmp_path, {"kind": "rate_to_target", "group": "cell", "phase": "test", "target": 10},
                            synapses={"syn": syn}))
    assert error.value.key == f"synapses.syn.on_event.{next(iter(on_event))}"
    line = error.value.one_line()
    assert "\n" not in line and all(w in line for w in words), line
