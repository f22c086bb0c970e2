"""Loihi 2 port: rule expansion, scale quantisation, refusals, and lava's fixed-point engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codesign.errors import CodesignError
from codesign.hardware.loihi2.compiler import compile_rule, expand_rule, fixed_shift, quantise_scale
from codesign.hardware.loihi2.port import load_loihi2_target
from codesign.rules.spike_trace import SpikeTraceRule, vogels

ROOT = Path(__file__).resolve().parent.parent

PAIR_MODEL = ("w : 1\ndapre/dt = -apre/taupre : 1 (event-driven)\n"
              "dapost/dt = -apost/taupost : 1 (event-driven)")
PAIR_PRE = "apre += Apre\nw = clip(w + apost, 0, wmax)"
PAIR_POST = "apost += Apost\nw = clip(w + apre, 0, wmax)"
PAIR_VALUES = {"Apre": 0.01, "Apost": -0.0105, "taupre": 0.02, "taupost": 0.02, "wmax": 1.0}

TRIPLET_MODEL = ("w : 1\ndx1/dt = -x1/(16*ms) : 1 (event-driven)\ndx2/dt = -x2/(64*ms) : 1 (event-driven)\n"
                 "dy1/dt = -y1/(32*ms) : 1 (event-driven)\ndy2/dt = -y2/(128*ms) : 1 (event-driven)")
# Pfister & Gerstner's form: the weight changes before the own side's traces jump.
TRIPLET_PRE = "w = clip(w - y1*(A2m + A3m*x2), 0, wmax)\nx1 += 1\nx2 += 1"
TRIPLET_POST = "w = clip(w + x1*(A2p + A3p*y2), 0, wmax)\ny1 += 1\ny2 += 1"
TRIPLET_VALUES = {"A2m": 0.125, "A3m": 0.0625, "A2p": 0.3125, "A3p": 0.25, "wmax": 1.0}

MODEL = "w : 1\ndx/dt = -x/(20*ms) : 1 (event-driven)\ndy/dt = -y/(20*ms) : 1 (event-driven)"


def lava_products(dw: str) -> list[tuple[int, int, str, list[str]]]:
    """(mantissa, exponent, dependency, factors) of each product as lava's own parser reads ``dw``."""
    from lava.magma.core.learning.learning_rule import Loihi2FLearningRule

    rule = Loihi2FLearningRule(dw=dw, t_epoch=1, rng_seed=0)
    return [(p.s_mantissa, p.s_exp - 7, p.dependency, [f.state_var for f in p.factors]) for p in rule.dw.products]


# ---------------------------------------------------------------------------------------------
# Expansion


def test_pair_stdp_expands_to_two_products():
    # Weights [0, 1] -> 128 Loihi units, impulse 16 per trace: the scale of y0*x1 is
    # 128 * Apre / 16 = 0.08 -> 5*2^-6 = 0.078125; of x0*y1, 128 * Apost / 16 = -0.084 -> -5*2^-6.
    rule = compile_rule(PAIR_MODEL, PAIR_PRE, PAIR_POST, PAIR_VALUES, weight_scale=128, impulses=16)
    assert rule.dw == "-5*2^-6*x0*y1 + 5*2^-6*y0*x1"
    assert rule.dw_fixed == rule.dw  # one trace per product: lava shifts nothing
    assert [(t.name, t.register, t.tau, t.impulse) for t in rule.traces] == [("apre", "x1", 20, 16.0),
                                                                             ("apost", "y1", 20, 16.0)]
    assert [t.scale for t in rule.terms] == pytest.approx([-0.084, 0.08])
    assert lava_products(rule.dw) == [(-5, -6, "x0", ["y1"]), (5, -6, "y0", ["x1"])]


def test_vogels_expands_with_inhibitory_weights():
    # Loihi weight W = -255 w: on a pre spike dW = -255 eta (y - alpha) = 1.02 x0 - 0.159 x0*y1 (y = y1/16).
    rule = vogels(eta=0.01)
    text = rule.equations()
    compiled = compile_rule(text["model"], text["on_pre"], text["on_post"], {"eta": rule.eta, "w_max": 1.0},
                            weight_sign=-1, impulses=16)
    assert compiled.dw == "4*2^-2*x0 - 5*2^-5*x0*y1 - 5*2^-5*y0*x1"
    assert compiled.weight_scale == 255.0
    assert [t.scale for t in compiled.terms] == pytest.approx([1.02, -0.159375, -0.159375])
    assert [t.source for t in compiled.terms] == ["-0.4*eta", "eta*y", "eta*x"]


