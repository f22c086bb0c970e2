"""The cost model against hand-computed figures for a tiny network with known event counts."""

from __future__ import annotations

import pytest

from codesign.errors import SpecError
from codesign.hardware import EventCounts, cost, load_target

from conftest import ROOT

# 2 s of a network of 3 neurons and 10 synapses (4 plastic): 1000 synaptic events, 50 spikes,
# 200 learning updates.
COUNTS = EventCounts(duration_s=2.0, synaptic_events=1000, spikes=50, learning_updates=200, neurons=3,
                     synapses=10, plastic_synapses=4)


def test_loihi_energy_by_hand():
    result = cost(load_target(ROOT / "hw_targets/loihi.yaml"), COUNTS)
    dynamic = (1000 * 23.6e-12 + 50 * 1.7e-12 + 200 * 120e-12) / 2.0
    assert result.dynamic_w == pytest.approx(dynamic)
    assert result.static_w == pytest.approx(0.104)
    assert result.energy_w == pytest.approx(dynamic + 0.104)
    assert result.cores == 1 and result.fits
    assert result.kinds == ("per_operation", "whole_chip")


def test_truenorth_counts_whole_chip_events_and_refuses_learning():
    result = cost(load_target(ROOT / "hw_targets/truenorth.yaml"), COUNTS)
    assert result.energy_w == pytest.approx(1000 * 26e-12 / 2.0)
    assert result.kinds == ("whole_chip",)
    assert not result.fits
    assert result.reasons == ("no on-chip learning: plastic synapses cannot run",)


def test_unpublished_figures_make_the_energy_unknown_not_zero():
    result = cost(load_target(ROOT / "hw_targets/spinnaker2.yaml"), COUNTS)
    assert result.energy_w is None
    assert result.unknown == ("energy per synaptic event", "energy per spike", "energy per learning update",
                              "static power")
    assert result.fits


def test_a_network_too_big_for_the_chip_does_not_fit():
    big = EventCounts(duration_s=1.0, synaptic_events=0, spikes=0, learning_updates=0,
                      neurons=1024 * 128 + 1, synapses=0)
    result = cost(load_target(ROOT / "hw_targets/loihi.yaml"), big)
    assert result.cores == 129 and not result.fits
    assert result.reasons == ("needs 129 cores, the chip has 128",)


def test_general_purpose_targets_have_no_energy_model():
    result = cost(load_target(ROOT / "hw_targets/cpu.yaml"), COUNTS)
    assert result.energy_w is None and result.unknown == () and result.cores is None and result.fits


def test_a_target_file_with_a_wrong_field_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nenergy:\n  spike_j: {value: -1, source: me}\n")
    with pytest.raises(SpecError, match="energy.spike_j.value: must be at least 0.0, got -1"):
        load_target(bad)
    bad.write_text("name: x\nresources:\n  cores: {value: 4}\n")
    with pytest.raises(SpecError, match="resources.cores.source: missing required key"):
        load_target(bad)
    bad.write_text("name: x\nprecision: {weight_bits: 0}\n")
    with pytest.raises(SpecError, match="precision.weight_bits: must be between 1 and 64, got 0"):
        load_target(bad)
