"""The cost model against hand-computed figures for a tiny network with known event counts."""

from __future__ import annotations

import dataclasses
import re

import pytest

from codesign.errors import SpecError
from codesign.hardware import ENERGY_KINDS, EventCounts, cost, energy_objective_kind, load_target

from tests.conftest import ROOT

# 2 s of a network of 3 neurons and 10 synapses (4 plastic): 1000 synaptic events, 50 spikes,
# 200 learning updates.
COUNTS = EventCounts(duration_s=2.0, synaptic_events=1000, spikes=50, learning_updates=200, neurons=3,
                     synapses=10, plastic_synapses=4)
STATIC = dataclasses.replace(COUNTS, learning_updates=0, plastic_synapses=0)


def target(name: str):
    return load_target(ROOT / f"hw_targets/{name}.yaml")


def test_loihi_energy_by_hand_per_kind():
    result = cost(target("loihi"), COUNTS)
    # Davies et al. 2018: 23.6 pJ per synaptic event, 1.7 pJ per spike, 120 pJ per update, 81 pJ per
    # neuron update; 3 neurons x 2000 time steps of 1 ms.
    dynamic = 1000 * 23.6e-12 + 50 * 1.7e-12 + 200 * 120e-12 + 3 * 2000 * 81e-12
    # 104 mW per chip (Frady et al. 2020); the network occupies 1 of its 128 cores, for 2 s.
    static = 0.104 / 128 * 2.0
    assert result.energy_j == {"per_operation": pytest.approx(dynamic), "static": pytest.approx(static)}
    assert result.cores == 1 and result.fits and result.unknown == ()


def test_a_one_neuron_network_is_charged_its_share_of_static_power_not_the_chip():
    one = EventCounts(duration_s=1.0, synaptic_events=0, spikes=0, learning_updates=0, neurons=1, synapses=1)
    assert cost(target("loihi"), one).energy_j["static"] == pytest.approx(0.104 / 128)
    # Two cores' worth of neurons pay two cores; more than a chip pays for several chips.
    two = dataclasses.replace(one, neurons=1025)
    assert cost(target("loihi"), two).energy_j["static"] == pytest.approx(0.104 * 2 / 128)
    many = dataclasses.replace(one, neurons=1024 * 256)
    assert cost(target("loihi"), many).energy_j["static"] == pytest.approx(0.104 * 2)


def test_truenorth_counts_whole_chip_events_only_and_refuses_learning():
    result = cost(target("truenorth"), COUNTS)
    assert result.energy_j == {"whole_chip": pytest.approx(1000 * 26e-12)}
    assert not result.fits
    assert result.reasons == ("no on-chip learning: plastic synapses cannot run",)


def test_gpu_energy_is_wall_plug_and_unknown_with_plasticity():
    # Knight & Nowotny 2018: 1.08 uJ per synaptic event at the wall plug; no per-update figure.
    assert cost(target("gpu"), STATIC).energy_j == {"wall_plug": pytest.approx(1000 * 1.08e-6)}
    result = cost(target("gpu"), COUNTS)
    assert result.energy_j == {"wall_plug": None}
    assert result.unknown == ("wall_plug energy unknown: not published: energy per learning update",)


def test_loihi2_keeps_its_wall_plug_bound_apart_from_its_unpublished_per_operation_energy():
    result = cost(target("loihi2"), COUNTS)
    assert result.energy_j == {"wall_plug": pytest.approx(1000 * 6.8e-12), "per_operation": None}
    assert result.unknown == ("per_operation energy unknown: not published: energy per learning update",)


def test_no_energy_adds_figures_of_different_kinds():
    """Every kind's energy is the sum of that kind's figures alone, on every shipped target."""
    for path in sorted((ROOT / "hw_targets").glob("*.yaml")):
        t = load_target(path)
        result = cost(t, STATIC)
        assert set(result.energy_j) <= set(ENERGY_KINDS), path.name
        for kind, joules in result.energy_j.items():
            if joules is None:
                continue
            counted = {"synaptic_event_j": STATIC.synaptic_events, "spike_j": STATIC.spikes,
                       "neuron_update_j": STATIC.neurons * 2000}
            alone = sum(f.value * counted[name] for name, f in t.energy.events().items() if f.kind == kind
                        and name in counted)
            if kind == "static":
                alone = t.energy.static_power_w.value * result.cores / t.resources.cores.value * 2.0
            assert joules == pytest.approx(alone), (path.name, kind)


def test_unpublished_figures_make_their_kind_unknown_not_zero():
    result = cost(target("spinnaker2"), COUNTS)
    assert result.energy_j == {"per_operation": None, "static": None}
    assert result.unknown == ("per_operation energy unknown: not published: energy per synaptic event, "
                              "energy per spike, energy per learning update",
                              "static energy unknown: not published: static power")
    assert result.fits


def test_a_network_too_big_for_the_chip_does_not_fit():
    big = EventCounts(duration_s=1.0, synaptic_events=0, spikes=0, learning_updates=0,
                      neurons=1024 * 128 + 1, synapses=0)
    result = cost(target("loihi"), big)
    assert result.cores == 129 and not result.fits
    assert result.reasons == ("needs 129 cores, the chip has 128",)


def test_general_purpose_targets_have_no_energy_model():
    result = cost(target("cpu"), COUNTS)
    assert result.energy_j == {} and result.unknown == () and result.cores is None and result.fits


def test_the_energy_objective_takes_one_kind_or_says_why_not():
    assert energy_objective_kind(target("loihi")) == "per_operation"
    assert energy_objective_kind(target("truenorth")) == "whole_chip"
    for name, why in (("gpu", "target gpu does not publish its energy per learning update"),
                      ("loihi2", "target loihi2 does not publish its energy per learning update"),
                      ("cpu", "target cpu has no per-event energy figures")):
        with pytest.raises(ValueError, match=why):
            energy_objective_kind(target(name))
    mixed = dataclasses.replace(target("loihi").energy,
                                spike_j=dataclasses.replace(target("loihi").energy.spike_j, kind="wall_plug"))
    with pytest.raises(ValueError, match="different kinds"):
        energy_objective_kind(dataclasses.replace(target("loihi"), energy=mixed))


@pytest.mark.parametrize("text, message", [
    ("energy:\n  spike_j: {value: -1, source: me}", "energy.spike_j.value: must be at least 0.0, got -1"),
    ("resources:\n  cores: {value: 4}", "resources.cores.source: missing required key"),
    ("precision: {weight_bits: 0}", "precision.weight_bits: must be between 1 and 64, got 0"),
    ("energy:\n  static_power_w: {value: 0.1, kind: per_operation, source: me}",
     "energy.static_power_w.kind: static power is the power of one whole chip"),
    ("energy:\n  spike_j: {value: 1e-12, kind: count, source: me}", "energy.spike_j.kind: an energy figure cannot be a count"),
])
def test_a_target_file_with_a_wrong_field_is_refused(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: x\n{text}\n")
    with pytest.raises(SpecError, match=re.escape(message)):
        load_target(bad)