def test_spike_trace_family_with_weight_terms():
    rule = SpikeTraceRule({"pre_1": -0.5, "pre_w": -0.25, "post_1": 0.5, "post_w": 0.5}, eta=0.125)
    text = rule.equations()
    compiled = compile_rule(text["model"], text["on_pre"], text["on_post"], {"eta": rule.eta, "w_max": 1.0},
                            weight_scale=64)
    # Constants scale with the weight (64 * 0.125 * c), weight terms do not (0.125 * c).
    assert compiled.dw == "-4*2^0*x0 - 4*2^-7*x0*w + 4*2^0*y0 + 4*2^-6*y0*w"
    assert compiled.traces == ()  # no trace is read: none is mapped


def test_triplet_rule_uses_x2_and_y2_and_trace_values_before_the_jump():
    # Loihi reads a trace after this step's impulse, so y2 before its jump is (y2 - 1):
    # post: x1 (A2p + A3p (y2 - 1)) = (A2p - A3p) x1 + A3p x1 y2, pre likewise with x2.
    # Scales (weights -> 128, impulses 16): 8 (A2p - A3p) = 0.5 -> 4*2^-3, A3p / 2 = 0.125 -> 4*2^-5,
    # -8 (A2m - A3m) = -0.5 -> -4*2^-3, -A3m / 2 = -0.03125 -> -4*2^-7.
    rule = compile_rule(TRIPLET_MODEL, TRIPLET_PRE, TRIPLET_POST, TRIPLET_VALUES, weight_scale=128, impulses=16)
    assert rule.dw == "-4*2^-3*x0*y1 - 4*2^-7*x0*x2*y1 + 4*2^-3*y0*x1 + 4*2^-5*y0*x1*y2"
    assert [(t.name, t.register, t.tau) for t in rule.traces] == [("x1", "x1", 16), ("x2", "x2", 64),
                                                                  ("y1", "y1", 32), ("y2", "y2", 128)]
    assert all(t.relative_error == 0 for t in rule.terms)
    # Two 7-bit traces and the 4-bit mantissa exceed lava's 15-bit accumulator by 3 bits: fixed point
    # gets exponents raised by 3.
    assert [t.shift for t in rule.terms] == [0, 3, 0, 3]
    assert rule.dw_fixed == "-4*2^-3*x0*y1 - 4*2^-4*x0*x2*y1 + 4*2^-3*y0*x1 + 4*2^-2*y0*x1*y2"
    assert lava_products(rule.dw)[1] == (-4, -7, "x0", ["x2", "y1"])
    # With the jumps first, the traces are read after them: no -1 correction.
    jumps_first = expand_rule(TRIPLET_MODEL, "x1 += 1\nx2 += 1\n" + TRIPLET_PRE.split("\n")[0],
                              "y1 += 1\ny2 += 1\n" + TRIPLET_POST.split("\n")[0], TRIPLET_VALUES)
    assert {t.powers: t.coefficient for t in jumps_first.terms}[(("y1", 1),)] == pytest.approx(-0.125)
    after = expand_rule(TRIPLET_MODEL, TRIPLET_PRE, TRIPLET_POST, TRIPLET_VALUES)
    assert {t.powers: t.coefficient for t in after.terms}[(("y1", 1),)] == pytest.approx(-0.0625)


def test_transmission_statements_are_left_to_dense():
    rule = compile_rule(MODEL, "g_post += w\nx += 1\nw = clip(w + 0.01*y, 0, 1)", "y += 1", {}, impulses=16)
    assert rule.transmission == ("on_pre: g_post += w",)


# ---------------------------------------------------------------------------------------------
# Quantisation


