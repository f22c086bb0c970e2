"""The port compiles the text the study searched: a model's own synapse text with its rule family's."""

from __future__ import annotations

import pytest

import codesign
from codesign.hardware.loihi2.compiler import expand_rule
from codesign.models.network import synapse_text
from codesign.rules import FAMILIES
from tests.conftest import ROOT


def test_the_target_rate_models_own_inhibitory_text_compiles_to_vogels_terms():
    model = codesign.load_model(str(ROOT / "models/target-rate.yaml"))
    spec = model.spec.synapses["inhibitory"]
    family = FAMILIES[spec.rule.family]
    own, pre, post = synapse_text(spec, family.terms)
    assert own.startswith("w : 1\n") and pre.startswith("gi_post += w\n")  # the model file's lines come first
    (rule,) = model.task().candidate("vogels", {"inhibitory": 0.01}).values()
    namespace = {**model.spec.constants, **family.values(rule, spec.rule, family.terms)}
    expanded = expand_rule(own, pre, post, namespace)
    terms = {(t.event, t.powers): t.coefficient for t in expanded.terms}
    alpha = 2 * 10 * 0.020  # Vogels: pre_1 = -2 rho0 tau (10 Hz, 20 ms), times eta 0.01
    assert terms == pytest.approx({("pre", ()): -0.01 * alpha, ("pre", (("y", 1),)): 0.01,
                                   ("post", (("x", 1),)): 0.01}, rel=1e-12)
    assert [(t.name, t.side, t.tau_ms) for t in expanded.traces] == [("x", "pre", 20.0), ("y", "post", 20.0)]
    assert expanded.bounds == (0.0, 1.0) and expanded.transmission == ("on_pre: gi_post += w",)


def test_a_gated_synapse_multiplies_its_learning_rate_by_the_gate():
    model = codesign.load_model(str(ROOT / "models/target-rate.yaml")).spec
    spec = model.synapses["inhibitory"]
    terms = FAMILIES[spec.rule.family].terms
    plain, gated = synapse_text(spec, terms), synapse_text(spec, terms, gate="plastic_inhibitory")
    assert plain[0] == gated[0]
    for before, after in zip(plain[1:], gated[1:]):
        assert after == before.replace("eta_inhibitory", "(eta_inhibitory * plastic_inhibitory(t))")
        assert after != before