@pytest.mark.parametrize("value, mantissa, exponent", [
    (0.159375, 5, -5),   # 5/32 = 0.15625, error -0.003125 (1.96 %); 3/16 is farther
    (1.0, 4, -2),        # exact; the largest mantissa keeps most bits in lava's fixed point
    (-0.75, -6, -3),     # exact
    (-1.0, -4, -2),      # -8*2^-3, written as lava stores it
    (100.0, 6, 4),       # 96 (4 %): 7*2^4 = 112 and 3*2^5 = 96 are the neighbours
    (1900.0, 7, 8),      # the largest scale, 1792
    (2.0**-7, 1, -7),    # the smallest
    (0.004, 1, -7),      # 0.0078125, just above half the smallest step
])
def test_quantise_scale_hand_examples(value, mantissa, exponent):
    q = quantise_scale(value)
    assert (q.mantissa, q.exponent) == (mantissa, exponent)
    assert q.quantised == mantissa * 2.0**exponent
    assert q.error == pytest.approx(q.quantised - value)
    assert q.relative_error == pytest.approx(abs(q.quantised - value) / abs(value))
    # lava's parser reads back the same mantissa and exponent.
    assert lava_products(f"{abs(mantissa)}*2^{exponent}*x0" if mantissa > 0 else
                         f"-{abs(mantissa)}*2^{exponent}*x0")[0][:2] == (mantissa, exponent)


def test_quantise_scale_limits():
    assert quantise_scale(0.159375).relative_error == pytest.approx(0.0196078, rel=1e-5)
    assert quantise_scale(0.003) is None  # below half of 2^-7: rounds to zero
    assert quantise_scale(0.0) is None
    with pytest.raises(ValueError, match="beyond the largest representable 1792"):
        quantise_scale(2000.0)
    with pytest.raises(ValueError, match="beyond the largest representable -2048"):
        quantise_scale(-2200.0)


def test_fixed_point_shift():
    assert fixed_shift(["x1"]) == 0 and fixed_shift(["w"]) == 0 and fixed_shift([]) == 0
    assert fixed_shift(["x1", "y2"]) == 3
    assert fixed_shift(["y1", "w"]) == 5


def test_impulses_keep_the_balance_of_the_terms():
    rule = vogels(eta=0.01)
    text = rule.equations()
    compiled = compile_rule(text["model"], text["on_pre"], text["on_post"], {"eta": rule.eta, "w_max": 1.0},
                            weight_sign=-1, impulses="auto")
    # The constant 1.02 quantises to 1 (factor 0.98); impulse 16 gives the trace terms the same factor
    # (0.159375 -> 0.15625), so only eta shrinks by 2 % and alpha = 0.4 is kept exactly.
    assert [t.impulse for t in compiled.traces] == [16.0, 16.0]
    factors = [t.quantised / t.scale for t in compiled.terms]
    assert factors == pytest.approx([1 / 1.02] * 3)
    # pre_1 = -1, post_x = 0.45, eta 0.02: the constant -5.1 -> -5*2^0 (factor 0.9804). The trace term
    # 2.295 / I: I = 16 gives 0.1434 -> 5*2^-5 (factor 1.089, a 9 % imbalance); I = 18 gives
    # 0.1275 -> 4*2^-5 (factor 0.9804, balanced).
    other = SpikeTraceRule({"pre_1": -1.0, "post_x": 0.45}, eta=0.02, tau_x_ms=12.0)
    text = other.equations()
    compiled = compile_rule(text["model"], text["on_pre"], text["on_post"], {"eta": other.eta, "w_max": 1.0},
                            impulses="auto")
    (x,) = compiled.traces
    assert (x.register, x.tau, x.impulse) == ("x1", 12, 18.0)
    assert compiled.dw == "-5*2^0*x0 + 4*2^-5*y0*x1"
    assert [t.quantised / t.scale for t in compiled.terms] == pytest.approx([5 / 5.1, 5 / 5.1])


# ---------------------------------------------------------------------------------------------
# Refusals: one line, naming the term and the limit


@pytest.mark.parametrize("on_pre, on_post, model, values, message", [
    ("x += 1\nw = clip(w + 0.01*y/x, 0, 1)", "y += 1", MODEL, {},
     "on_pre: term 0.01*y/x: divides by x (Loihi 2 products only multiply"),
    ("x += 1\nw = clip(w + 0.01*y**0.5, 0, 1)", "y += 1", MODEL, {},
     "on_pre: term 0.01*y**0.5: non-integer power y**0.5"),
    ("x += 1\nw = clip(w + 0.01*exp(y), 0, 1)", "y += 1", MODEL, {},
     "function exp() has no counterpart in Loihi 2's learning engine"),
    ("x += 1\nw = clip(w + 0.01*v_post, 0, 1)", "y += 1", MODEL, {},
     "on_pre: factor v_post: Loihi 2 has no register for it"),
    ("x += 1", "y += 1\nw = clip(w + 0.01*t/second, 0, 1)", MODEL, {},
     "on_post: factor t: Loihi 2 has no register for it"),
    ("x += 1\nw = clip(w + 200*y, 0, 1)", "y += 1", MODEL, {},
     "term 200*y -> x0*y1: scale 3187.5 is beyond the largest representable 1792"),
    ("x += 1\nw = clip(w + 1e-6*y, 0, 1)", "y += 1", MODEL, {},
     "term 1.0e-6*y -> x0*y1: scale 1.59e-05 rounds to 0 (smallest scale 0.0078125 = 1*2^-7)"),
    ("x += 1\nw = clip(w + 0.01*y*a*b*c, 0, 1)", "y += 1; a += 1; b += 1; c += 1",
     MODEL + "".join(f"\nd{n}/dt = -{n}/(10*ms) : 1 (event-driven)" for n in "abc"), {},
     "4 postsynaptic traces (y, a, b, c): Loihi 2 has 3 (y1, y2, y3)"),
    ("x += 1; a += 1; b += 1", "y += 1\nw = clip(w + 0.01*x*a*b, 0, 1)",
     MODEL + "".join(f"\nd{n}/dt = -{n}/(10*ms) : 1 (event-driven)" for n in "ab"), {},
     "3 presynaptic traces (x, a, b): Loihi 2 has 2 (x1, x2)"),
    ("x += 1", "y = 1\nw = clip(w + 0.01*x, 0, 1)", MODEL, {},
     "statement 'y = 1': trace y jumps by 1 - y, not by a constant (Loihi 2 adds a fixed impulse)"),
    ("x += 1", "y += 1\nw = clip(w + 0.01*x, 0, 1)",
     "w : 1\ndx/dt = -x**2/(20*ms) : 1 (event-driven)\ndy/dt = -y/(20*ms) : 1 (event-driven)", {},
     "trace x: dx/dt = -x**2/(20*ms) is not an exponential decay -x/tau"),
    ("x += 1", "y += 1\nw = clip(w + 0.01*x, 0, 1)",
     "w : 1\ndx/dt = -x/(300*ms) : 1 (event-driven)\ndy/dt = -y/(20*ms) : 1 (event-driven)", {},
     "trace x: tau = 300 ms is 300 time steps, outside the 8-bit decay register [1, 255]"),
    ("x += 1; y += 1", "y += 1\nw = clip(w + 0.01*x, 0, 1)", MODEL, {},
     "trace y jumps at both pre and post spikes"),
    ("x += 1\nw = clip(w + 0.01*y, 0, 1)\nw = w*2", "y += 1", MODEL, {},
     "changes w after its clip"),
    ("x += 1\nz = 3", "y += 1", MODEL + "\nz : 1", {},
     "no value for the synaptic parameter(s) z"),
    ("x += 1\nw = clip(w + eta*y, 0, 1)", "y += 1", MODEL, {},
     "on_pre: no value for eta"),
])
def test_refusals_name_the_term_and_the_limit(on_pre, on_post, model, values, message):
    with pytest.raises(CodesignError) as info:
        compile_rule(model, on_pre, on_post, values, impulses=16)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_underflow_can_drop_the_term():
    rule = compile_rule(MODEL, "x += 1\nw = clip(w + 1e-6*y - 0.01, 0, 1)", "y += 1", {}, impulses=16,
                        underflow="drop")
    assert rule.dw == "-5*2^-1*x0"  # -0.01 * 255 = -2.55
    assert [t.product() for t in rule.dropped] == ["x0*y1"]


def test_a_rule_that_loses_every_term_is_refused_even_when_dropping():
    with pytest.raises(CodesignError) as info:
        compile_rule(MODEL, "x += 1\nw = clip(w + 1e-6*y, 0, 1)", "y += 1", {}, impulses=16, underflow="drop")
    text = str(info.value)
    assert "every term's scale rounds to 0 (1.0e-6*y -> x0*y1: 1.59e-05; smallest scale 0.0078125" in text
    assert "nothing is left to port" in text and "\n" not in text


def test_a_weight_scale_beyond_the_weight_register_is_refused():
    # w in [0, 1]: 255 Loihi units per unit of w fill the 8-bit register; 510 would put w = 1 at 510.
    args = (MODEL, "x += 1\nw = clip(w + 0.01*y, 0, 1)", "y += 1", {})
    assert compile_rule(*args, impulses=16, weight_scale=255).weight_scale == 255
    with pytest.raises(CodesignError) as info:
        compile_rule(*args, impulses=16, weight_scale=510)
    assert str(info.value) == ("weight_scale: weight scale 510 puts w's upper bound 1 at 510 Loihi units, beyond the "
                               "8-bit weight register (255) (fix: use a weight scale of at most 255)")


# ---------------------------------------------------------------------------------------------
# Port settings: weight scale, eta, dropped terms (no Lava run)


def _prepared(rule, allow_drop=False, study="studies/target-rate.yaml"):
    """The target-rate study's model mapped for Loihi 2 with ``rule`` in its inhibitory slot (nothing runs)."""
    from codesign.hardware.loihi2.port import prepare
    from codesign.spec import load_study

    return prepare(load_study(ROOT / study), {"inhibitory": rule}, seed=1, allow_drop=allow_drop)


def test_port_refuses_a_term_that_rounds_to_zero_naming_it_before_running_anything():
    with pytest.raises(CodesignError) as info:
        _prepared(STUDY_BEST)
    text = str(info.value)
    # pre_y: 255 * 0.01 * 0.00185 / impulse 16 is far below Loihi's smallest scale 2^-7, even 4 times larger.
    assert text == ("models/target-rate.yaml: synapses.inhibitory.rule: term eta_inhibitory*inhibitory_pre_y*y -> "
                    "x0*y1: scale -0.000295 rounds to 0, below Loihi 2's smallest 2^-7, even with its learning rate "
                    "raised 4 times (fix: port with --allow-drop to drop it (listed among the changes), or raise the "
                    "rule's eta)")
    assert "--allow-drop" in text and "\n" not in text


@pytest.mark.parametrize("study, w_max", [("studies/target-rate.yaml", 1.0), ("studies/target-rate-loihi2.yaml", 0.5)])
def test_port_weight_scale_fills_the_weight_register_and_never_passes_it(study, w_max):
    """The neuron's threshold in Lava units is chosen so that w's upper bound is the register's 255: a
    check of the old port saw a scale of 510 put w_max = 1 at twice the 8-bit register."""
    net = _prepared(STUDY_BEST, allow_drop=True, study=study).net
    rule = net.synapses["inhibitory"].rule
    assert rule.weight_scale * w_max == pytest.approx(255, rel=1e-12)
    assert rule.weight_sign == -1  # gi's driving force is negative: inhibitory Loihi weights
    # The fixed excitatory synapse delivers what the model's w_e delivers, in the same Lava units:
    # per unit of conductance, ge's driving force (60 mV) is 3/2 gi's (20 mV x tau_i / tau_e).
    excitatory = net.synapses["excitatory"]
    assert excitatory.efficacy / (rule.weight_sign * rule.weight_scale) == pytest.approx(-1.5, rel=1e-12)


def test_port_drops_terms_only_when_allowed_and_lists_them():
    net = _prepared(STUDY_BEST, allow_drop=True).net
    rule = net.synapses["inhibitory"].rule
    # pre_w (eta 0.01 x -0.39 = -0.0039, whatever the weight scale) rounds to 0 at the rule's eta and is kept
    # with eta 4 times larger (where the worst term quantises best); pre_y would need 20 times: dropped.
    assert [t.product() for t in rule.dropped] == ["x0*y1"]
    assert "x0*w" in [t.product(signed=False).split("*", 2)[-1] for t in rule.terms]
    assert any(c.startswith("synapses.inhibitory: eta_inhibitory 0.01 -> 0.04 (4 times)") for c in net.changes)
    assert max(t.relative_error for t in rule.terms) < 0.12
    assert any(c.startswith("synapses.inhibitory: term eta_inhibitory*inhibitory_pre_y*y -> x0*y1 dropped: scale")
               for c in net.changes), net.changes


def test_port_inputs_are_the_models_own_draw_on_the_chips_steps():
    """Each input spike of the study's draw (0.1 ms grid) lands in the 1 ms step it falls in."""
    prepared = _prepared(vogels(eta=0.01))
    index, times = prepared.task.inputs(1)["poisson"].spikes
    chip = prepared.net.inputs["inputs"]
    assert chip.shape == (1000, 20000)
    expected = np.zeros_like(chip)
    expected[index, np.floor(times * 1000 + 1e-9).astype(int)] = 1
    np.testing.assert_array_equal(chip, expected)
    merged = len(index) - int(chip.sum())
    assert merged > 0 and f"{merged} of them merging with another" in prepared.net.changes[0]


def test_vogels_port_lists_what_changed():
    changes = _prepared(vogels(eta=0.01)).net.changes
    assert changes[1].startswith("groups.neuron: runs its loihi2: variant (current-based")
    assert changes[2] == "groups.neuron: LIF, vth 1275 Lava units for v_th - v_reset (euler, dt 1 ms), fixed point " \
                         "du 818, dv 205"
    # w_e 0.05 x 60 mV driving force: 19.125 Lava units at this threshold, 19 in 8 bits.
    assert changes[3] == "synapses.excitatory: ge_post jumps of 19.125 Lava units, 19 in fixed point (8-bit " \
                         "mantissas << 0; relative error up to 0.65%)"
    assert changes[4] == "synapses.inhibitory: Loihi weight = -255 w (255 of the 8-bit register's 255 at w's upper " \
                         "bound 1)"
    quantised = [c for c in changes if "quantised to" in c]
    assert len(quantised) == 3 and all("(relative error 1.96%)" in c for c in quantised)
    assert sum("saturates at 7.94" in c for c in changes) == 2


def test_a_conductance_based_group_without_a_variant_is_refused_in_one_line(tmp_path):
    import yaml

    from codesign.hardware.loihi2.port import prepare
    from codesign.spec import load_study

    model = yaml.safe_load((ROOT / "models/target-rate.yaml").read_text())
    del model["groups"]["neuron"]["loihi2"]
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(model))
    study = yaml.safe_load((ROOT / "studies/target-rate.yaml").read_text())
    study.update(model="model.yaml", target=str(ROOT / "hw_targets/cpu.yaml"))
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    with pytest.raises(CodesignError) as info:
        prepare(load_study(tmp_path / "study.yaml"), {"inhibitory": vogels(eta=0.01)})
    assert str(info.value) == (f"{tmp_path / 'model.yaml'}: groups.neuron: not a neuron lava-nc 0.10.0 runs: "
                               "conductance-based: v multiplies ge, gi (Lava's LIF adds a current to v) (fix: give the "
                               "group a loihi2: variant in the model file (a current-based LIF))")


# ---------------------------------------------------------------------------------------------
# Target file


def test_loihi2_target_file_has_a_source_for_every_figure(tmp_path):
    target = load_loihi2_target(ROOT / "hw_targets/loihi2.yaml")
    limits = target.engine("loihi2")
    engine = limits.learning_engine
    assert (engine.scale_mantissa, engine.scale_exponent) == ((-8, 7), (-7, 8))
    assert (engine.pre_traces, engine.post_traces, engine.trace_bits, engine.trace_fraction_bits) == (2, 3, 7, 8)
    assert (engine.weight_bits, limits.chip.cores, limits.chip.cores_mapped_by_lava,
            limits.chip.neurons_per_core) == (8, 128, 120, 8192)
    assert set(limits.sources) == set(limits.figures())
    # The same file is a general target: precision, learning and energy as for any other.
    assert (target.precision.weight_bits, target.precision.trace_bits, target.precision.rounding) == (8, 7, "stochastic")
    assert target.time_step_ms == 1.0 and target.learning.engine == "sum_of_products"
    assert target.energy.learning_update_j.value is None  # not published: stays empty
    text = (ROOT / "hw_targets/loihi2.yaml").read_text().replace("    chip.cores: ", "    # chip.cores: ")
    (tmp_path / "loihi2.yaml").write_text(text)
    with pytest.raises(CodesignError, match="loihi2.sources: no source for chip.cores"):
        load_loihi2_target(tmp_path / "loihi2.yaml")


def test_bundled_target_is_the_packaged_copy_in_a_wheel_else_the_repository_one(tmp_path, monkeypatch):
    import importlib.resources

    from codesign.hardware.target import bundled_target

    assert bundled_target("loihi2") == ROOT / "hw_targets/loihi2.yaml"  # this checkout: nothing packaged
    (tmp_path / "hw_targets").mkdir()
    (tmp_path / "hw_targets/loihi2.yaml").write_text("name: loihi2\n")
    monkeypatch.setattr(importlib.resources, "files", lambda package: tmp_path)  # as an installed wheel has it
    assert bundled_target("loihi2") == tmp_path / "hw_targets/loihi2.yaml"


def test_loihi2_target_refuses_contradicting_figures_and_a_target_without_the_section(tmp_path):
    text = (ROOT / "hw_targets/loihi2.yaml").read_text()
    (tmp_path / "bits.yaml").write_text(text.replace("  trace_bits: 7             #", "  trace_bits: 6             #"))
    with pytest.raises(CodesignError, match=r"precision.trace_bits: 6 contradicts loihi2.learning_engine.trace_bits"):
        load_loihi2_target(tmp_path / "bits.yaml")
    with pytest.raises(CodesignError, match=r"loihi\.yaml: loihi2: has no loihi2: section"):
        load_loihi2_target(ROOT / "hw_targets/loihi.yaml")


# ---------------------------------------------------------------------------------------------
# Lava


def _learn(rule, pre: np.ndarray, post: np.ndarray, w0: np.ndarray) -> np.ndarray:
    """Weights of a LearningDense (fixed point) after ``pre`` spikes and back-propagated ``post`` spikes."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import LearningDense
    from lava.proc.io.source import RingBuffer
    from lava.utils.weightutils import SignMode

    source_pre, source_post = RingBuffer(data=pre.astype(float)), RingBuffer(data=post.astype(float))
    dense = LearningDense(weights=w0.copy(), learning_rule=rule, num_weight_bits=8, sign_mode=SignMode.EXCITATORY)
    source_pre.s_out.connect(dense.s_in)
    source_post.s_out.connect(dense.s_in_bap)
    try:
        dense.run(condition=RunSteps(num_steps=pre.shape[1]), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return np.array(dense.weights.get())
    finally:
        dense.stop()


@pytest.mark.lava
def test_direct_lava_rule_and_compiled_brian2_rule_learn_identical_weights():
    from lava.magma.core.learning.learning_rule import Loihi2FLearningRule

    # Pair STDP plus a weight-dependent decay at post spikes, as Brian2 text...
    compiled = compile_rule(PAIR_MODEL, PAIR_PRE, "apost += Apost\nw = clip(w + apre - 0.03125*w, 0, wmax)",
                            PAIR_VALUES, weight_scale=128, impulses=16)
    # ...and written by hand for lava (scales as in test_pair_stdp_expands_to_two_products; -0.03125 = -4*2^-7).
    direct = Loihi2FLearningRule(dw="-5*2^-6*x0*y1 + 5*2^-6*y0*x1 - 4*2^-7*y0*w", x1_impulse=16, x1_tau=20,
                                 y1_impulse=16, y1_tau=20, t_epoch=1, rng_seed=7)
    assert compiled.rule_kwargs(fixed_pt=True) == {"dw": "-5*2^-6*x0*y1 + 5*2^-6*y0*x1 - 4*2^-7*y0*w",
                                                   "t_epoch": 1, "x1_impulse": 16.0, "x1_tau": 20,
                                                   "y1_impulse": 16.0, "y1_tau": 20}
    rng = np.random.default_rng(3)
    steps = 300
    pre = (rng.random((8, steps)) < 0.06).astype(int)
    post = (rng.random((1, steps)) < 0.04).astype(int)
    w0 = np.full((1, 8), 100.0)
    learned_direct = _learn(direct, pre, post, w0)
    learned_compiled = _learn(compiled.learning_rule(fixed_pt=True, rng_seed=7), pre, post, w0)
    assert not np.array_equal(learned_direct, w0)  # the rule did something
    np.testing.assert_array_equal(learned_compiled, learned_direct)


#: The best rule of the target-rate study (results/target-rate/best_rule.yaml, trial 319).
STUDY_BEST = SpikeTraceRule({"pre_1": -0.76177721278461, "pre_y": 0.0018496860419781047,
                             "pre_w": -0.39020336963113156, "post_1": 0.6836259281692221,
                             "post_x": 0.3501028857184292, "post_w": 0.5252238136222909},
                            eta=0.01, tau_x_ms=12.11405773000966, tau_y_ms=10.339021094987926, name="trial 319")
